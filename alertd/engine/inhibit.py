"""Inhibition, as Alertmanager has it: an open incident whose cause explains an event
takes that event onto its own timeline instead of letting it open an incident. A power
cut that takes twelve mains monitors offline is one incident, not thirteen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import Field

from alertd.engine.state import Incident
from alertd.events import Event, Kind, Location, State
from alertd.model import Strict

Place = Literal["site", "building", "floor", "unit", "zone"]


class InhibitRule(Strict):
    """While an incident with an active `source` kind is open, events of a `target` kind
    at the same place (equal on every field of `equal`) are explained by it. Compare only
    fields the source's playbook correlates on (a building-wide incident has no floor)."""

    source: list[Kind] = Field(min_length=1)
    target: list[Kind] = Field(min_length=1)
    equal: list[Place] = Field(["site", "building"], min_length=1)


def _kinds(incident: Incident) -> set[str]:
    return {condition.rsplit(" ", 1)[-1] for condition in incident.active}


def _same(a: Location, b: Location, fields: Sequence[str]) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def explained_by(
    event: Event, rules: Sequence[InhibitRule], incidents: Iterable[Incident]
) -> Incident | None:
    """The open incident whose cause explains `event`, if any. Drills explain drills only;
    nothing explains an event of another site, whatever a rule's `equal` says."""
    if event.state is not State.ACTIVE:
        return None
    rules = [r for r in rules if event.kind in r.target]
    if not rules:
        return None
    for incident in incidents:
        if incident.status not in ("open", "acknowledged") or incident.drill != event.drill:
            continue
        if incident.location.site != event.location.site:
            continue
        kinds = _kinds(incident)
        for rule in rules:
            if kinds & {k.value for k in rule.source} and _same(
                incident.location, event.location, rule.equal
            ):
                return incident
    return None
