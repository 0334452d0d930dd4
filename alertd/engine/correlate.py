"""Which incident an event belongs to: events of one playbook at one place (at the
playbook's `correlate.by` level) join the incident that is still open, or that was
resolved less than `correlate.window_s` ago (a flapping sensor reopens it rather than
opening a new one). A restore clears its device; the last one clears the incident."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alertd.events import Event, State
from alertd.playbooks.schema import Playbook


@dataclass(frozen=True, slots=True)
class OpenIncident:
    id: int
    playbook: str
    key: str
    status: Literal["open", "acknowledged", "resolved", "closed"]
    last_event_at: datetime
    #: "device_id kind" of every condition still active, sorted
    active: tuple[str, ...] = ()
    drill: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    playbook: str
    key: str
    #: open a new incident, attach to one, attach and clear it, or nothing to do
    outcome: Literal["open", "attach", "reopen", "all_clear", "ignore"]
    incident: int | None
    active: tuple[str, ...]
    reason: str


def correlation_key(playbook: Playbook, event: Event) -> str:
    loc = event.location
    parts = {
        "site": (loc.site,),
        "building": (loc.site, loc.building),
        "floor": (loc.site, loc.building, loc.floor),
        "unit": (loc.site, loc.building, loc.floor, loc.unit),
        "zone": (loc.site, loc.building, loc.floor, loc.zone),
        "device": (event.device_id,),
    }[playbook.correlate.by]
    return f"{playbook.correlate.by}:" + "/".join(parts)


def place(playbook: Playbook, event: Event, incidents: Iterable[OpenIncident]) -> Placement:
    key = correlation_key(playbook, event)
    condition = f"{event.device_id} {event.kind}"
    window = timedelta(seconds=playbook.correlate.window_s)
    mine = [
        i
        for i in incidents
        if i.playbook == playbook.name
        and i.key == key
        and i.drill == event.drill  # a drill never absorbs a real alarm, nor the reverse
    ]
    if event.state is not State.ACTIVE:
        # a restore finds the incident its alarm is in, however late it comes (a leak
        # that dries out after a day): else that incident's all-clear would never go out
        holding = [i for i in mine if condition in i.active]
        mine = holding or mine
    candidates = [
        i
        for i in mine
        if i.status in ("open", "acknowledged")
        or condition in i.active  # resolved, or closed, with this detector still in alarm
        or (i.status == "resolved" and event.occurred_at - i.last_event_at <= window)
    ]
    current = max(candidates, key=lambda i: i.last_event_at, default=None)
    if event.state is State.ACTIVE:
        # a new alarm never joins a closed incident: the record is final
        if current is not None and current.status == "closed":
            current = max(
                (i for i in candidates if i.status != "closed"),
                key=lambda i: i.last_event_at,
                default=None,
            )
        if current is None:
            return Placement(
                playbook.name, key, "open", None, (condition,), f"new incident for {key}"
            )
        outcome: Literal["attach", "reopen"] = (
            "reopen" if current.status == "resolved" else "attach"
        )
        return Placement(
            playbook.name,
            key,
            outcome,
            current.id,
            tuple(sorted({*current.active, condition})),
            f"joins incident {current.id} ({key})",
        )
    if current is None or condition not in current.active:
        return Placement(
            playbook.name,
            key,
            "ignore",
            current.id if current else None,
            current.active if current else (),
            "a restore with no open condition to clear",
        )
    left = tuple(c for c in current.active if c != condition)
    if left:
        return Placement(
            playbook.name,
            key,
            "attach",
            current.id,
            left,
            f"{condition} restored; {len(left)} still active",
        )
    return Placement(
        playbook.name, key, "all_clear", current.id, left, "the last active condition restored"
    )
