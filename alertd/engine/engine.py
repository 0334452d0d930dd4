"""The engine: pure decisions. Given the open incidents, an event (or a due timer, or a
staff command) and the time, it says what changes and what to send; it does no I/O,
which is what makes replays and drills exact."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from alertd.engine.correlate import OpenIncident, Placement, correlation_key
from alertd.engine.correlate import place as placement
from alertd.engine.inhibit import InhibitRule, explained_by
from alertd.engine.match import Trace, check
from alertd.engine.run import Locale, RunContext, advance, escalate, run_inline, start, steps_of
from alertd.engine.state import Decision, Entry, Incident, IncidentIndex, Timer
from alertd.engine.wording import place, stamp, title
from alertd.events import Event, Location, State
from alertd.playbooks.schema import Playbook, WaitAck

LEVELS = {"site": 1, "building": 2, "floor": 3, "unit": 4, "zone": 5, "device": 5}


class Engine:
    def __init__(
        self,
        playbooks: Mapping[str, Playbook],
        tz: tzinfo,
        *,
        resident_sms_in_drills: bool = False,
        signatures: Mapping[str, str] | None = None,
        drill_end_s: float = 4 * 3600.0,
        inhibit: Sequence[InhibitRule] = (),
        sites: Mapping[str, Locale] | None = None,
        overrides: Mapping[str, Mapping[str, Playbook]] | None = None,
        keep_values: bool = False,
    ) -> None:
        """`sites`: each site's zone and signature; `overrides`: a site's own playbooks,
        which replace the shared ones of the same name there; `keep_values`: SMS actions
        keep the values their texts were made from (a provider's registered templates
        are filled with them)."""
        self.playbooks = dict(playbooks)
        self.overrides = {site: dict(own) for site, own in (overrides or {}).items()}
        #: per site, the playbooks in force there (only sites with overrides are here)
        self._books = {site: {**self.playbooks, **own} for site, own in self.overrides.items()}
        #: most events match few playbooks: the kind test and its reason, ready-made
        self._kinds = {
            id(pb): (
                frozenset(pb.match.kinds),
                f"is not one of {', '.join(k.value for k in pb.match.kinds)}",
            )
            for books in (self.playbooks, *self._books.values())
            for pb in books.values()
        }
        self.ctx = RunContext(
            tz,
            resident_sms_in_drills,
            dict(signatures or {}),
            drill_end_s,
            tuple(inhibit),
            dict(sites or {}),
            keep_values,
        )

    def books(self, site: str) -> dict[str, Playbook]:
        """The playbooks in force at `site`."""
        return self._books.get(site, self.playbooks)

    def book(self, incident: Incident) -> Playbook | None:
        return self.books(incident.location.site).get(incident.playbook)

    def zone(self, incident: Incident) -> tzinfo:
        return self.ctx.zone(incident.location.site)

    def on_event(
        self,
        event: Event,
        incidents: IncidentIndex | Sequence[Incident],
        now: datetime,
        next_id: int,
    ) -> tuple[list[Trace], list[Decision]]:
        """One decision per matching playbook. `next_id` numbers new incidents."""
        index = incidents if isinstance(incidents, IncidentIndex) else IncidentIndex(incidents)
        books = self.books(event.location.site)
        zone = self.ctx.zone(event.location.site)
        traces = [
            check(pb, event, zone)
            if event.kind in (kinds := self._kinds[id(pb)])[0]
            else Trace(name, False, f"kind {event.kind} {kinds[1]}")
            for name, pb in books.items()
        ]
        summary = "; ".join(f"{t.playbook}: {t.reason}" for t in traces)
        cause = explained_by(event, self.ctx.inhibit, index.live())
        if cause is not None:
            text = (
                f"{event.kind} {event.state} at {event.device_id} "
                f"({place(event.location, 'en')}) is explained by this incident: "
                "no incident of its own"
            )
            return traces, [Decision(cause, [Entry("inhibited", text, event_id=event.id)])]
        by_id: dict[int, Incident] = {}
        decisions = []
        for trace in traces:
            if not trace.matched:
                continue
            pb = books[trace.playbook]
            key = correlation_key(pb, event)
            # a closed incident still holding a condition is there for its restore alone
            mine = [i for i in index.find(pb.name, key) if i.status != "closed" or i.active]
            by_id.update((i.id, i) for i in mine)
            placed = placement(pb, event, [_view(i) for i in mine])
            if placed.outcome == "ignore":
                continue
            decision = Decision()
            entry = Entry(
                "event",
                f"{event.kind} {event.state} at {event.device_id} "
                f"({place(event.location, 'en')}): {placed.reason} [{summary}]",
                event_id=event.id,
            )
            decision.entries.append(entry)
            if placed.outcome == "open":
                decision.incident = self._open(pb, placed, event, now, next_id, mine, decision)
                next_id += 1
            else:
                assert placed.incident is not None
                before = by_id[placed.incident]
                current = dataclasses.replace(
                    before,
                    active=placed.active,
                    last_event_at=max(before.last_event_at, event.occurred_at),
                )
                decision.incident = self._attached(
                    pb, current, placed.outcome, event, now, decision
                )
            decisions.append(decision)
        return traces, decisions

    def _open(
        self,
        pb: Playbook,
        placed: Placement,
        event: Event,
        now: datetime,
        incident_id: int,
        others: Sequence[Incident],
        decision: Decision,
    ) -> Incident:
        incident = Incident(
            id=incident_id,
            playbook=pb.name,
            key=placed.key,
            status="open",
            severity=pb.severity or event.severity,
            location=_trim(event.location, pb.correlate.by),
            title=title(event.kind, event.location),
            opened_at=now,
            last_event_at=event.occurred_at,
            active=placed.active,
            units=(event.location.unit,) if event.location.unit else (),
            drill=event.drill,
            origin=event.location,
            seen=tuple(sorted(_places(event))),
        )
        decision.entries.insert(0, Entry("opened", f"incident opened by {pb.name}"))
        if event.drill:
            due = now + timedelta(seconds=self.ctx.drill_end_s)
            decision.timers.append(Timer(incident_id, due, "drill_end"))
        else:
            drills = sorted(i.id for i in others if i.drill)
            if drills:
                decision.entries.append(
                    Entry(
                        "note",
                        f"a drill runs here too (incident {', '.join(map(str, drills))}); "
                        "this is a real alarm, handled as one",
                    )
                )
        return advance(pb, incident, now, self.ctx, decision)  # built at its first step

    def _attached(
        self,
        pb: Playbook,
        incident: Incident,
        outcome: str,
        event: Event,
        now: datetime,
        decision: Decision,
    ) -> Incident:
        if outcome == "all_clear":
            incident = dataclasses.replace(incident, cleared_at=now)
            hold = pb.on_restore.hold_s
            if not hold:
                return self._clear(pb, incident, now, decision)
            decision.timers.append(Timer(incident.id, now + timedelta(seconds=hold), "clear"))
            decision.entries.append(
                Entry("restored", f"every condition is back to normal; all-clear after {hold:g} s")
            )
            return incident
        if event.state is not State.ACTIVE:
            return incident
        new = _places(event).difference(incident.seen)
        unit = event.location.unit
        new_unit = bool(unit) and unit not in incident.units
        if new or incident.cleared_at or incident.all_clear_sent or new_unit:
            incident = dataclasses.replace(
                incident,
                seen=tuple(sorted(new.union(incident.seen))),
                units=tuple(sorted({*incident.units, unit})) if new_unit else incident.units,
                cleared_at=None,
                all_clear_sent=False,
            )
        if outcome == "reopen":
            decision.entries.append(Entry("reopened", "the condition came back"))
            reopened = dataclasses.replace(incident, status="open", resolved_at=None)
            return start(pb, reopened, "steps", now, self.ctx, decision)
        join = pb.on_join
        news = sorted(p for p in new if join is not None and p.split(":", 1)[0] in join.new)
        if join is not None and news:
            decision.entries.append(
                Entry("join", f"new: {', '.join(news)}; announced", event_id=event.id)
            )
            incident = run_inline(
                pb, incident, join.steps, "on_join", now, self.ctx, decision, where=event.location
            )
        if pb.mode == "restart":
            decision.entries.append(Entry("step", "mode restart: the steps start again"))
            decision.cancel_timers = True
            return start(pb, incident, "steps", now, self.ctx, decision)
        if pb.mode == "queued":
            if incident.run.done:
                return start(pb, incident, "steps", now, self.ctx, decision)
            return dataclasses.replace(incident, run=dataclasses.replace(incident.run, queued=True))
        return incident

    def _clear(
        self, pb: Playbook, incident: Incident, now: datetime, decision: Decision
    ) -> Incident:
        """The all-clear, once per clearing: when nothing is active and either the playbook
        resolves by itself or staff have resolved the incident."""
        if incident.active or incident.all_clear_sent:
            return incident
        if pb.on_restore.resolve == "confirm" and incident.status not in ("resolved", "closed"):
            decision.entries.append(
                Entry(
                    "confirm",
                    "every condition is back to normal; the all-clear goes out when staff "
                    f"confirm: alertd incidents resolve {incident.id}",
                )
            )
            return incident
        decision.entries.append(Entry("all_clear", "every condition is back to normal"))
        cleared = dataclasses.replace(incident, all_clear_sent=True)
        cleared = start(pb, cleared, "on_restore", now, self.ctx, decision)
        if cleared.status in ("resolved", "closed"):
            return cleared
        return self._resolved(pb, cleared, now, "alertd", "resolved automatically", decision)

    def on_timer(self, incident: Incident, timer: Timer, now: datetime) -> Decision:
        pb = self.book(incident)
        decision = Decision()
        if incident.status == "closed" and timer.kind != "clear":
            return decision
        if timer.kind == "drill_end":
            hours = self.ctx.drill_end_s / 3600
            return self.close(
                incident, "alertd", f"the drill ended: closed after {hours:g} h", force=True
            )
        if pb is None:
            decision.entries.append(Entry("timer", f"playbook {incident.playbook} is gone"))
            return decision
        if timer.kind == "clear":
            held = (
                incident.cleared_at is not None
                and (now - incident.cleared_at).total_seconds() >= pb.on_restore.hold_s - 0.001
            )
            if held:
                decision.incident = self._clear(pb, incident, now, decision)
            return decision
        if timer.kind == "follow_up":
            if incident.status == "resolved":
                decision.entries.append(Entry("follow_up", "follow-up"))
                decision.incident = start(pb, incident, "follow_up", now, self.ctx, decision)
            return decision
        if incident.run.waiting != timer.step or incident.status == "resolved":
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
        """The first acknowledgement counts for response times; later ones are timeline
        lines; none after the incident is resolved."""
        if incident.status in ("resolved", "closed"):
            return Decision(refused=f"incident {incident.id} is {incident.status} already")
        if incident.status == "acknowledged" and incident.acknowledged_at is not None:
            at = stamp(incident.acknowledged_at, self.zone(incident))
            first = f"{incident.acknowledged_by or 'someone'} at {at}"
            entry = Entry("acknowledged", f"{text or 'acknowledged'} (first: {first})", actor=by)
            return Decision(incident, [entry], reply=f"already acknowledged by {first}")
        decision = Decision(cancel_timers=True)
        decision.entries.append(Entry("acknowledged", text or "acknowledged", actor=by))
        acked = dataclasses.replace(
            incident, status="acknowledged", acknowledged_at=now, acknowledged_by=by
        )
        pb = self.book(incident)
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

    def note(self, incident: Incident, by: str, text: str, kind: str = "note") -> Decision:
        """A line on the timeline: a note, a door-check visit (`visited`), or a technician
        on site (`on_site`, counted by the analytics)."""
        return Decision(incident, [Entry(kind, text, actor=by)])

    def expect_restore(
        self, incident: Incident, by: str, eta: datetime, now: datetime, text: str = ""
    ) -> Decision:
        """Staff learnt when service comes back: record it and tell whom the playbook says."""
        decision = Decision()
        local = stamp(eta, self.zone(incident))
        decision.entries.append(
            Entry(
                "restore_eta", f"expected restore {local}" + (f": {text}" if text else ""), actor=by
            )
        )
        updated = dataclasses.replace(incident, expected_restore_at=eta)
        pb = self.book(incident)
        if pb is not None and pb.on_eta:
            updated = run_inline(pb, updated, pb.on_eta, "on_eta", now, self.ctx, decision)
            decision.reply = f"expected restore {local}; {len(decision.actions)} message step(s)"
        else:
            decision.reply = (
                f"expected restore {local} recorded; playbook {incident.playbook} has no "
                "on_eta steps, so nobody was told"
            )
        decision.incident = updated
        return decision

    def resolve(
        self, incident: Incident, by: str, now: datetime, text: str = "", *, force: bool = False
    ) -> Decision:
        """Staff confirm it is over. The all-clear goes out now, unless a condition is still
        active: then resolving needs `force` and a reason, and the all-clear waits for the
        last one to clear (or for staff to send it: `all_clear`)."""
        if incident.status in ("resolved", "closed"):
            return Decision(refused=f"incident {incident.id} is {incident.status} already")
        refused = _still_active(incident, "resolve", force, text)
        if refused:
            return Decision(refused=refused)
        incident = dataclasses.replace(incident, active=_detectors(incident))
        decision = Decision(cancel_timers=True)
        pb = self.book(incident)
        resolved = self._resolved(pb, incident, now, by, text or "resolved", decision)
        if resolved.active:
            still = ", ".join(sorted(resolved.active))
            decision.reply = f"resolved; the all-clear waits until these clear: {still}"
            decision.entries.append(Entry("all_clear_held", decision.reply))
        elif pb is not None and not resolved.all_clear_sent:
            resolved = self._clear(pb, resolved, now, decision)
            sent = sum(a.channel == "sms" for a in decision.actions)
            decision.reply = f"resolved; all-clear: {sent} resident message step(s)"
        decision.incident = resolved
        return decision

    def help_requested(
        self, incident: Incident, resident: Mapping[str, str], text: str, now: datetime
    ) -> Decision:
        """A resident texted about this incident asks for help: a person is told now, with
        the flat, the name and the vulnerable note."""
        pb = self.book(incident) or FALLBACK
        where = Location(
            incident.origin.site or incident.location.site,
            resident.get("building", ""),
            resident.get("floor", ""),
            resident.get("unit", ""),
        )
        who = f"{place(where, 'en')} {resident.get('name', '')}".strip()
        decision = Decision()
        decision.entries.append(
            Entry("help_request", f"{who} asked for help: {text!r}", actor="resident")
        )
        extra = {
            "resident_name": resident.get("name", ""),
            "resident_note": resident.get("notes", ""),
            "resident_phone": resident.get("phone", ""),
            "resident_text": text,
        }
        decision.incident = run_inline(
            pb, incident, pb.on_help, "on_help", now, self.ctx, decision, where=where, extra=extra
        )
        decision.reply = f"help request from {who} sent to staff"
        return decision

    def close(
        self, incident: Incident, by: str, text: str = "", *, force: bool = False
    ) -> Decision:
        """Closed: the record is complete; no new alarm joins it any more. With a condition
        still active it needs `force` and a reason, and its detectors' restores still find
        it (the board shows it until they do)."""
        if incident.status == "closed":
            return Decision(refused=f"incident {incident.id} is closed already")
        refused = _still_active(incident, "close", force, text)
        if refused:
            return Decision(refused=refused)
        incident = dataclasses.replace(incident, active=_detectors(incident))
        decision = Decision(cancel_timers=True)
        decision.entries.append(Entry("closed", text or "closed", actor=by))
        if incident.active:
            decision.entries.append(Entry("still_active", f"still active: {_listed(incident)}"))
        decision.incident = dataclasses.replace(incident, status="closed")
        decision.reply = "closed" + (
            f"; still active: {_listed(incident)}" if incident.active else ""
        )
        return decision

    def all_clear(self, incident: Incident, by: str, now: datetime, text: str = "") -> Decision:
        """Staff send the all-clear themselves (a detector that will not clear, a restore
        that never comes): the playbook's `on_restore` steps, once."""
        pb = self.book(incident)
        if pb is None or not pb.on_restore.steps:
            return Decision(refused=f"playbook {incident.playbook} has no all-clear steps")
        if incident.all_clear_sent:
            return Decision(refused=f"incident {incident.id}: the all-clear was sent already")
        decision = Decision()
        why = f"all-clear sent by staff{': ' + text if text else ''}"
        if incident.active:
            why += f" (still active: {_listed(incident)})"
        decision.entries.append(Entry("all_clear", why, actor=by))
        cleared = dataclasses.replace(incident, all_clear_sent=True)
        status = cleared.status
        cleared = start(pb, cleared, "on_restore", now, self.ctx, decision)
        decision.incident = dataclasses.replace(cleared, status=status)
        sent = sum(a.channel == "sms" for a in decision.actions)
        decision.reply = f"all-clear: {sent} resident message step(s)"
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
            local = stamp(due, self.zone(incident))
            decision.entries.append(Entry("follow_up", f"follow-up due {local}"))
        return dataclasses.replace(incident, status="resolved", resolved_at=now)


