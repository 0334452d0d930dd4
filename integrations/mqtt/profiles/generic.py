"""A profile configured in YAML: which topic and field, and what values mean.

It may build on a built-in profile (`base:`), adding rules (e.g. a Tasmota energy
monitor whose `ENERGY.Voltage` below 180 V for 5 s is a power loss) and saying that
the device going offline means a power loss too (`offline_means`).
"""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any

from alertd.devices import Device
from alertd.events import Observation
from integrations.mqtt.profiles.base import (
    Decoded,
    PayloadError,
    Profile,
    Value,
    dig,
    number,
    offline,
    text,
)
from integrations.mqtt.profiles.spec import AvailabilitySpec, ProfileSpec, RuleSpec, Scalar


class Generic(Profile):
    def __init__(self, name: str, spec: ProfileSpec, base: Profile | None, tz: tzinfo) -> None:
        super().__init__(tz)
        self.name = name
        self.offline_means = tuple(spec.offline_means)
        rules, availability = spec.rules, spec.availability
        self.rules = rules
        self.availability = availability
        self.base = base

    def _topic(self, template: str, device: Device) -> str:
        return template.format(topic=device.topic, device_id=device.device_id)

    def bases(self, device: Device) -> tuple[str, ...]:
        own = [self._topic(r.topic, device) for r in self.rules]
        if self.availability:
            own.append(self._topic(self.availability.topic, device))
        inherited = self.base.bases(device) if self.base else ()
        return tuple(dict.fromkeys([*inherited, *own]))

    def subscriptions(self, device: Device) -> tuple[str, ...]:
        inherited = self.base.subscriptions(device) if self.base else ()
        return tuple(dict.fromkeys([*inherited, *self.bases(device)]))

    def ignored_prefixes(self, device: Device) -> tuple[str, ...]:
        return self.base.ignored_prefixes(device) if self.base else ()

    def check(self, device: Device) -> list[str]:
        return self.base.check(device) if self.base else []

    def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
        topic = f"{base}/{suffix}" if suffix else base
        decoded = Decoded(alive=False)
        for inherited in self.base.bases(device) if self.base else ():
            if topic == inherited or topic.startswith(inherited + "/"):
                assert self.base is not None
                decoded = self.base.decode(device, inherited, topic[len(inherited) + 1 :], payload)
                break
        if self.availability and topic == self._topic(self.availability.topic, device):
            return _availability(self.availability, payload)
        rules = [r for r in self.rules if self._topic(r.topic, device) == topic]
        if not rules:
            return decoded
        observations = list(decoded.observations)
        values: dict[str, Value] = dict(decoded.values)
        problems: list[str] = []
        for rule in rules:
            try:
                value = _read(payload, rule.field)
                if rule.field:
                    values[rule.field] = (
                        value if isinstance(value, int | float | str | bool) else str(value)
                    )
                active = _judge(rule, value)
            except PayloadError as exc:
                problems.append(str(exc))
                continue
            if active is not None:
                observations.append(
                    Observation(rule.kind, active, decoded.occurred_at, hold_s=rule.hold_s)
                )
        if len(problems) == len(rules) and not decoded.alive:
            raise PayloadError("; ".join(problems))  # nothing in the message could be read
        return Decoded(
            tuple(observations), values, True, (*decoded.problems, *problems), decoded.occurred_at
        )


def _read(payload: bytes, field: str | None) -> Any:
    if field is None:
        raw = text(payload)
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, int | float | str | bool) else raw
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from exc
    return dig(data, field)


def _same(value: Any, candidates: list[Scalar]) -> bool:
    for c in candidates:
        if isinstance(c, str) and isinstance(value, str):
            if c.lower() == value.lower():
                return True
        elif c == value and type(c) is type(value):
            return True
    return False


def _judge(rule: RuleSpec, value: Any) -> bool | None:
    """True/False for active/restore, None when the value is in the dead band."""
    name = rule.field or "payload"
    if rule.active is not None:
        if _same(value, rule.active):
            return True
        if rule.restore is None or _same(value, rule.restore):
            return False
        raise PayloadError(f"{name} value {value!r} is neither {rule.active} nor {rule.restore}")
    if rule.tokens is not None:
        words = {w.upper() for w in str(value).split()}
        if words & {t.upper() for t in rule.tokens}:
            return True
        if rule.restore_tokens is None or words & {t.upper() for t in rule.restore_tokens}:
            return False
        return None
    x = number(value, name)
    if rule.below is not None:
        restore_at = rule.restore_above if rule.restore_above is not None else rule.below
        return True if x < rule.below else (False if x >= restore_at else None)
    assert rule.above is not None
    restore_at = rule.restore_below if rule.restore_below is not None else rule.above
    return True if x > rule.above else (False if x <= restore_at else None)


def _availability(spec: AvailabilitySpec, payload: bytes) -> Decoded:
    value = _read(payload, spec.field)
    if _same(value, spec.online):
        return offline(False)
    if _same(value, spec.offline):
        return offline(True, detail="availability offline")
    raise PayloadError(f"availability must be one of {spec.online + spec.offline}, got {value!r}")
