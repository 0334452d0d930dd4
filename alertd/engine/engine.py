"""The engine: pure decisions. Given the open incidents, an event (or a due timer, or a
staff command) and the time, it says what changes and what to send; it does no I/O,
which is what makes replays and drills exact."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from alertd.engine.correlate import OpenIncident, correlation_key, place
from alertd.engine.match import Trace, check
from alertd.engine.run import RunContext, advance, escalate, run_inline, start, steps_of
from alertd.engine.state import Decision, Entry, Incident, IncidentIndex, Timer
from alertd.events import Event, Location, State
from alertd.playbooks.schema import Playbook, WaitAck

LEVELS = {"site": 1, "building": 2, "floor": 3, "unit": 4, "zone": 5, "device": 5}


class Engine:
    def __init__(
        self, playbooks: Mapping[str, Playbook], tz: tzinfo, *, resident_sms_in_drills: bool = False
    ) -> None:
        self.playbooks = dict(playbooks)
        self.tz = tz
        self.ctx = RunContext(tz, resident_sms_in_drills)

    def on_event(
        self,
        event: Event,
        incidents: IncidentIndex | Sequence[Incident],
        now: datetime,
        next_id: int,
    ) -> tuple[list[Trace], list[Decision]]:
        """One decision per matching playbook. `next_id` numbers new incidents."""
        index = incidents if isinstance(incidents, IncidentIndex) else IncidentIndex(incidents)
        traces = [check(pb, event, self.tz) for pb in self.playbooks.values()]
        summary = "; ".join(f"{t.playbook}: {t.reason}" for t in traces)
        by_id: dict[int, Incident] = {}
        decisions = []
        for trace in traces:
            if not trace.matched:
                continue
            pb = self.playbooks[trace.playbook]
            key = correlation_key(pb, event)
            mine = [i for i in index.find(pb.name, key) if i.status != "closed"]
            by_id.update((i.id, i) for i in mine)
            placed = place(pb, event, [_view(i) for i in mine])
            if placed.outcome == "ignore":
                continue
            decision = Decision()
            entry = Entry(
                "event",
                f"{event.kind} {event.state} at {event.device_id}: {placed.reason} [{summary}]",
                event_id=event.id,
            )
            decision.entries.append(entry)
            if placed.outcome == "open":
                incident = Incident(
                    id=next_id,
                    playbook=pb.name,
                    key=placed.key,
                    status="open",
                    severity=pb.severity or event.severity,
                    location=_trim(event.location, pb.correlate.by),
                    title=f"{event.kind} {_describe(event.location)}".strip(),
                    opened_at=now,
                    last_event_at=event.occurred_at,
                    active=placed.active,
                    drill=event.drill,
                )
                next_id += 1
                decision.entries.insert(0, Entry("opened", f"incident opened by {pb.name}"))
                decision.incident = start(pb, incident, "steps", now, self.ctx, decision)
            else:
                assert placed.incident is not None
                current = dataclasses.replace(
                    by_id[placed.incident],
                    active=placed.active,
                    last_event_at=max(by_id[placed.incident].last_event_at, event.occurred_at),
                )
                decision.incident = self._attached(
                    pb, current, placed.outcome, event, now, decision
                )
            decisions.append(decision)
        return traces, decisions

    def _attached(
        self,
        pb: Playbook,
        incident: Incident,
        outcome: str,
        event: Event,
        now: datetime,
        decision: Decision,
    ) -> Incident:
        if outcome == "reopen":
            decision.entries.append(Entry("reopened", "the condition came back"))
            reopened = dataclasses.replace(incident, status="open", resolved_at=None)
            return start(pb, reopened, "steps", now, self.ctx, decision)
        if outcome == "all_clear":
            decision.entries.append(Entry("all_clear", "every condition is back to normal"))
            incident = start(pb, incident, "on_restore", now, self.ctx, decision)
            if pb.on_restore.resolve == "auto":
                return self._resolved(
                    pb, incident, now, "alertd", "resolved automatically", decision
                )
            decision.entries.append(Entry("confirm", "staff to confirm and resolve"))
            return incident
        if event.state is State.ACTIVE and pb.mode == "restart":
            decision.entries.append(Entry("step", "mode restart: the steps start again"))
            decision.cancel_timers = True
            return start(pb, incident, "steps", now, self.ctx, decision)
        if event.state is State.ACTIVE and pb.mode == "queued":
            if incident.run.done:
                return start(pb, incident, "steps", now, self.ctx, decision)
            return dataclasses.replace(incident, run=dataclasses.replace(incident.run, queued=True))
        return incident

    def on_timer(self, incident: Incident, timer: Timer, now: datetime) -> Decision:
        pb = self.playbooks.get(incident.playbook)
        decision = Decision()
        if pb is None:
            decision.entries.append(Entry("timer", f"playbook {incident.playbook} is gone"))
            return decision
        if timer.kind == "follow_up":
            if incident.status == "resolved":
                decision.entries.append(Entry("follow_up", "follow-up"))
                decision.incident = start(pb, incident, "follow_up", now, self.ctx, decision)
            return decision
        if incident.run.waiting != timer.step or incident.status in ("resolved", "closed"):
            return decision  # overtaken by an acknowledgement, a restart or a resolution
        if timer.kind == "continue":
            moved = dataclasses.replace(
                incident, run=dataclasses.replace(incident.run, step=timer.step + 1, waiting=None)
            )
            decision.incident = advance(pb, moved, now, self.ctx, decision)
        elif incident.status == "open":
            decision.incident = escalate(pb, incident, timer, now, self.ctx, decision)
        return decision

    def acknowledge(self, incident: Incident, by: str, now: datetime, text: str = "") -> Decision:
        decision = Decision(cancel_timers=True)
        decision.entries.append(Entry("acknowledged", text or "acknowledged", actor=by))
        acked = dataclasses.replace(incident, status="acknowledged", acknowledged_at=now)
        pb = self.playbooks.get(incident.playbook)
        run = acked.run
        if (
            pb is not None
            and run.waiting is not None
            and isinstance(steps_of(pb, run.sequence)[run.waiting], WaitAck)
        ):
            moved = dataclasses.replace(
                acked, run=dataclasses.replace(run, step=run.waiting + 1, waiting=None)
            )
            acked = advance(pb, moved, now, self.ctx, decision)
        decision.incident = acked
        return decision

    def note(self, incident: Incident, by: str, text: str) -> Decision:
        return Decision(incident, [Entry("note", text, actor=by)])

    def expect_restore(
        self, incident: Incident, by: str, eta: datetime, now: datetime, text: str = ""
    ) -> Decision:
        """Staff learnt when service comes back: record it and tell whom the playbook says."""
        decision = Decision()
        local = eta.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")
        decision.entries.append(
            Entry(
                "restore_eta", f"expected restore {local}" + (f": {text}" if text else ""), actor=by
            )
        )
        updated = dataclasses.replace(incident, expected_restore_at=eta)
        pb = self.playbooks.get(incident.playbook)
        if pb is not None:
            updated = run_inline(pb, updated, list(pb.on_eta), "on_eta", now, self.ctx, decision)
        decision.incident = updated
        return decision

    def resolve(self, incident: Incident, by: str, now: datetime, text: str = "") -> Decision:
        decision = Decision(cancel_timers=True)
        pb = self.playbooks.get(incident.playbook)
        decision.incident = self._resolved(pb, incident, now, by, text or "resolved", decision)
        return decision

    def close(self, incident: Incident, by: str, text: str = "") -> Decision:
        """Closed: the record is complete; no event joins it any more."""
        decision = Decision(cancel_timers=True)
        decision.entries.append(Entry("closed", text or "closed", actor=by))
        decision.incident = dataclasses.replace(incident, status="closed")
        return decision

    def _resolved(
        self,
        pb: Playbook | None,
        incident: Incident,
        now: datetime,
        by: str,
        text: str,
        decision: Decision,
    ) -> Incident:
        decision.entries.append(Entry("resolved", text, actor=by))
        if pb is not None and pb.follow_up is not None:
            due = now + timedelta(seconds=pb.follow_up.after_s)
            decision.timers.append(Timer(incident.id, due, "follow_up"))
            decision.entries.append(Entry("follow_up", f"follow-up due {due.isoformat()}"))
        return dataclasses.replace(incident, status="resolved", resolved_at=now)


def _view(incident: Incident) -> OpenIncident:
    assert incident.status != "closed"
    return OpenIncident(
        incident.id,
        incident.playbook,
        incident.key,
        incident.status,
        incident.last_event_at,
        incident.active,
    )


def _trim(location: Location, level: str) -> Location:
    """The incident's place: as precise as its correlation level."""
    keep = LEVELS[level]
    values = [location.site, location.building, location.floor, location.unit, location.zone]
    if level == "zone":
        values[3] = ""
    return Location(*[v if i < keep else "" for i, v in enumerate(values)])


def _describe(location: Location) -> str:
    return " ".join(
        p
        for p in (
            location.site,
            location.building and f"building {location.building}",
            location.floor and f"floor {location.floor}",
            location.unit and f"unit {location.unit}",
            location.zone,
        )
        if p
    )
