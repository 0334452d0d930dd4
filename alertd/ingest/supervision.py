"""Heartbeats: a device silent for longer than its `heartbeat_s` is offline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from alertd.devices import Device


class Heartbeats:
    def __init__(
        self, devices: Iterable[Device], last_seen: Mapping[str, datetime], now: datetime
    ) -> None:
        # after a restart every device gets a full interval to speak again
        self._devices = {d.device_id: d for d in devices if d.heartbeat_s}
        self._deadline = {
            d.device_id: max(last_seen.get(d.device_id, now), now)
            + timedelta(seconds=d.heartbeat_s or 0)
            for d in self._devices.values()
        }
        self._silent: set[str] = set()

    def replace(self, devices: Iterable[Device], now: datetime) -> None:
        """A reloaded devices file: devices that stay keep their deadline and silence."""
        old = self._deadline
        self._devices = {d.device_id: d for d in devices if d.heartbeat_s}
        self._deadline = {
            d: old.get(d, now + timedelta(seconds=dev.heartbeat_s or 0))
            for d, dev in self._devices.items()
        }
        self._silent &= set(self._devices)

    def seen(self, device_id: str, at: datetime) -> None:
        device = self._devices.get(device_id)
        if device is not None:
            self._deadline[device_id] = at + timedelta(seconds=device.heartbeat_s or 0)
            self._silent.discard(device_id)

    def overdue(self, now: datetime) -> list[Device]:
        """Devices that have just gone silent (each reported once per silence)."""
        late = [
            self._devices[d]
            for d, deadline in self._deadline.items()
            if deadline <= now and d not in self._silent
        ]
        self._silent.update(d.device_id for d in late)
        return late
