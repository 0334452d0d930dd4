"""A panel (or a receiver account) as a source: readings become reports about the panel
and about its zones, placed by the zone map. An unknown zone is still reported, with the
panel's place and the zone number."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping

from alertd.clock import Clock
from alertd.devices import Device
from alertd.events import Kind, Location, Observation
from alertd.ingest.report import Receipt, Rejected, Report, Value
from integrations.panels.signal import Reading, Signal
from integrations.panels.spec import Place

UNMAPPED = "zone not in the zone map"


def place_location(place: Place, site: str, *, under: Location | None = None) -> Location:
    base = under or Location(site=site)
    return Location(
        site=place.site or base.site,
        building=place.building or base.building,
        floor=place.floor or base.floor,
        unit=place.unit or base.unit,
        zone=place.zone or base.zone,
    )


class PanelSource:
    def __init__(
        self,
        panel: Device,
        zones: Mapping[str, Place],
        submit: Callable[[Report | Rejected], None],
        clock: Clock,
        source: str,
        flag: str = "",
    ) -> None:
        """`flag`: said on every event from this source (an account the receiver's
        configuration does not name)."""
        self.panel = panel
        self.flag = flag
        self._zones = {_zone_key(k): v for k, v in zones.items()}
        self._submit = submit
        self._clock = clock
        self.source = source
        self._zone_devices: dict[str, Device] = {}

    def zone_device(self, zone: str) -> tuple[Device, bool]:
        """The device standing for a zone, and whether the zone map knows it."""
        key = _zone_key(zone)
        place = self._zones.get(key)
        device = self._zone_devices.get(key)
        if device is None:
            location = place_location(place or Place(), "", under=self.panel.location)
            if not (place and place.zone):
                location = dataclasses.replace(location, zone=zone)
            device = Device(
                f"{self.panel.device_id}:{zone}", self.panel.profile, self.panel.topic, location
            )
            self._zone_devices[key] = device
        return device, place is not None

    def report(self, reading: Reading, raw: str, receipt: Receipt | None = None) -> None:
        """Submit what one message said. The panel itself is alive whatever it said."""
        now = self._clock.now()
        by_device: dict[str, list[Observation]] = defaultdict(list)
        devices: dict[str, Device] = {}
        for signal in reading.signals:
            panel_itself = not signal.zone.strip("0-")  # zone 000 is the panel
            if signal.kind_from_map:
                typed = self._typed(signal, raw)
                if typed is None:
                    continue
                signal = typed
            device, known = (self.panel, True) if panel_itself else self.zone_device(signal.zone)
            devices[device.device_id] = device
            by_device[device.device_id].append(_observation(signal, known, self.flag))
        panel_obs = by_device.pop(self.panel.device_id, [])
        values: dict[str, Value] = dict(reading.notes)
        # zones first: a zone's alarm is what the message is about
        reports = [
            Report(self.source, devices[d], tuple(obs), now, alive=False, raw=raw)
            for d, obs in by_device.items()
        ] + [Report(self.source, self.panel, tuple(panel_obs), now, values=values, raw=raw)]
        parts = receipt.split(len(reports)) if receipt else [None] * len(reports)
        for report, part in zip(reports, parts, strict=True):
            self._submit(_with_receipt(report, part))

    def _typed(self, signal: Signal, raw: str) -> Signal | None:
        """A zone that only says "tripped" is what the zone map's `kind` says; with none,
        its trip is kept as a dead letter that says so (never taken for a fire)."""
        place = self._zones.get(_zone_key(signal.zone))
        if place is not None and place.kind is not None:
            return dataclasses.replace(signal, kind=place.kind, kind_from_map=False)
        if signal.active:
            self.reject(
                f"zone {signal.zone} tripped, but the zone map gives it no kind (kind: "
                "fire.alarm, leak, gas, device.tamper, ...): not an alarm until it does",
                raw.encode(),
            )
        return None

    def reject(self, reason: str, raw: bytes, receipt: Receipt | None = None) -> None:
        self._submit(
            Rejected(
                self.source,
                reason,
                self._clock.now(),
                self.panel.topic,
                raw,
                self.panel.device_id,
                receipt,
            )
        )

    def link_down(self, reason: str) -> None:
        offline = Observation(Kind.SENSOR_OFFLINE, True, detail=reason)
        self._submit(Report(self.source, self.panel, (offline,), self._clock.now(), alive=False))


def _observation(signal: Signal, known: bool, flag: str = "") -> Observation:
    detail = signal.detail if known else f"{signal.detail} ({UNMAPPED})".strip()
    if flag:
        detail = f"{detail} ({flag})".strip()
    return Observation(signal.kind, signal.active, signal.occurred_at, detail=detail)


def _with_receipt(report: Report, receipt: Receipt | None) -> Report:
    return report if receipt is None else dataclasses.replace(report, receipt=receipt)


def _zone_key(zone: str) -> str:
    """Zone 015, 15 and 0015 are one zone; named zones (EXP07-01) match as written."""
    zone = zone.strip().upper()
    return (zone.lstrip("0") or "0") if zone.isdigit() else zone
