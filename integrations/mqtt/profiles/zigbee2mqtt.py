"""zigbee2mqtt: JSON state on `<base>/<friendly_name>`, availability on `.../availability`.

The state message repeats every exposed property each time, so this profile reports
every hazard key it sees and leaves it to the core's edge detector to notice changes.
Availability is JSON `{"state": "online"}` (1.24+ and 2.x) or legacy plain `online`.
"""

from __future__ import annotations

from typing import Any

from alertd.devices import Device
from alertd.events import Kind, Observation
from integrations.mqtt.profiles.base import (
    IGNORED,
    Decoded,
    PayloadError,
    Profile,
    Value,
    json_object,
    offline,
    text,
    timestamp,
)

#: state key -> the kind it reports (true = active)
HAZARDS: dict[str, Kind] = {
    "water_leak": Kind.LEAK,
    "smoke": Kind.FIRE_ALARM,
    "gas": Kind.GAS,
    "carbon_monoxide": Kind.GAS,
    "tamper": Kind.DEVICE_TAMPER,
    "battery_low": Kind.DEVICE_BATTERY_LOW,
}
#: numeric or text properties kept as the device's latest values
VALUES = ("battery", "voltage", "power", "current", "energy", "temperature", "linkquality", "state")


class Zigbee2Mqtt(Profile):
    name = "zigbee2mqtt"

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        # the whole base topic, so that devices missing from the CSV are noticed
        return (f"{_root(device)}/#",)

    def ignored_prefixes(self, device: Device) -> tuple[str, ...]:
        return (f"{_root(device)}/bridge",)

    def check(self, device: Device) -> list[str]:
        if "/" not in device.topic:
            return ["topic must be <base_topic>/<friendly_name>, e.g. zigbee2mqtt/flat_3b/leak"]
        return []

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        if suffix == "availability":
            return _availability(payload)
        if suffix:
            return IGNORED  # /set, /get: commands to the device, not reports from it
        if not payload:
            return IGNORED  # device removed: its retained state is cleared
        return self._state(json_object(payload))

    def _state(self, state: dict[str, Any]) -> Decoded:
        at = timestamp(state.get("last_seen"), self.tz)
        observations = []
        problems = []
        for key, kind in HAZARDS.items():
            if key not in state or state[key] is None:
                continue
            value = state[key]
            if not isinstance(value, bool):
                problems.append(f"{key} must be true or false, got {value!r}")
                continue
            detail = "test button" if kind is Kind.FIRE_ALARM and state.get("test") is True else ""
            observations.append(Observation(kind, value, at, detail=detail))
        if "smoke" in state and isinstance(state.get("trouble"), bool):
            observations.append(Observation(Kind.FIRE_TROUBLE, state["trouble"], at))
        values: dict[str, Value] = {
            k: state[k] for k in VALUES if isinstance(state.get(k), int | float | str)
        }
        return Decoded(tuple(observations), values, problems=tuple(problems))


def _availability(payload: bytes) -> Decoded:
    raw = text(payload)
    word: object = raw
    if raw.startswith("{"):
        word = json_object(payload).get("state")
    if word == "online":
        return offline(False)
    if word == "offline":
        return offline(True, detail="zigbee2mqtt availability offline")
    raise PayloadError(f'availability must be online/offline or {{"state": ...}}, got {raw!r}')


def _root(device: Device) -> str:
    return device.topic.split("/", 1)[0]
