"""Profiles: one per device ecosystem, plus those configured in YAML."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo

from integrations.mqtt.profiles.base import Decoded, PayloadError, Profile
from integrations.mqtt.profiles.generic import Generic
from integrations.mqtt.profiles.homeassistant import HomeAssistant
from integrations.mqtt.profiles.shelly import ShellyGen1, ShellyGen2
from integrations.mqtt.profiles.spec import BUILTIN, ProfileSpec
from integrations.mqtt.profiles.tasmota import Tasmota
from integrations.mqtt.profiles.zigbee2mqtt import Zigbee2Mqtt

__all__ = ["BUILTIN", "Decoded", "PayloadError", "Profile", "build_profiles"]

_CLASSES: dict[str, type[Profile]] = {
    cls.name: cls for cls in (Zigbee2Mqtt, Tasmota, ShellyGen1, ShellyGen2, HomeAssistant)
}


def build_profiles(specs: Mapping[str, ProfileSpec], tz: tzinfo) -> dict[str, Profile]:
    """The built-in profiles plus the configured ones, by name."""
    profiles: dict[str, Profile] = {name: cls(tz) for name, cls in _CLASSES.items()}
    for name, spec in specs.items():
        base = _CLASSES[spec.base](tz) if spec.base else None
        profiles[name] = Generic(name, spec, base, tz)
    return profiles