#: conditions people raised (declare, drill), not detectors: resolving or closing the
#: incident ends them, as no restore ever will
BY_PEOPLE = ("manual:", "drill:")


def _detectors(incident: Incident) -> tuple[str, ...]:
    return tuple(c for c in incident.active if not c.startswith(BY_PEOPLE))


def _listed(incident: Incident) -> str:
    return ", ".join(sorted(incident.active))


def _still_active(incident: Incident, action: str, force: bool, reason: str) -> str:
    """Why resolving or closing is refused while a detector is still in alarm: it needs
    a confirmation (`force`) and a reason. Empty when it may go ahead."""
    if not _detectors(incident) or (force and reason.strip()):
        return ""
    if force:
        return f"incident {incident.id}: say why you {action} it while still active"
    return (
        f"incident {incident.id} is still active: {', '.join(sorted(_detectors(incident)))}. "
        f"To {action} it anyway, "
        "confirm with a reason (console: tick and say why; CLI: --force --reason)"
    )


#: for an incident whose playbook was removed: a resident's help request still reaches
#: security
FALLBACK = Playbook.model_validate(
    {"name": "(fallback)", "match": {"kinds": ["manual"]}, "steps": [{"note": "fallback"}]}
)


def _view(incident: Incident) -> OpenIncident:
    return OpenIncident(
        incident.id,
        incident.playbook,
        incident.key,
        incident.status,
        incident.last_event_at,
        incident.active,
        incident.drill,
    )


#: a building's and a floor's place text, one string each however many incidents hold it
_SHARED: dict[str, str] = {}


def _places(event: Event) -> frozenset[str]:
    """What `on_join.new` compares: the event's device, zone, unit, floor and building."""
    loc = event.location
    parts = {
        "device": event.device_id,
        "building": loc.building,
        "floor": loc.floor and f"{loc.building}/{loc.floor}",
        "unit": loc.unit and f"{loc.building}/{loc.unit}",
        "zone": loc.zone and f"{loc.building}/{loc.floor}/{loc.unit}/{loc.zone}",
    }
    places = [f"{k}:{v}" for k, v in parts.items() if v]
    shared = ("building:", "floor:")
    return frozenset(_SHARED.setdefault(p, p) if p.startswith(shared) else p for p in places)


def _trim(location: Location, level: str) -> Location:
    """The incident's place: as precise as its correlation level."""
    keep = LEVELS[level]
    values = [location.site, location.building, location.floor, location.unit, location.zone]
    if level == "zone":
        values[3] = ""
    return Location(*[v if i < keep else "" for i, v in enumerate(values)])
