"""Tasmota with the default FullTopic `%prefix%/%topic%/`.

`tele/<topic>/LWT` is `Online`/`Offline` (the Last Will), `tele/<topic>/SENSOR` and
`tele/<topic>/STATE` are JSON with a local `Time`, energy monitors add an `ENERGY`
block, and `stat/<topic>/POWER[n]` is the relay state `ON`/`OFF`.
"""

from __future__ import annotations

from typing import Any

from alertd.devices import Device
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

ENERGY = ("Voltage", "Power", "Current", "Total", "Today", "Factor", "ApparentPower")


class Tasmota(Profile):
    name = "tasmota"

    def bases(self, device: Device) -> tuple[str, ...]:
        return (f"tele/{device.topic}", f"stat/{device.topic}")

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        return ("tele/#", "stat/#")

    def check(self, device: Device) -> list[str]:
        if not device.topic or "/" in device.topic:
            return ["topic must be Tasmota's %topic% (e.g. tasmota_9CF9D1), without tele/ or stat/"]
        return []

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        prefix = base.split("/", 1)[0]
        if prefix == "tele":
            if suffix == "LWT":
                return _lwt(payload)
            if suffix in ("SENSOR", "STATE"):
                return self._telemetry(json_object(payload))
            return Decoded()  # INFO1..3, MARGINS, ...: the device is alive
        if suffix.startswith("POWER"):
            return Decoded(values={suffix: _on_off(text(payload), suffix)})
        if suffix == "RESULT":
            result = json_object(payload)
            return Decoded(values=_powers(result))
        return Decoded() if suffix.startswith("STATUS") else IGNORED

    def _telemetry(self, data: dict[str, Any]) -> Decoded:
        at = timestamp(data.get("Time"), self.tz)
        values: dict[str, Value] = _powers(data)
        energy = data.get("ENERGY")
        if isinstance(energy, dict):
            for key in ENERGY:
                if isinstance(energy.get(key), int | float) and not isinstance(energy[key], bool):
                    values[key] = energy[key]
        return Decoded(values=values, occurred_at=at)


def _lwt(payload: bytes) -> Decoded:
    word = text(payload)
    if word.lower() == "online":
        return offline(False)
    if word.lower() == "offline":
        return offline(True, detail="Tasmota LWT Offline")
    raise PayloadError(f"LWT must be Online or Offline, got {word!r}")


def _on_off(value: object, name: str) -> str:
    if isinstance(value, str) and value.upper() in ("ON", "OFF"):
        return value.upper()
    raise PayloadError(f"{name} must be ON or OFF, got {value!r}")


def _powers(data: dict[str, Any]) -> dict[str, Value]:
    return {k: _on_off(v, k) for k, v in data.items() if k.startswith("POWER")}
