"""Which playbooks an event matches, and for the others which condition failed: the
answer to "why didn't it fire?" is data, kept on the incident timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from alertd.events import Event
from alertd.playbooks.schema import Playbook


@dataclass(frozen=True, slots=True)
class Trace:
    playbook: str
    matched: bool
    reason: str


def check(playbook: Playbook, event: Event, tz: tzinfo) -> Trace:
    m = playbook.match
    loc = event.location

    def fail(reason: str) -> Trace:
        return Trace(playbook.name, False, reason)

    if event.kind not in m.kinds:
        return fail(f"kind {event.kind} is not one of {', '.join(k.value for k in m.kinds)}")
    if event.state not in m.states:
        return fail(f"state {event.state} is not one of {', '.join(s.value for s in m.states)}")
    if event.state.value == "active" and event.severity < m.min_severity:
        return fail(f"severity {event.severity} is below {m.min_severity}")
    for name, allowed, value in (
        ("site", m.sites, loc.site),
        ("building", m.buildings, loc.building),
        ("floor", m.floors, loc.floor),
        ("unit", m.units, loc.unit),
        ("zone", m.zones, loc.zone),
    ):
        if allowed and value not in allowed:
            return fail(f"{name} {value or '(none)'} is not one of {', '.join(allowed)}")
    for tag, wanted in m.tags.items():
        if event.tags.get(tag) != wanted:
            return fail(f"tag {tag} is {event.tags.get(tag)!r}, not {wanted!r}")
    if m.drill is not None and event.drill != m.drill:
        return fail("a drill" if event.drill else "not a drill")
    if m.windows:
        local = event.occurred_at.astimezone(tz)
        if not any(w.contains(local) for w in m.windows):
            return fail(f"{local:%a %H:%M} is outside the playbook's time windows")
    return Trace(playbook.name, True, "matched")
