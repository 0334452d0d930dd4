"""Home Assistant-style binary sensors: `ON`/`OFF` on a state topic, `online`/`offline`
on an optional availability topic.

The message alone cannot say what the sensor watches, so the device row names it in
the `kind` column (our kinds or HA device classes). As in Home Assistant, ON means the
condition is present, except for `power` (ON = power present, so OFF is a power loss)
and `connectivity` (ON = connected).
"""

from __future__ import annotations

from alertd.devices import Device
from alertd.events import Kind, Observation
from integrations.mqtt.profiles.base import Decoded, Profile, flag, offline, text

ON = ("on", "true", "1", "wet", "detected")
OFF = ("off", "false", "0", "dry", "clear")
#: kinds whose ON payload means the opposite of the hazard
INVERTED = frozenset({Kind.POWER_LOSS, Kind.SENSOR_OFFLINE})


class HomeAssistant(Profile):
    name = "homeassistant"

    def bases(self, device: Device) -> tuple[str, ...]:
        return tuple(t for t in (device.topic, device.availability_topic) if t)

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        return self.bases(device)

    def check(self, device: Device) -> list[str]:
        problems = super().check(device)
        if device.kind is None:
            problems.append("the homeassistant profile needs the kind column (e.g. leak, smoke)")
        return problems

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        if suffix:
            return Decoded(alive=False)
        if base == device.availability_topic:
            return offline(
                not flag(text(payload), "availability", true=("online",), false=("offline",)),
                detail="availability offline",
            )
        kind = device.kind or Kind.FIRE_TROUBLE  # check() refuses devices without a kind
        on = flag(text(payload), "state", true=ON, false=OFF)
        return Decoded((Observation(kind, on != (kind in INVERTED)),))
