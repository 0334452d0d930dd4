"""The dispatcher: expands outbox actions into messages, sends due messages through the
sinks with per-channel concurrency and rate limits, and is the one retry stage
(exponential backoff with jitter, Retry-After honoured). Sinks never retry."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta

from alertd.aio import wait_event, within
from alertd.clock import Clock
from alertd.config import DeliveryConfig
from alertd.directory.staff import Staff
from alertd.outbox.expand import expand_pending
from alertd.outbox.retry import next_attempt
from alertd.outbox.sink import Message, Result, Sink
from alertd.store import Writer
from alertd.store import messages as db

log = logging.getLogger(__name__)


class RateLimit:
    """At most `rate` starts per second, spaced evenly."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)  # pacing, not synchronisation


class Dispatcher:
    def __init__(
        self,
        writer: Writer,
        sinks: Mapping[str, Sink],
        clock: Clock,
        config: DeliveryConfig,
        staff: Staff | None,
        unit_format: str | None = None,
    ) -> None:
        self._writer = writer
        self._sinks = dict(sinks)
        self._clock = clock
        self._config = config
        self.staff = staff
        self._unit_format = unit_format
        self._limits = {"sms": RateLimit(config.sms_per_s), "call": RateLimit(config.calls_per_s)}
        self._slots = {ch: asyncio.Semaphore(config.concurrency) for ch in self._sinks}
        self.wake = asyncio.Event()
        self._stopping = False
        self._stepping = asyncio.Lock()
        #: sent, retried, failed, expired, inflight_at_start
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        store = self._writer.store
        assert store is not None
        inflight: int = await self._writer.call(db.recover_inflight, store.conn)
        if inflight:
            log.warning(
                "%d message(s) were in flight when alertd stopped; they are sent again "
                "and may reach their recipients twice",
                inflight,
            )
        self.counts["inflight_at_start"] += inflight

    async def run(self) -> None:
        """Until stop(): a clean stop ends between batches, so that nothing is left marked
        `sending` (which the next start would count as possibly sent twice)."""
        while not self._stopping:
            await self.step()
            self.wake.clear()
            await wait_event(self.wake, self._config.poll_s)

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def step(self) -> int:
        """Expand, then send everything due now; returns how many were attempted. One
        step at a time: a second caller waits for the step in progress, then runs its own."""
        async with self._stepping:
            return await self._step()

    async def _step(self) -> int:
        store = self._writer.store
        assert store is not None
        expire = timedelta(seconds=self._config.expire_s)
        await self._writer.call(
            expand_pending, store.conn, self.staff, self._clock.now(), expire, self._unit_format
        )
        attempted = 0
        while True:
            batch: list[Message] = await self._writer.call(
                db.claim, store.conn, self._clock.now(), self._config.concurrency
            )
            if not batch:
                return attempted
            outcomes = await asyncio.gather(*(self._send(m) for m in batch))
            await self._writer.call(db.record, store.conn, list(outcomes), self._clock.now())
            attempted += len(batch)
            if attempted % 1000 < len(batch):  # a long fan-out shows its progress
                log.info(
                    "delivery: %d sent this round; since start %s", attempted, dict(self.counts)
                )
            if self._stopping:
                return attempted

    async def _send(self, message: Message) -> db.Outcome:
        sink = self._sinks.get(message.channel) or self._sinks.get("console")
        if sink is None:
            return db.Outcome(message, Result("permanent", f"no sink for {message.channel}"))
        async with self._slots.setdefault(
            message.channel, asyncio.Semaphore(self._config.concurrency)
        ):
            limit = self._limits.get(message.channel)
            if limit is not None:
                await limit.wait()
            try:
                result = await within(self._config.send_timeout_s, sink.send(message))
            except TimeoutError:
                result = Result("retryable", f"no answer within {self._config.send_timeout_s} s")
            except Exception as exc:
                log.exception("sink %s failed on message %d", message.channel, message.id)
                result = Result("retryable", f"sink error: {exc}")
        self.counts[result.outcome] += 1
        retry_at = None
        if result.outcome == "retryable":
            retry_at = next_attempt(message.attempts, self._clock.now(), result.retry_after_s)
        failed = result.outcome == "permanent" or (result.outcome == "retryable" and not retry_at)
        return db.Outcome(
            message,
            result,
            retry_at,
            fallback_call=failed and message.channel == "sms" and self._is_staff(message),
        )

    def _is_staff(self, message: Message) -> bool:
        return self.staff is not None and any(
            p.phone == message.recipient for p in self.staff.people.values()
        )

    async def close(self) -> None:
        for sink in set(self._sinks.values()):
            await sink.close()
