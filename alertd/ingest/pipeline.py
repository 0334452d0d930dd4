"""The ingest pipeline: reports in, edge-triggered events committed in groups, then acks.

Life safety first: reports about fire, gas, leaks and power go to an urgent queue that
is committed before any routine telemetry and never dropped. Routine reports wait in a
bounded queue; when it is full they are acknowledged without being stored and counted
as `dropped` (the overflow rule). A commit holds at most `batch_max` routine reports,
so an urgent event waits for at most one such commit; routine reports may wait up to
`linger_ms` to share a commit, urgent ones never do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from alertd.aio import wait_event
from alertd.clock import Clock
from alertd.config import IngestConfig
from alertd.devices import Device
from alertd.events import LIFE_SAFETY, Event, Kind, Observation, State, severity_of
from alertd.ingest.edge import Change, EdgeDetector
from alertd.ingest.report import Receipt, Rejected, Report, Value
from alertd.ingest.supervision import Heartbeats
from alertd.store import Batch, DeadLetter, StateRow, Writer

log = logging.getLogger(__name__)


class Decider(Protocol):
    """Commits a batch with events together with the decisions on them (the incident
    service, alertd/incidents/service.py): one transaction from alarm to first send."""

    async def commit(self, batch: Batch, *, urgent: bool) -> None: ...


RAW_MAX = 4096
#: the values of a device that reported none (shared: read-only by its type)
NO_VALUES: Mapping[str, Value] = {}
LOG_ONCE_MAX = 10_000
#: life-safety events logged one line each per second, before a count stands for the rest
ALARM_LINES_PER_S = 20
#: routine rows (reports, devices' last-seen times) an urgent commit takes along at most,
#: about 0.5 ms of work: a whole batch of the tick's last-seen times made one alarm's
#: commit a second 2.5 ms longer at 500 alarms/s. Some still ride along, so that a steady
#: flow of alarms never starves routine work.
URGENT_CARRY = 100


@dataclass(slots=True)
class _Item:
    batch: Batch
    acks: list[Callable[[], None]] = field(default_factory=list)


class Ingest:
    def __init__(
        self,
        writer: Writer,
        devices: Iterable[Device],
        clock: Clock,
        config: IngestConfig,
        *,
        states: dict[tuple[str, Kind], bool] | None = None,
        last_seen: dict[str, datetime] | None = None,
        receipts: dict[str, str] | None = None,
        last_event_id: int = 0,
    ) -> None:
        devices = list(devices)
        self._writer = writer
        self._clock = clock
        self._config = config
        self._edge = EdgeDetector(states)
        self._devices = {d.device_id: d for d in devices}
        self._heartbeats = Heartbeats(devices, last_seen or {}, clock.now())
        self._receipts: dict[str, str] = dict(receipts or {})
        self._values: dict[str, Mapping[str, Value]] = {}
        #: devices heard since the last tick; their last_seen and values are saved then
        self._seen: dict[str, datetime] = {}
        self._next_id = last_event_id
        self._seq = 0
        self._urgent: deque[_Item] = deque()
        self._routine: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()  # something must not wait for the linger time
        self._idle = asyncio.Event()
        self._idle.set()
        self._logged: set[tuple[str, str]] = set()
        self._alarm_second, self._alarm_lines, self._alarms_unlogged = 0, 0, 0
        #: what happened since start: events, dead_letters, dropped, redelivered, commits
        self.counts: Counter[str] = Counter()
        #: why the last commit failed, while commits fail (health reads it)
        self.store_error = ""
        #: time spent in commits, for /metrics
        self.commit_seconds = 0.0
        #: called with each committed event (tests)
        self.listeners: list[Callable[[Event], None]] = []
        #: commits a batch with events together with the decisions on them (the daemon's
        #: incident service); without one, events are committed alone
        self.decider: Decider | None = None

    @classmethod
    async def open(
        cls, writer: Writer, devices: Iterable[Device], clock: Clock, config: IngestConfig
    ) -> Ingest:
        """Resume from the store: device states, last heartbeats, receipts, event ids."""
        store = writer.store or await writer.open()
        states, seen, receipts, last_id = await writer.call(
            lambda: (store.states(), store.last_seen(), store.receipts(), store.max_event_id())
        )
        return cls(
            writer,
            devices,
            clock,
            config,
            states=states,
            last_seen=seen,
            receipts=receipts,
            last_event_id=last_id,
        )

    # -- the way in (called on the event loop by sources) --------------------------------

    def submit(self, item: Report | Rejected) -> None:
        receipt = item.receipt
        if (
            receipt is not None
            and receipt.redelivered
            and self._receipts.get(receipt.key) == receipt.digest
        ):
            # applied before; acknowledge once whatever carried it is committed
            self.counts["redelivered"] += 1
            self._enqueue(_Item(Batch(), [receipt.ack]), urgent=False)
            return
        urgent = isinstance(item, Report) and self._is_urgent(item)
        if not urgent and len(self._routine) >= self._config.queue_limit:
            self._drop(receipt)
            return
        batch = Batch()
        batch.counters["reports" if isinstance(item, Report) else "rejected"] += 1
        if receipt is not None and receipt.key and _matters_twice(item):
            self._receipts[receipt.key] = receipt.digest
            batch.receipts[receipt.key] = receipt.digest
        if isinstance(item, Rejected):
            self._dead_letter(
                batch,
                item.source,
                item.reason,
                item.received_at,
                item.topic,
                item.device_id,
                item.payload,
                item.site,
            )
        else:
            self._apply(item, batch)
        self._enqueue(_Item(batch, [receipt.ack] if receipt else []), urgent=urgent)

    def tick(self) -> None:
        """Check heartbeats and hold times, save last-seen times; call once a second or so."""
        now = self._clock.now()
        self._count_alarms()
        # in commits of at most batch_max devices: an alarm waits for one of them at most
        heard, self._seen = list(self._seen.items()), {}
        for start in range(0, len(heard), self._carry):  # a routine commit takes several
            seen = Batch()
            for device_id, at in heard[start : start + self._carry]:
                seen.seen[device_id] = (at, self._values.get(device_id, NO_VALUES))
            self._enqueue(_Item(seen), urgent=False)
        for device in self._heartbeats.overdue(now):
            self.submit(
                Report(
                    source="supervision",
                    device=device,
                    observations=(
                        Observation(
                            Kind.SENSOR_OFFLINE,
                            True,
                            now,
                            detail=f"no message for {device.heartbeat_s:g} s",
                        ),
                    ),
                    received_at=now,
                    alive=False,
                )
            )
        due = self._edge.due(now)
        if due:
            batch = Batch()
            for change in due:
                held = self._devices.get(change.device_id)
                if held is not None:
                    self._record(batch, change, held, "hold", now, "")
            self._enqueue(_Item(batch), urgent=any(c.kind in LIFE_SAFETY for c in due))

    # -- deciding -----------------------------------------------------------------------

    def _is_urgent(self, report: Report) -> bool:
        return any(o.kind in LIFE_SAFETY for o in report.observations) or (
            any(k in LIFE_SAFETY for k in report.device.offline_means)
            and any(o.kind is Kind.SENSOR_OFFLINE for o in report.observations)
        )

    def _apply(self, report: Report, batch: Batch) -> None:
        device = report.device
        self._devices[device.device_id] = device
        now = report.received_at
        default_time = report.occurred_at or now
        observations = list(report.observations)
        if report.alive and not any(o.kind is Kind.SENSOR_OFFLINE for o in observations):
            observations.append(Observation(Kind.SENSOR_OFFLINE, False))
        changes: list[Change] = []
        for obs in observations:
            change = self._edge.observe(device.device_id, obs, obs.occurred_at or default_time, now)
            if change is not None:
                changes.append(change)
        for change in [c for c in changes if c.kind is Kind.SENSOR_OFFLINE]:
            for kind in device.offline_means:
                derived = self._edge.observe(
                    device.device_id,
                    Observation(kind, change.active, detail=change.detail or "device back online"),
                    change.occurred_at,
                    now,
                )
                if derived is not None:  # the cause first: it explains the offline alarm
                    changes.insert(changes.index(change), derived)
        raw = report.raw[:RAW_MAX]
        for change in changes:
            self._record(batch, change, device, report.source, now, raw, drill=report.drill)
        if report.alive:
            self._heartbeats.seen(device.device_id, now)
            if report.values:  # none kept for devices that report none (a dict each)
                # replaced, never changed in place: a tick hands it to the writer thread
                self._values[device.device_id] = {
                    **self._values.get(device.device_id, NO_VALUES),
                    **report.values,
                }
            self._seen[device.device_id] = now
        for problem in report.problems:
            self._dead_letter(
                batch,
                report.source,
                problem,
                now,
                report.topic,
                device.device_id,
                report.raw.encode(),
                device.location.site,
            )

    def _record(
        self,
        batch: Batch,
        change: Change,
        device: Device,
        source: str,
        now: datetime,
        raw: str,
        *,
        drill: bool = False,
    ) -> None:
        self._next_id += 1
        self._seq += 1
        state = State.ACTIVE if change.active else State.RESTORE
        event = Event(
            id=self._next_id,
            kind=change.kind,
            state=state,
            severity=severity_of(change.kind, state),
            device_id=device.device_id,
            location=device.location,
            occurred_at=change.occurred_at,
            received_at=now,
            source=source,
            raw=raw,
            detail=change.detail,
            tags=device.tags,
            drill=drill,
        )
        batch.events.append(event)
        batch.states.append(
            StateRow(
                device.device_id,
                change.kind,
                change.active,
                change.occurred_at,
                event.id,
                self._seq,
            )
        )

    def _dead_letter(
        self,
        batch: Batch,
        source: str,
        reason: str,
        at: datetime,
        topic: str,
        device_id: str,
        payload: bytes,
        site: str = "",
    ) -> None:
        known = self._devices.get(device_id)
        site = site or (known.location.site if known else "")
        batch.dead_letters.append(DeadLetter(at, source, reason, topic, device_id, payload, site))
        batch.counters["dead_letters"] += 1
        key = (topic, reason)
        if key not in self._logged and len(self._logged) < LOG_ONCE_MAX:
            self._logged.add(key)
            log.warning("dead letter from %s on %r: %s", source, topic, reason)

    def _drop(self, receipt: Receipt | None) -> None:
        self.counts["dropped"] += 1
        if self.counts["dropped"] == 1 or self.counts["dropped"] % 10_000 == 0:
            log.warning(
                "routine queue full (%d): %d routine messages dropped so far; life-safety "
                "messages are never dropped",
                self._config.queue_limit,
                self.counts["dropped"],
            )
        if receipt is not None:
            receipt.ack()

    # -- committing ---------------------------------------------------------------------

    def replace_devices(self, devices: Iterable[Device]) -> None:
        """A reloaded devices file (SIGHUP)."""
        devices = list(devices)
        self._devices.update({d.device_id: d for d in devices})
        self._heartbeats.replace(devices, self._clock.now())

    def depth(self) -> int:
        """Reports waiting for a commit."""
        return len(self._urgent) + len(self._routine)

    def _enqueue(self, item: _Item, *, urgent: bool) -> None:
        (self._urgent if urgent else self._routine).append(item)
        self._idle.clear()
        self._wake.set()
        if urgent or len(self._routine) >= self._config.batch_max:
            self._full.set()

    def _take(self) -> _Item:
        """Every urgent item, and routine ones up to batch_max reports or devices' last-seen
        rows (URGENT_CARRY with urgent ones): a routine commit stays short, so an alarm
        queued behind it waits little, and an alarm's commit carries little."""
        out = _Item(Batch())
        limit = self._carry if self._urgent else self._config.batch_max
        while self._urgent:
            self._absorb(out, self._urgent.popleft())
        rows = 0
        while self._routine and rows < limit:
            item = self._routine.popleft()
            rows += max(1, len(item.batch.seen))
            self._absorb(out, item)
        return out

    @property
    def _carry(self) -> int:
        """Routine rows an urgent commit takes along, and the tick's last-seen items."""
        return min(self._config.batch_max, URGENT_CARRY)

    @staticmethod
    def _absorb(out: _Item, item: _Item) -> None:
        out.batch.absorb(item.batch)
        out.acks.extend(item.acks)

    async def run(self) -> None:
        """Commit whatever is queued, urgent first, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._urgent or self._routine:
                await self._linger()
                item = self._take()
                await self._commit(item.batch)
                for ack in item.acks:
                    ack()
                for event in item.batch.events:
                    for listener in self.listeners:
                        listener(event)
            self._idle.set()

    async def _linger(self) -> None:
        """Let routine reports gather for a few ms so that they share a commit (each commit
        has a fixed cost); anything urgent, or a full batch, ends the wait at once."""
        if self._urgent or len(self._routine) >= self._config.batch_max:
            self._full.clear()
            return
        self._full.clear()
        await wait_event(self._full, self._config.linger_ms / 1000)

    async def _commit(self, batch: Batch) -> None:
        delay = 0.1
        while True:
            started = time.perf_counter()
            urgent = any(e.kind in LIFE_SAFETY for e in batch.events)
            try:
                if batch.events and self.decider is not None:
                    await self.decider.commit(batch, urgent=urgent)
                else:
                    await self._writer.commit(batch, urgent=urgent)
            except Exception as exc:
                if not self.store_error:  # loudly once; health says it for as long as it lasts
                    log.error(
                        "the store cannot be written (%s: %s): nothing is acknowledged, every "
                        "message waits and is retried",
                        type(exc).__name__,
                        exc,
                    )
                self.store_error = f"{type(exc).__name__}: {exc}"
                self.counts["commit_failures"] += 1
                await asyncio.sleep(delay)  # a backoff while the disk is full
                delay = min(delay * 2, 10.0)
                continue
            if self.store_error:
                log.warning("the store is writable again after: %s", self.store_error)
                self.store_error = ""
            self.commit_seconds += time.perf_counter() - started
            self.counts["commits"] += 1
            self.counts.update(batch.counters)
            self.counts["events"] += len(batch.events)
            self._log_alarms(batch.events)
            return

    def _count_alarms(self) -> None:
        """A new second: say how many life-safety events the last one left unlogged."""
        second = int(self._clock.now().timestamp())
        if second == self._alarm_second:
            return
        if self._alarms_unlogged:
            log.warning(
                "... and %d more life-safety events in that second (`alertd events`)",
                self._alarms_unlogged,
            )
        self._alarm_second, self._alarm_lines, self._alarms_unlogged = second, 0, 0

    def _log_alarms(self, events: list[Event]) -> None:
        """A line for each life-safety event, up to ALARM_LINES_PER_S a second; beyond
        that, one line a second with how many more (all are in the store and the
        console): in a storm of thousands a second the lines were 3-6 % of the work,
        and nobody reads them one by one."""
        self._count_alarms()
        for event in events:
            if event.state is not State.ACTIVE or event.kind not in LIFE_SAFETY:
                continue
            if self._alarm_lines >= ALARM_LINES_PER_S:
                self._alarms_unlogged += 1
                continue
            self._alarm_lines += 1
            log.warning(
                "%s at %s (device %s, event %d)",
                event.kind,
                _where(event),
                event.device_id,
                event.id,
            )

    async def drained(self) -> None:
        """Wait until everything submitted so far is committed and acknowledged."""
        await self._idle.wait()


def _matters_twice(item: Report | Rejected) -> bool:
    """Whether applying this message again after a crash could change anything.

    Pure telemetry (values only) cannot, so it needs no receipt: that saves a write per
    message for most traffic. A report of any condition can (a repeated "wet" arriving
    after a "dry" would be a new leak), and so can a rejection (a second dead letter).
    """
    return isinstance(item, Rejected) or bool(item.observations or item.problems)


def _where(event: Event) -> str:
    loc = event.location
    parts = [
        loc.site,
        loc.building and f"building {loc.building}",
        loc.floor and f"floor {loc.floor}",
        loc.unit and f"unit {loc.unit}",
        loc.zone,
    ]
    return ", ".join(p for p in parts if p) or "unknown location"
