"""The YAML schema of a configured profile (the `profiles:` section of the config)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from alertd.events import Kind
from alertd.model import YEAR_S, Strict

BUILTIN = ("zigbee2mqtt", "tasmota", "shelly_gen1", "shelly_gen2", "homeassistant")

Scalar = str | int | float | bool


class RuleSpec(Strict):
    """One condition read from one topic (and optionally one JSON field) of a device.

    Exactly one way of reading it: `active`/`restore` values, a numeric threshold
    (`below` or `above`, with an optional restore threshold for hysteresis), or
    whitespace-separated `tokens` (e.g. NUT's `ups.status` of `OB DISCHRG`).
    """

    topic: str = "{topic}"
    field: str | None = None
    kind: Kind
    active: list[Scalar] | None = None
    restore: list[Scalar] | None = None
    below: float | None = None
    above: float | None = None
    restore_above: float | None = None
    restore_below: float | None = None
    tokens: list[str] | None = None
    restore_tokens: list[str] | None = None
    hold_s: float = Field(0.0, ge=0, le=YEAR_S)

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        ways = [
            self.active is not None,
            self.below is not None or self.above is not None,
            self.tokens is not None,
        ]
        if sum(ways) != 1:
            raise ValueError(
                "give exactly one of: active (values), below/above (threshold), tokens"
            )
        if self.below is not None and self.above is not None:
            raise ValueError("give below or above, not both")
        if self.restore is not None and self.active is None:
            raise ValueError("restore values go with active values")
        if self.restore_tokens is not None and self.tokens is None:
            raise ValueError("restore_tokens go with tokens")
        below, above = self.below, self.above
        if below is not None and self.restore_above is not None and self.restore_above < below:
            raise ValueError("restore_above must be at least below")
        if above is not None and self.restore_below is not None and self.restore_below > above:
            raise ValueError("restore_below must be at most above")
        if "{topic}" not in self.topic and "{device_id}" not in self.topic:
            raise ValueError("topic must contain {topic} or {device_id}")
        return self


class AvailabilitySpec(Strict):
    topic: str = "{topic}/availability"
    field: str | None = None
    online: list[Scalar] = ["online"]
    offline: list[Scalar] = ["offline"]


class ProfileSpec(Strict):
    base: (
        Literal["zigbee2mqtt", "tasmota", "shelly_gen1", "shelly_gen2", "homeassistant"] | None
    ) = None
    offline_means: list[Kind] = []
    availability: AvailabilitySpec | None = None
    rules: list[RuleSpec] = []

    @model_validator(mode="after")
    def _reads_something(self) -> Self:
        if self.base is None and not self.rules and self.availability is None:
            raise ValueError("a profile needs a base, rules or availability")
        return self
