"""The one Event type every source hands to the core, and what sources observe.

Sources never build events themselves: they report `Observation`s (what one message
says about one condition of a device) and the core's edge detector turns changes of
condition into `Event`s. That keeps edge triggering, hold times and restart state in
one place, whatever the wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any


class Kind(StrEnum):
    FIRE_ALARM = "fire.alarm"
    FIRE_SUPERVISORY = "fire.supervisory"
    FIRE_TROUBLE = "fire.trouble"
    LEAK = "leak"
    GAS = "gas"
    POWER_LOSS = "power.loss"
    POWER_LOW_BATTERY = "power.low_battery"
    SENSOR_OFFLINE = "sensor.offline"
    DEVICE_BATTERY_LOW = "device.battery_low"
    DEVICE_TAMPER = "device.tamper"
    MANUAL = "manual"
    #: a panel's code alertd has no meaning for: kept as an event, with the code
    UNKNOWN = "unknown"


class State(StrEnum):
    ACTIVE = "active"
    RESTORE = "restore"


class Severity(IntEnum):
    """Ordered so that `max()` and comparisons mean "more urgent"."""

    INFO = 0
    WARNING = 1
    MINOR = 2
    MAJOR = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()


SEVERITY: dict[Kind, Severity] = {
    Kind.FIRE_ALARM: Severity.CRITICAL,
    Kind.MANUAL: Severity.CRITICAL,
    Kind.GAS: Severity.CRITICAL,
    Kind.FIRE_SUPERVISORY: Severity.MAJOR,
    Kind.LEAK: Severity.MAJOR,
    Kind.POWER_LOSS: Severity.MAJOR,
    Kind.FIRE_TROUBLE: Severity.MINOR,
    Kind.POWER_LOW_BATTERY: Severity.MINOR,
    Kind.SENSOR_OFFLINE: Severity.MINOR,
    Kind.DEVICE_TAMPER: Severity.MINOR,
    Kind.DEVICE_BATTERY_LOW: Severity.WARNING,
    Kind.UNKNOWN: Severity.WARNING,
}

#: Kinds that never wait behind telemetry and are never dropped.
LIFE_SAFETY: frozenset[Kind] = frozenset(
    {Kind.FIRE_ALARM, Kind.FIRE_SUPERVISORY, Kind.MANUAL, Kind.GAS, Kind.LEAK, Kind.POWER_LOSS}
)


def severity_of(kind: Kind, state: State) -> Severity:
    """A restore is information; an active condition carries its kind's severity."""
    return SEVERITY[kind] if state is State.ACTIVE else Severity.INFO


@dataclass(frozen=True, slots=True)
class Location:
    site: str = ""
    building: str = ""
    floor: str = ""
    unit: str = ""
    zone: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """What one message says about one condition of one device.

    `hold_s` > 0 means the condition must persist that long before it counts (a
    voltage dip of a second is not a power cut). `detail` is free text kept on the
    event, e.g. "test button".
    """

    kind: Kind
    active: bool
    occurred_at: datetime | None = None
    hold_s: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: Kind
    state: State
    severity: Severity
    device_id: str
    location: Location
    occurred_at: datetime
    received_at: datetime
    source: str
    raw: str = ""
    detail: str = ""
    #: the device's tags (extra columns of the devices file), for playbook matching
    tags: dict[str, str] = field(default_factory=dict)
    drill: bool = False

    def as_dict(self) -> dict[str, Any]:
        loc = self.location
        return {
            "id": self.id,
            "kind": str(self.kind),
            "state": str(self.state),
            "severity": str(self.severity),
            "device_id": self.device_id,
            "site": loc.site,
            "building": loc.building,
            "floor": loc.floor,
            "unit": loc.unit,
            "zone": loc.zone,
            "occurred_at": self.occurred_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "source": self.source,
            "detail": self.detail,
            "raw": self.raw,
            "tags": self.tags,
            "drill": self.drill,
        }
