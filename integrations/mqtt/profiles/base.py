"""What a profile is: a pure decoder from one ecosystem's MQTT messages to observations."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from alertd.devices import Device
from alertd.events import Kind, Observation

Value = float | int | str | bool


class PayloadError(ValueError):
    """The message cannot be read; the text says why (it goes to the dead-letter table)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    observations: tuple[Observation, ...] = ()
    values: Mapping[str, Value] = field(default_factory=dict)
    #: the message shows the device is talking (false for availability "offline" or
    #: for topics that are not the device's own reports, e.g. commands sent to it)
    alive: bool = True
    #: parts of the message that could not be read; the rest was used
    problems: tuple[str, ...] = ()
    #: the device's own time for this message, when it gives one
    occurred_at: datetime | None = None


IGNORED = Decoded(alive=False)


class Profile:
    """Base of every profile. Subclasses override `decode` and, where needed, the topics."""

    name = ""
    #: kinds that also become active when the device goes offline (mains monitors)
    offline_means: tuple[Kind, ...] = ()

    def __init__(self, tz: tzinfo = UTC) -> None:
        self.tz = tz  # for devices that report local times without an offset

    def bases(self, device: Device) -> tuple[str, ...]:
        """Topics owned by the device: messages arrive on a base or below it."""
        return (device.topic,)

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        return tuple(t for b in self.bases(device) for t in (b, f"{b}/#"))

    def ignored_prefixes(self, device: Device) -> tuple[str, ...]:
        """Topics under the subscriptions that belong to no device (bridge chatter)."""
        return ()

    def check(self, device: Device) -> list[str]:
        """Problems with a device row that only this profile can see."""
        return [] if device.topic else ["topic is empty"]

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        raise NotImplementedError


def text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8 text (byte {exc.start})") from exc


def json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object, got {type(data).__name__}")
    return data


def flag(
    value: object,
    name: str,
    *,
    true: tuple[str, ...] = ("true",),
    false: tuple[str, ...] = ("false",),
) -> bool:
    """A boolean from JSON true/false or from one of the given words (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in true:
            return True
        if word in false:
            return False
    raise PayloadError(f"{name} must be one of {[*true, *false]}, got {value!r}")


def number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise PayloadError(f"{name} must be a number, got {value!r}") from None


def dig(data: Any, dotted: str) -> Any:
    """`data["a"]["b"]` for "a.b"; a key containing dots is tried whole first."""
    if isinstance(data, dict) and dotted in data:
        return data[dotted]
    head, _, rest = dotted.partition(".")
    if not isinstance(data, dict) or head not in data:
        raise PayloadError(f"field {dotted!r} is missing")
    return dig(data[head], rest) if rest else data[head]


def timestamp(value: object, tz: tzinfo) -> datetime | None:
    """Device time: ISO 8601 (local `tz` when it has no offset) or Unix seconds/ms."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(UTC)
    return None


def offline(active: bool, at: datetime | None = None, detail: str = "") -> Decoded:
    """An availability message: offline is a `sensor.offline` observation, online its restore."""
    return Decoded(
        observations=(Observation(Kind.SENSOR_OFFLINE, active, at, detail=detail),),
        alive=not active,
    )
