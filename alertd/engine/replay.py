"""Replay: recorded or hand-written events through the playbooks in simulated time,
sending nothing. How a supervisor tests a playbook change before deploying it."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alertd.engine.engine import Engine
from alertd.engine.state import LASTING_TIMERS, Action, Decision, IncidentIndex, Timer
from alertd.events import Event, Kind, Location, State, severity_of

HORIZON = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    incident: int
    action: Action


def parse_event(line: str, number: int) -> Event:
    """One line of `alertd events --json` (or a hand-written subset of it)."""
    try:
        row: dict[str, Any] = json.loads(line)
        kind = Kind(row["kind"])
        state = State(row.get("state", "active"))
        at = datetime.fromisoformat(row["occurred_at"])
        if at.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset")
        return Event(
            id=int(row.get("id", number)),
            kind=kind,
            state=state,
            severity=severity_of(kind, state),
            device_id=row.get("device_id", f"replay-{number}"),
            location=Location(
                *(str(row.get(k, "")) for k in ("site", "building", "floor", "unit", "zone"))
            ),
            occurred_at=at,
            received_at=datetime.fromisoformat(row.get("received_at") or row["occurred_at"]),
            source=row.get("source", "replay"),
            raw=row.get("raw", ""),
            detail=row.get("detail", ""),
            tags=dict(row.get("tags") or {}),
            drill=bool(row.get("drill", False)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"line {number}: {exc}") from exc


def replay(events: Iterable[Event], engine: Engine, horizon: timedelta = HORIZON) -> Iterator[Step]:
    incidents = IncidentIndex()
    timers: list[tuple[datetime, int, Timer]] = []
    seq = 0
    next_id = 1
    last = None

    def apply(decisions: list[Decision], at: datetime) -> Iterator[Step]:
        nonlocal seq, timers
        for d in decisions:
            if d.incident is None:
                continue
            incidents.put(d.incident)
            if d.cancel_timers:
                timers = [
                    t
                    for t in timers
                    if t[2].incident != d.incident.id or t[2].kind in LASTING_TIMERS
                ]
                heapq.heapify(timers)
            for timer in d.timers:
                seq += 1
                heapq.heappush(timers, (timer.due_at, seq, timer))
            for action in d.actions:
                yield Step(at, d.incident.id, action)

    def fire_until(until: datetime) -> Iterator[Step]:
        while timers and timers[0][0] <= until:
            due, _, timer = heapq.heappop(timers)
            incident = incidents.get(timer.incident)
            if incident is not None:
                yield from apply([engine.on_timer(incident, timer, due)], due)

    for event in sorted(events, key=lambda e: (e.occurred_at, e.id)):
        yield from fire_until(event.occurred_at)
        _, decisions = engine.on_event(event, incidents, event.occurred_at, next_id)
        next_id = max([next_id, *(d.incident.id + 1 for d in decisions if d.incident)])
        yield from apply(decisions, event.occurred_at)
        last = event.occurred_at
    if last is not None:
        yield from fire_until(last + horizon)
