"""The dispatcher: expands outbox actions into messages and sends due messages, each
channel on its own lane (alertd/outbox/lanes.py), with continuous flow: a free slot takes
the next due message of its lane, most urgent first; there is no batch barrier, so a call
waiting for its rate limit never holds an SMS, and one incident's fan-out never holds
another incident's staff alert. It is the one retry stage (exponential backoff with
jitter, Retry-After honoured); sinks never retry.

Crash safety as before: a message is marked `sending` in a commit before its request goes
out, and claims reach at most one lookahead ahead, so a crash repeats at most the
messages in flight (counted and logged at the next start)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alertd.aio import wait_event, within
from alertd.clock import Clock
from alertd.config import DeliveryConfig
from alertd.directory.staff import Staff
from alertd.links import Links
from alertd.outbox.expand import Local
from alertd.outbox.expand import expand as expand_actions
from alertd.outbox.lanes import Lane, LaneState
from alertd.outbox.retry import next_attempt
from alertd.outbox.sink import Message, Result, Sink
from alertd.outbox.totals import Totals
from alertd.store import Conn, Writer
from alertd.store import messages as db
from alertd.store.sql import transaction

log = logging.getLogger(__name__)

#: how often pending messages past their expiry are marked expired (none is sent meanwhile)
EXPIRE_EVERY = timedelta(seconds=1)
#: outcomes wait this long for others to share their commit (or to ride along with a
#: decision's), unless their lane is short of room: a commit an outcome kept the writer
#: busy about 1 ms, as long as an alarm's own commit
RECORD_LINGER_S = 0.02


@dataclass(eq=False)
class Fold:
    """One round of delivery written inside another commit: see `Dispatcher.fold`."""

    dispatcher: Dispatcher
    expand: bool
    #: claim on every lane with room, not only those known to have due messages
    full: bool
    #: lane -> (any, urgent staff alerts beyond that), reserved on the lanes
    wants: dict[str, tuple[int, int]]
    outcomes: list[tuple[db.Outcome, asyncio.Future[None]]]
    changes: dict[str, LaneState]
    #: lanes its outcomes put a message back on (set by `write`)
    back: set[str] = field(default_factory=set)
    #: (channel, final status) of early receipts applied with its outcomes
    receipts: list[tuple[str, str]] = field(default_factory=list)

    def write(self, conn: Conn) -> list[Message]:
        return self.dispatcher._write(conn, self)

    def done(self, claimed: list[Message]) -> None:
        self.dispatcher._done(self, claimed)

    def failed(self) -> None:
        self.dispatcher._failed(self)


class Dispatcher:
    def __init__(
        self,
        writer: Writer,
        sinks: Mapping[str, Sink],
        clock: Clock,
        config: DeliveryConfig,
        staff: Staff | None,
        sites: Mapping[str, Local] | None = None,
    ) -> None:
        self._writer = writer
        self.sinks = dict(sinks)
        self._clock = clock
        self._config = config
        self.staff = staff
        #: links to each incident's phone page in staff texts (none through a provider of
        #: registered templates: its texts carry no free text)
        self.links: Links | None = None
        #: each site's unit numbering and fallback role (a site not listed: the defaults)
        self.sites = dict(sites or {})
        self._local = Local(fallback_role=config.fallback_role)
        rates = {"sms": config.sms_per_s, "call": config.calls_per_s}
        self.lanes = {
            channel: Lane(channel, config.concurrency, rates.get(channel), clock, config.probe_s)
            for channel in self.sinks
            if channel != "console"
        }
        self.wake = asyncio.Event()
        #: claims read each SMS's template values (a provider fills registered templates)
        self._values = bool(getattr(self.sinks.get("sms"), "templated", False))
        self._expand = True
        #: lanes that may have due messages no claim has taken yet. Kept by the
        #: transactions that change it, on the writer thread (an expansion, an outcome
        #: putting a message back, a claim that took fewer than it asked, which leaves
        #: none), and set to every lane when one of them fails (rolled back), so
        #: that a freed slot starts a round only when its lane has work waiting: at a
        #: steady load most messages are taken by their decision's own commit, and a
        #: round for every freed slot was a writer job, and a commit, that found nothing.
        #: The rounds every `poll_s` claim on every lane (retries falling due).
        self._due_lanes: set[str] = set(self.lanes)
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[tuple[db.Outcome, asyncio.Future[None]]] = []
        self._recorded = asyncio.Event()
        self._record_now = asyncio.Event()
        self._recorder_task: asyncio.Task[None] | None = None
        self._lane_changes: dict[str, LaneState] = {}
        self._expired_at: datetime | None = None
        #: sent, retryable, permanent, throttled, unavailable, inflight_at_start
        self.counts: Counter[str] = Counter()
        self.totals = Totals()

    async def start(self) -> None:
        store = self._writer.store
        assert store is not None
        inflight: int = await self._writer.call(db.recover_inflight, store.conn, self._clock.now())
        if inflight:
            log.warning(
                "%d message(s) were in flight when alertd stopped; they are sent again "
                "and may reach their recipients twice",
                inflight,
            )
        self.counts["inflight_at_start"] += inflight

    def outbox_changed(self) -> None:
        """New outbox actions were committed: expand them now."""
        self._expand = True
        self.wake.set()

    async def run(self) -> None:
        """Until stop(); then what is in flight finishes and is recorded, so that nothing
        is left marked `sending` (which the next start would count as possibly twice)."""
        failing = False
        loop = asyncio.get_running_loop()
        full, full_at = True, 0.0
        try:
            while not self._stopping:
                self.wake.clear()  # before the round: a wake-up during it is kept
                if full:
                    full_at = loop.time()
                try:
                    await self._round(full=full)
                except Exception as exc:  # the store cannot be written: hold, then retry
                    if not failing:
                        log.error("delivery holds: the store cannot be written (%s)", exc)
                    failing = True
                    await asyncio.sleep(self._config.poll_s)
                    continue
                if failing:
                    log.warning("delivery goes on: the store can be written again")
                    failing = False
                woke = await wait_event(self.wake, self._sleep())
                # every lane at least every poll_s, however often wake-ups come
                full = not woke or loop.time() - full_at >= self._config.poll_s
        finally:
            await self._drain()

    async def _recorder(self) -> None:
        """Outcomes are bookkeeping: written on their own task, so that the sending loop
        never waits behind them (or behind what the writer has queued before them)."""
        while True:
            await self._recorded.wait()
            await wait_event(self._record_now, RECORD_LINGER_S)
            self._recorded.clear()
            self._record_now.clear()
            try:
                await self._record()
            except Exception:  # the outcomes were put back: try again after a pause
                await asyncio.sleep(self._config.poll_s)
                self._recorded.set()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def step(self) -> int:
        """Send everything due now and wait until it is sent and recorded (tests, and
        whoever needs the outbox settled); returns how many sends were started."""
        self._expand = True
        started = 0
        while True:
            started += await self._round(full=True)
            if self._tasks:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            if not await self._claimable_due():
                await self._stop_recorder()
                return started

    async def _due(self) -> bool:
        store = self._writer.store
        assert store is not None
        channels = [c for c, lane in self.lanes.items() if not lane.stopped and not lane.paused()]
        count: int = await self._writer.call(db.due_count, store.conn, self._clock.now(), channels)
        return count > 0

    async def _claimable_due(self) -> bool:
        return any(any(lane.claimable()) for lane in self.lanes.values()) and await self._due()

    def _sleep(self) -> float:
        waits = [w for lane in self.lanes.values() if (w := lane.ready_in()) is not None]
        return min([self._config.poll_s, *waits])

    async def _round(self, *, full: bool) -> int:
        """Expand new actions, then give the lanes with room the due messages they can
        start now: every lane when `full`, else those that may have some (`_due_lanes`)."""
        store = self._writer.store
        assert store is not None
        if self._recorder_task is None or self._recorder_task.done():
            self._recorder_task = asyncio.create_task(self._recorder(), name="delivery records")
        expand, self._expand = self._expand, False

        def wanted(lane: Lane) -> bool:
            # a freed slot means room for anything; the urgent slots alone are worth a
            # round only when looking at every lane (an urgent message is claimed by the
            # commit that expands it, or is a retry that falls due for a full round)
            n, urgent = lane.claimable()
            return bool(n or (full and urgent))

        if not expand and not any(
            wanted(lane) for c, lane in self.lanes.items() if full or c in self._due_lanes
        ):
            return 0
        return len(await self._commit(self.fold(expand=expand, full=full), urgent=True))

    async def _commit(self, fold: Fold, *, urgent: bool) -> list[Message]:
        """`fold` in a transaction of its own."""
        store = self._writer.store
        assert store is not None

        def in_own_transaction(conn: Conn) -> list[Message]:
            with transaction(conn):
                return fold.write(conn)

        try:
            claimed: list[Message] = await self._writer.call(
                in_own_transaction, store.conn, urgent=urgent
            )
        except BaseException:
            fold.failed()
            raise
        fold.done(claimed)
        return claimed

    def fold(self, *, expand: bool = True, full: bool = False, room: bool = True) -> Fold:
        """A round of delivery to fold into another commit (an incident decision that put
        actions in the outbox): its actions become messages and lanes with room take them
        in the same transaction, so a fire's first texts wait for one commit, not three.
        The lanes' room is reserved now, so two folds never start more than a lane's
        concurrency. Outcomes so far ride along, and their slots take the next messages
        in the same transaction (which leaves no more rows `sending` than the concurrency):
        a slot waits for one commit between two sends, not two. Without `room` it claims
        only into those slots, holding none that is free now. The caller calls `write`
        inside its transaction on the writer thread (which must then be a durable commit:
        what is taken is marked `sending`), then `done` or, if the transaction failed,
        `failed`."""
        pending, self._outcomes = self._outcomes, []  # bookkeeping rides along
        freeing = Counter(o.message.channel for o, _ in pending)
        wants = {c: lane.claimable(freeing[c]) for c, lane in self.lanes.items()}
        if not room:
            wants = {c: (min(n, freeing[c]), 0) for c, (n, _) in wants.items()}
        wants = {c: n for c, n in wants.items() if n[0] or n[1]}
        for channel, (n, extra) in wants.items():
            self.lanes[channel].reserve(n + extra)
        changes, self._lane_changes = self._lane_changes, {}
        return Fold(self, expand, full, wants, pending, changes)

    def _write(self, conn: Conn, fold: Fold) -> list[Message]:
        """On the writer thread, inside the caller's transaction."""
        now = self._clock.now()
        if self._expired_at is None or now - self._expired_at >= EXPIRE_EVERY:
            db.expire(conn, now)
            self._expired_at = now
        if fold.outcomes or fold.changes:
            lanes = [(c.channel, c.state, c.reason) for c in fold.changes.values()]
            fold.receipts = []
            outcomes = [o for o, _ in fold.outcomes]
            fold.back = db.write_outcomes(conn, outcomes, now, lanes, fold.receipts)
            self._due_lanes.update(fold.back)
        if fold.expand:
            expire = timedelta(seconds=self._config.expire_s)
            self._due_lanes.update(
                expand_actions(
                    conn,
                    self.staff,
                    now,
                    expire,
                    self.sites,
                    self._local,
                    None if self._values else self.links,
                )
            )
        wants = {c: n for c, n in fold.wants.items() if fold.full or c in self._due_lanes}
        if not wants:
            return []
        taken = db.take_due(conn, now, wants, self._config.starve_s, self._values)
        counts = Counter(m.channel for m in taken)
        for channel, (n, _) in wants.items():
            if counts[channel] < n:  # it took every due message of this lane
                self._due_lanes.discard(channel)
            else:
                self._due_lanes.add(channel)
        return taken

    def _unreserve(self, fold: Fold) -> None:
        for channel, (n, extra) in fold.wants.items():
            self.lanes[channel].unreserve(n + extra)

    def _done(self, fold: Fold, claimed: list[Message]) -> None:
        self._unreserve(fold)
        self._settle(fold.outcomes)
        for outcome, _ in fold.outcomes:  # committed: counted once
            r = outcome.result
            gave_up = r.outcome == "permanent" or (
                r.outcome == "retryable" and outcome.retry_at is None
            )
            if r.outcome == "sent" or gave_up:
                self.totals.sends[(outcome.message.channel, "failed" if gave_up else "sent")] += 1
        self.totals.sends.update(fold.receipts)
        for message in claimed:
            lane = self.lanes[message.channel]
            lane.take()
            task = asyncio.create_task(self._deliver(lane, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if (fold.expand and not claimed) or fold.back:
            self.wake.set()  # what was expanded or put back waits for a lane: a round takes it

    def _failed(self, fold: Fold) -> None:
        self._unreserve(fold)
        self._due_lanes.update(self.lanes)  # what it noted of the lanes was rolled back
        self._requeue(fold.outcomes, fold.changes)
        if fold.expand:
            self.outbox_changed()

    async def _deliver(self, lane: Lane, message: Message) -> None:
        """Send one message; its slot is free again once the outcome is committed, so
        that at most `concurrency` rows are ever left `sending` by a crash."""
        try:
            if await lane.wait_turn(message.priority):
                outcome = self._outcome(lane, message, await self._send(message))
            else:  # the lane paused or stopped while this one waited: back, unsent
                self.counts["held"] += 1
                result = Result("unavailable" if lane.stopped else "throttled", lane.hold_reason())
                outcome = db.Outcome(message, result, lane.paused_until or self._clock.now())
            written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._outcomes.append((outcome, written))
            self._recorded.set()
            if lane.crowded():  # its slots free up once recorded
                self._record_now.set()
            await written
        finally:
            lane.release()
            if lane.channel in self._due_lanes:
                self.wake.set()

    async def _send(self, message: Message) -> Result:
        sink = self.sinks.get(message.channel) or self.sinks.get("console")
        if sink is None:
            return Result("permanent", f"no sink for {message.channel}")
        try:
            result = await within(self._config.send_timeout_s, sink.send(message))
        except TimeoutError:
            result = Result("retryable", f"no answer within {self._config.send_timeout_s} s")
        except Exception as exc:
            log.exception("sink %s failed on message %d", message.channel, message.id)
            result = Result("retryable", f"sink error: {exc}")
        self.counts[result.outcome] += 1
        return result

    def _outcome(self, lane: Lane, message: Message, result: Result) -> db.Outcome:
        now = self._clock.now()
        before = lane.state()
        retry_at = None
        if result.outcome == "sent":
            lane.succeeded()
        elif result.outcome == "throttled":
            retry_at = lane.throttle(result.retry_after_s)
        elif result.outcome == "unavailable":
            lane.stop(result.reason)
            retry_at = now
        elif result.outcome == "retryable":
            retry_at = next_attempt(message.attempts, now, result.retry_after_s)
        after = lane.state()
        if (after.state, after.reason) != (before.state, before.reason):
            self._lane_changes[lane.channel] = after
        failed = result.outcome == "permanent" or (result.outcome == "retryable" and not retry_at)
        return db.Outcome(
            message,
            result,
            retry_at,
            fallback_call=failed and message.channel == "sms" and self._is_staff(message),
        )

    async def _record(self) -> None:
        """Every outcome so far, and lane changes, in one commit of their own. It claims
        only into the slots it frees: waiting behind urgent work, it holds no free room."""
        if not self._outcomes and not self._lane_changes:
            return
        await self._commit(self.fold(expand=False, room=False), urgent=False)

    def _requeue(
        self,
        pending: list[tuple[db.Outcome, asyncio.Future[None]]],
        changes: dict[str, LaneState],
    ) -> None:
        """A write failed: its outcomes and lane changes wait for the next one, in order.
        Their senders keep their slots meanwhile, so a store that cannot be written holds
        delivery back instead of dropping what was sent."""
        self._outcomes[:0] = pending
        self._lane_changes = {**changes, **self._lane_changes}

    @staticmethod
    def _settle(pending: list[tuple[db.Outcome, asyncio.Future[None]]]) -> None:
        """Tell the senders their outcomes are written: their slots free up."""
        for _, written in pending:
            if not written.done():
                written.set_result(None)

    async def _drain(self) -> None:
        """What is in flight finishes (bounded) and everything is recorded."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._config.send_timeout_s + 1)
        try:
            await self._stop_recorder()
        finally:  # what could not be recorded stays `sending`: the next start sends it again
            for task in self._tasks:
                task.cancel()

    async def _stop_recorder(self) -> None:
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            await asyncio.gather(self._recorder_task, return_exceptions=True)
            self._recorder_task = None
        await self._record()

    def lane_states(self) -> list[LaneState]:
        return [lane.state() for lane in self.lanes.values()]

    def _is_staff(self, message: Message) -> bool:
        return self.staff is not None and any(
            p.phone == message.recipient for p in self.staff.people.values()
        )

    async def close(self) -> None:
        for sink in set(self.sinks.values()):
            await sink.close()
