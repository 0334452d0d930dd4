"""Runs the engine on events, due timers and staff commands, one at a time, and stores
each decision in one transaction (incident, timeline, outbox, timers). New events are
decided in ingest's own commit (`commit`): the event, its incident and its first
messages, claimed for sending, are stored together.

Staff commands (`alertd incidents ack|note|resolve`, `alertd declare`, `alertd drill`)
arrive through the `commands` table, so that the daemon stays the one place where
incidents change. Timers are stored; after a restart those that fell due fire once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from alertd.clock import Clock
from alertd.directory.staff import Staff
from alertd.engine.engine import Engine
from alertd.engine.state import (
    LASTING_TIMERS,
    Decision,
    Entry,
    Incident,
    IncidentIndex,
    Timer,
)
from alertd.events import Event
from alertd.incidents import inputs
from alertd.store import Batch, Conn, Writer
from alertd.store import incidents as db
from alertd.store.sql import unsynced

if TYPE_CHECKING:
    from alertd.outbox.dispatcher import Fold

log = logging.getLogger(__name__)


class Delivery(Protocol):
    """What the incident service needs of delivery (alertd/outbox/dispatcher.py)."""

    def fold(self) -> Fold: ...


#: undecided events older than this at start-up are marked decided without playbooks
CATCH_UP = timedelta(hours=1)
#: resolved incidents a flapping sensor can still reopen
KEEP = timedelta(days=2)


class IncidentService:
    def __init__(
        self, writer: Writer, engine: Engine, clock: Clock, staff: Staff | None = None
    ) -> None:
        self._writer = writer
        self.engine = engine
        self._clock = clock
        self.staff = staff
        self._incidents = IncidentIndex()
        self._timers: dict[int, Timer] = {}
        self._next_id = 1
        self._lock = asyncio.Lock()
        self._ticking = asyncio.Lock()
        #: the undecided events found at start are decided (see `commit`)
        self._caught_up = asyncio.Event()
        #: a commit of decisions failed: what they put in memory was not stored, so the
        #: incidents and timers are read again before the next decision (`_deciding`)
        self._stale = False
        #: delivery: a decision that puts actions in the outbox folds a round of it into
        #: its own commit (the daemon's dispatcher; none in tests of decisions alone)
        self.delivery: Delivery | None = None
        #: commands from staff that make an event (declare, drill) go back to ingest
        self.make_event: Callable[[dict[str, Any]], None] | None = None

    async def open(self) -> list[Event]:
        """Load the state; returns the undecided events to catch up on."""
        store = self._writer.store
        assert store is not None
        await self._load()
        undecided: list[Event] = await self._writer.call(db.undecided_events, store.conn)
        return undecided

    async def catch_up(self, undecided: list[Event]) -> None:
        """Decide the events found undecided at start (stored by a daemon that stopped
        before deciding them), before any new one (see `commit`)."""
        now = self._clock.now()
        stale = [e for e in undecided if now - e.received_at > CATCH_UP]
        if stale:
            log.warning(
                "%d undecided event(s) older than %s: recorded, not run through playbooks",
                len(stale),
                CATCH_UP,
            )
            await self._decide_until_stored(stale, skip=True)
        await self._decide_until_stored([e for e in undecided if e not in stale])
        self._caught_up.set()

    async def _decide_until_stored(self, events: list[Event], *, skip: bool = False) -> None:
        """The events are committed, undecided: a decision that cannot be stored (disk
        full) is made again, from the state before it, until it can."""
        delay = 0.1
        while True:
            try:
                await self.decide_events(events, skip=skip)
                return
            except Exception as exc:
                if delay == 0.1:
                    log.error("decisions wait: the store cannot be written (%s)", exc)
                await asyncio.sleep(delay)  # a backoff while the disk is full
                delay = min(delay * 2, 5.0)

    async def _load(self) -> None:
        """The stored incidents, the next number and the pending timers: at start, and
        after a decision that could not be stored."""
        store = self._writer.store
        assert store is not None
        live = await self._writer.call(db.live_incidents, store.conn, self._clock.now(), KEEP)
        self._incidents = IncidentIndex(live)
        self._next_id = await self._writer.call(db.max_incident_id, store.conn) + 1
        self._timers = dict(await self._writer.call(db.pending_timers, store.conn))

    @contextlib.asynccontextmanager
    async def _deciding(self) -> AsyncIterator[None]:
        """One decision at a time, from the stored state if the last one failed."""
        async with self._lock:
            if self._stale:
                await self._load()
                self._stale = False
            yield

    async def decide_events(self, events: list[Event], *, skip: bool = False) -> None:
        """Decide events already stored, in order, and store all the decisions, with the
        events marked decided, in one transaction."""
        if not events:
            return
        async with self._deciding():
            now = self._clock.now()
            decisions = [] if skip else self._decide(events, now)
            await self._save(decisions, now, db.Done(events=tuple(e.id for e in events)))

    async def commit(self, batch: Batch, *, urgent: bool) -> None:
        """Ingest's commit of a batch with events: the events and the decisions on them in
        one durable transaction, with delivery folded in when they send something. So an
        alarm waits for one commit between its message and its first send, and is never
        stored undecided. If the commit fails (disk full) none of it is stored: ingest
        tries again, and the decisions are made again from the stored state."""
        await self._caught_up.wait()  # older undecided events first
        async with self._deciding():
            store = self._writer.store
            assert store is not None
            now = self._clock.now()
            decisions = self._decide(batch.events, now)
            await self._save(
                decisions,
                now,
                db.Done(),
                first=lambda _conn: store.write(batch, decided=True),
                urgent=urgent,
            )

    def _decide(self, events: list[Event], now: datetime) -> list[Decision]:
        """In order: each event sees the incidents the previous ones changed."""
        decisions: list[Decision] = []
        for event in events:
            _, made = self.engine.on_event(event, self._incidents, now, self._next_id)
            for d in made:
                if d.incident is not None:
                    self._incidents.put(d.incident)
                    self._next_id = max(self._next_id, d.incident.id + 1)
            decisions.extend(made)
        return decisions

    async def tick(self) -> None:
        """Fire due timers and apply staff commands. One tick at a time: two would read the
        same due timer or pending command and apply it twice."""
        async with self._ticking:
            await self._tick()

    async def _tick(self) -> None:
        now = self._clock.now()
        for tid, timer in sorted(self._timers.items(), key=lambda t: t[1].due_at):
            if timer.due_at > now:
                break
            async with self._deciding():
                if tid not in self._timers:  # read again after a failed decision: gone
                    continue
                incident = self._incidents.get(timer.incident)
                try:
                    decision = (
                        self.engine.on_timer(incident, timer, now) if incident else Decision()
                    )
                except Exception as exc:  # fired with the reason, not again at every tick
                    log.error("timer %d (%s) cannot be applied: %r", tid, timer.kind, exc)
                    why = f"{timer.kind} timer could not be applied: {exc!r}"[:500]
                    decision = Decision(incident=incident, entries=[Entry("timer_failed", why)])
                await self._save([decision], now, db.Done(timer=tid))
                self._timers.pop(tid, None)  # fired, and stored as fired
        store = self._writer.store
        assert store is not None
        for command in await self._writer.call(db.pending_commands, store.conn):
            await self._command(command)

    async def _command(self, command: dict[str, Any]) -> None:
        """Apply one staff command. Whatever it holds, it ends done or failed: a command
        the daemon cannot apply (it raises) is marked failed with the reason, once, and
        never stops the ticker; left pending, it would fail again at every start."""
        cid = command["id"]
        async with self._deciding():
            try:
                outcome = await self._apply(command, self._clock.now())
            except Exception as exc:
                log.error("command %d (%s) cannot be applied: %r", cid, command["command"], exc)
                why = f"could not be applied: {exc!r}"[:500]
                incident = self._incidents.get(command["incident_id"] or 0)
                await self._failed(cid, why, incident)
                return
            if not isinstance(outcome, Decision):
                await self._failed(cid, outcome)
                return
            try:
                done = db.Done(command=(cid, "done", outcome.reply))
                await self._save([outcome], self._clock.now(), done)
            except Exception as exc:
                log.error("command %d (%s) cannot be stored: %r", cid, command["command"], exc)
                await self._load()  # what the decision put in memory is not stored
                self._stale = False
                incident = self._incidents.get(command["incident_id"] or 0)
                # a store that cannot be written raises here too: the command stays pending
                await self._failed(cid, f"could not be stored: {exc!r}"[:500], incident)

    async def _apply(self, command: dict[str, Any], now: datetime) -> Decision | str:
        """The command's decision, or why it is refused (a string)."""
        name, actor, text = command["command"], command["actor"], command["text"]
        args = json.loads(command["args"] or "{}")
        if not isinstance(args, dict):
            raise TypeError(f"args must be an object, not {type(args).__name__}")
        cid = command["id"]
        if name != "help" and not self._known(actor):
            who = f"{actor!r} is not in the staff file" if actor.strip() else "no name"
            return f"{who}: staff actions need a name from the staff file"
        about = self._incidents.get(command["incident_id"] or 0)
        if name in ("declare", "drill") or (name == "help" and about is None):
            if self.make_event is not None:
                if name == "help":  # no incident to attach to: a manual emergency
                    args = {**_help_place(args), "command": f"help-{cid}"}
                self.make_event({**args, "actor": actor, "text": text, "drill": name == "drill"})
            return Decision(reply="event made")
        incident = self._incidents.get(command["incident_id"])
        if incident is None:
            store = self._writer.store
            assert store is not None
            status = await self._writer.call(db.incident_status, store.conn, command["incident_id"])
            if status:
                return f"incident {command['incident_id']} is {status}"
            return f"no incident {command['incident_id']}"
        if incident.status == "closed" and name not in ("help", "all_clear"):
            return f"incident {incident.id} is closed: the record is final"
        if name == "ack":
            decision = self.engine.acknowledge(incident, actor, now, text)
        elif name in ("note", "visited", "on_site"):
            decision = self.engine.note(incident, actor, text, name)
        elif name == "resolve":
            force = args.get("force") is True
            decision = self.engine.resolve(incident, actor, now, text, force=force)
        elif name == "close":
            decision = self.engine.close(incident, actor, text, force=args.get("force") is True)
        elif name == "all_clear":
            decision = self.engine.all_clear(incident, actor, now, text)
        elif name == "eta":
            try:
                minutes = inputs.eta_minutes(args.get("minutes"))
            except ValueError as exc:
                return str(exc)
            eta = now + timedelta(minutes=minutes)
            decision = self.engine.expect_restore(incident, actor, eta, now, text)
        elif name == "help":
            decision = self.engine.help_requested(incident, args, text, now)
        else:
            return f"unknown command {name}"
        return decision.refused or decision

    def _known(self, actor: str) -> bool:
        """Staff actions name a person of the staff file (without one, any non-empty name)."""
        if not actor.strip():
            return False
        return actor == "alertd" or self.staff is None or actor in self.staff.people

    async def _failed(self, command_id: int, why: str, incident: Incident | None = None) -> None:
        """The command is marked failed with the reason; on its incident's timeline too
        when it broke inside the daemon (a refusal is the sender's answer alone)."""
        entries = [Entry("command_failed", f"command {command_id} failed: {why}")]
        decisions = [Decision(incident=incident, entries=entries)] if incident else []
        await self._save(decisions, self._clock.now(), db.Done(command=(command_id, "failed", why)))

    async def _save(
        self,
        decisions: list[Decision],
        now: datetime,
        done: db.Done,
        *,
        first: Callable[[Conn], None] | None = None,
        urgent: bool = False,
    ) -> None:
        """One transaction. A decision with something to send goes before bookkeeping and
        takes delivery along: its messages are written and claimed in the same commit,
        a durable one (what is claimed may go out at once). Decisions on events already
        stored, with nothing to send, need no fsync of their own (see `unsynced`).
        `first`: ingest's batch, written first in the same transaction."""
        store = self._writer.store
        assert store is not None
        sends = any(d.actions for d in decisions)
        fold = self.delivery.fold() if sends and self.delivery is not None else None
        durable = fold is not None or first is not None
        save = functools.partial(db.save, first=first) if durable else unsynced(db.save)
        try:
            new_timers, claimed = await self._writer.call(
                save,
                store.conn,
                decisions,
                now,
                done,
                fold.write if fold else None,
                urgent=urgent or sends,
            )
        except BaseException:
            self._stale = True  # what the decisions put in memory (incidents, timers) goes
            if fold is not None:
                fold.failed()
            raise
        if fold is not None:
            fold.done(claimed or [])
        for d in decisions:
            if d.incident is None:
                continue
            self._incidents.put(d.incident)
            if d.cancel_timers:
                self._timers = {
                    k: t
                    for k, t in self._timers.items()
                    if t.incident != d.incident.id or t.kind in LASTING_TIMERS
                }
        self._timers.update(new_timers)

    def incident(self, incident_id: int) -> Incident | None:
        return self._incidents.get(incident_id)


def _help_place(resident: dict[str, Any]) -> dict[str, str]:
    """Where a resident who asked for help lives, as a declared emergency's place."""
    return {
        "kind": "manual",
        **{k: str(resident.get(k, "")) for k in ("site", "building", "floor", "unit")},
    }
