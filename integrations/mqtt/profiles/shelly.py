"""Shelly devices over their built-in MQTT.

Gen1 publishes plain values under `shellies/<id>/...`: `online` true/false (the Last
Will), `relay/<n>` on/off/overpower, `relay/<n>/power` W, `sensor/flood` and
`sensor/smoke` true/false, `sensor/alarm_state` for the Gas.
Gen2/Plus/Pro publish JSON under their MQTT prefix: `<prefix>/online` true/false,
`<prefix>/status/<component>` (e.g. `switch:0`, `flood:0`, `smoke:0`) and
`<prefix>/events/rpc` with NotifyStatus frames carrying a Unix `ts`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alertd.devices import Device
from alertd.events import Kind, Observation
from integrations.mqtt.profiles.base import (
    IGNORED,
    Decoded,
    PayloadError,
    Profile,
    Value,
    flag,
    json_object,
    number,
    offline,
    text,
    timestamp,
)

GEN1_FLAGS = {"sensor/flood": Kind.LEAK, "sensor/smoke": Kind.FIRE_ALARM}
GEN1_NUMBERS = ("power", "energy", "voltage", "current", "temperature", "battery")
GAS_ALARM = {"none": False, "mild": True, "heavy": True}
GEN2_ALARMS = {"flood": Kind.LEAK, "smoke": Kind.FIRE_ALARM}


def _online(payload: bytes) -> Decoded:
    is_online = flag(text(payload), "online")
    return offline(not is_online, detail="" if is_online else "Shelly Last Will: offline")


class ShellyGen1(Profile):
    name = "shelly_gen1"

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        root = device.topic.split("/", 1)[0]
        return (f"{root}/#",) if "/" in device.topic else super().subscriptions(device)

    def ignored_prefixes(self, device: Device) -> tuple[str, ...]:
        root = device.topic.split("/", 1)[0]
        return (f"{root}/announce", f"{root}/command")

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        if suffix == "online":
            return _online(payload)
        if suffix in GEN1_FLAGS:
            return Decoded((Observation(GEN1_FLAGS[suffix], flag(text(payload), suffix)),))
        if suffix == "sensor/alarm_state":
            state = text(payload).lower()
            if state in ("unknown", "test"):
                return Decoded(values={"alarm_state": state})
            if state not in GAS_ALARM:
                raise PayloadError(f"alarm_state must be none/mild/heavy, got {state!r}")
            return Decoded((Observation(Kind.GAS, GAS_ALARM[state], detail=state),))
        parts = suffix.split("/")
        if suffix.endswith("/command") or parts[0] in ("command",):
            return IGNORED
        if parts[-1] in GEN1_NUMBERS:
            return Decoded(values={suffix: number(text(payload), suffix)})
        if parts[0] == "relay" and len(parts) == 2:
            state = text(payload).lower()
            if state not in ("on", "off", "overpower"):
                raise PayloadError(f"{suffix} must be on/off/overpower, got {state!r}")
            return Decoded(values={suffix: state})
        return Decoded()  # announce, info, input/0, ...: the device is alive


class ShellyGen2(Profile):
    name = "shelly_gen2"

    def bases(self, device: Device) -> tuple[str, ...]:
        return (device.topic or device.device_id,)

    def check(self, device: Device) -> list[str]:
        return []  # the prefix defaults to the device id

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        if suffix == "online":
            return _online(payload)
        if suffix.startswith("status/"):
            return self._components({suffix[len("status/") :]: json_object(payload)}, None)
        if suffix == "events/rpc":
            frame = json_object(payload)
            params = frame.get("params")
            if frame.get("method") in ("NotifyStatus", "NotifyFullStatus") and isinstance(
                params, dict
            ):
                return self._components(params, timestamp(params.get("ts"), self.tz))
            return Decoded()  # NotifyEvent and others: the device is alive
        if suffix in ("rpc", "command") or suffix.startswith("command/"):
            return IGNORED
        return Decoded()

    def _components(self, status: dict[str, Any], at: datetime | None) -> Decoded:
        observations = []
        values: dict[str, Value] = {}
        problems = []
        for name, body in status.items():
            if not isinstance(body, dict):
                continue
            family = name.split(":", 1)[0]
            if family in GEN2_ALARMS and "alarm" in body:
                try:
                    observations.append(
                        Observation(GEN2_ALARMS[family], flag(body["alarm"], f"{name}.alarm"), at)
                    )
                except PayloadError as exc:
                    problems.append(str(exc))
            elif family in ("switch", "pm1", "em1"):
                for key in ("output", "apower", "voltage", "current", "act_power"):
                    if isinstance(body.get(key), int | float | bool):
                        values[f"{name}.{key}"] = body[key]
            elif family == "devicepower":
                battery = body.get("battery")
                if isinstance(battery, dict) and isinstance(battery.get("percent"), int | float):
                    values[f"{name}.battery"] = battery["percent"]
        return Decoded(tuple(observations), values, problems=tuple(problems), occurred_at=at)
