"""A delivery lane: one channel's sends (SMS, call, PA, webhook, e-mail), with its own
concurrency and rate, so that nothing waiting for one channel's limit holds another.

A lane paces its starts at most `rate` a second (the loop's monotonic time), most urgent
first: a staff alert passes the residents' texts waiting for their turn. No one-second
window ever holds more than `rate` starts: a late wake-up is made up on the lane's grid,
never in a burst beyond the rate (a provider that allows 200/s answers 429 to the 201st).
It claims only a lookahead's worth beyond what it can start, so a message is not marked
`sending` long before it goes. A 429 pauses it for the provider's Retry-After; it goes on
at half the refused rate and climbs back to just below it, never to the rate that was
refused (which only trips the limit again), and tries a step higher after a quiet
minute. It stops when the provider refuses the account (bad credentials): messages wait,
one probe goes out every `probe_s`, and the lane starts again by itself once the probe
gets through. Pauses and probes are timers, on the injected clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from alertd.clock import Clock

log = logging.getLogger(__name__)

#: how much work a paced lane keeps waiting for its turn (and claims ahead)
LOOKAHEAD_S = 0.05
#: after a 429 the rate halves; each success gives back this share of the full rate
RECOVERY = 0.02
#: ... up to this share of the rate that was refused
BELOW_REFUSED = 0.95
#: after this long without a 429 the lane tries a step higher (this share of its rate)
QUIET_S = 60.0
QUIET_STEP = 0.05
#: the window is kept this much longer than a second: requests started `rate` in a second
#: reach the provider with the jitter of a busy event loop (tens of ms under a telemetry
#: storm), and must not count one too many in its window
WINDOW_S = 1.04
#: a lane starting from idle sends its first `concurrency` requests on new connections,
#: which reach the provider later than the ones after them (connecting, the SDK's first
#: call): they bunch the first second there. They count in the window this much later
COLD_S = 0.06
#: a lane with no configured rate that was throttled starts again at this rate
THROTTLED_RATE = 10.0
#: slots beyond the concurrency that only staff alerts of life-safety incidents may use
URGENT_SLOTS = 2


@dataclass
class LaneState:
    channel: str
    state: str  # ok | paused | stopped
    reason: str


class Lane:
    def __init__(
        self,
        channel: str,
        concurrency: int,
        rate: float | None,
        clock: Clock,
        probe_s: float = 60.0,
    ) -> None:
        self.channel = channel
        self.concurrency = concurrency
        self.nominal = rate
        self.rate = rate
        #: the highest rate the lane climbs back to after a 429 (below the refused one)
        self.ceiling = rate
        self._throttled_at: datetime | None = None
        #: the loop times of the last starts, for the one-second window
        self._starts: deque[float] = deque()
        #: starts still to go out on connections a lane opens afresh after idling
        self._cold = 0
        self.probe_s = probe_s
        self.busy = 0
        self._reserved = 0
        self._clock = clock
        self._next_start = 0.0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._pacer: asyncio.Task[None] | None = None
        self.paused_until: datetime | None = None
        self.stopped = ""
        self._probe_at: datetime | None = None
        self._throttles = 0

    @staticmethod
    def _mono() -> float:
        return asyncio.get_running_loop().time()

    def paused(self) -> bool:
        return self.paused_until is not None and self._clock.now() < self.paused_until

    def _probe_due(self) -> bool:
        return self._probe_at is None or self._clock.now() >= self._probe_at

    # -- what the dispatcher asks -----------------------------------------------------

    def claimable(self, freeing: int = 0) -> tuple[int, int]:
        """How many messages this lane can start within the lookahead, and how many staff
        alerts of life-safety incidents it can take besides: they have slots of their own,
        so a fan-out filling the concurrency never holds them, and go first at the rate.
        `freeing`: slots whose outcomes the same transaction records (they are free once
        it commits, and no more rows are left `sending` than the concurrency)."""
        if self.paused():
            return 0, 0
        busy = self.busy - freeing
        if self.stopped:
            return (1 if self._probe_due() and busy == 0 else 0), 0
        urgent = max(0, min(URGENT_SLOTS, self.concurrency + URGENT_SLOTS - busy))
        return self._claimable(busy), urgent

    def _claimable(self, busy: int) -> int:
        free = self.concurrency - busy
        if free <= 0:
            return 0
        n = free
        if self.rate is not None:  # keep only a lookahead's worth waiting for their turn
            n = min(free, max(0, int(self.rate * LOOKAHEAD_S) + 1 - len(self._waiting)))
        # a busy lane claims in small batches, not one transaction per freed slot
        batch = max(1, min(self.concurrency // 4, int((self.rate or 1e9) * LOOKAHEAD_S)))
        return n if n >= batch or busy == 0 else 0

    def ready_in(self) -> float | None:
        """Seconds until this lane can take work again, when something holds it."""
        now = self._clock.now()
        if self.stopped and self._probe_at is not None:
            return max(0.0, (self._probe_at - now).total_seconds())
        if self.paused_until is not None and now < self.paused_until:
            return (self.paused_until - now).total_seconds()
        return None

    def reserve(self, slots: int) -> None:
        """Hold slots for a claim being written, so that another claim meanwhile sees
        them taken; `unreserve` them once it is written, and `take` one for each message
        it took."""
        self.busy += slots
        self._reserved += slots

    def unreserve(self, slots: int) -> None:
        self.busy -= slots
        self._reserved -= slots

    def crowded(self) -> bool:
        """More than half the slots are sending (reservations aside)."""
        return self.busy - self._reserved > self.concurrency // 2

    def take(self) -> None:
        """A slot for one message."""
        self.busy += 1
        if self.stopped:
            self._probe_at = self._clock.now() + timedelta(seconds=self.probe_s)

    async def wait_turn(self, priority: int) -> bool:
        """Wait for this message's turn at the lane's rate, most urgent first (a staff
        alert passes the residents' texts waiting here). False when the lane paused or
        stopped meanwhile: the message goes back unsent."""
        if self.rate is not None:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._seq), turn))
            if self._pacer is None or self._pacer.done():
                self._pacer = asyncio.create_task(self._pace())
            await turn
        return not self.paused() and (not self.stopped or self.busy == 1)

    async def _pace(self) -> None:
        while self._waiting:
            now = self._mono()
            delay = max(self._next_start - now, self._window_wait(now))
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: this is the rate limit
                continue  # the rate may have changed meanwhile (a 429)
            _, _, turn = heapq.heappop(self._waiting)
            if turn.done():
                continue
            turn.set_result(None)
            if not self._starts:  # idle for a window: its connections are new
                self._cold = self.concurrency
            self._starts.append(now + (COLD_S if self._cold else 0.0))
            self._cold = max(0, self._cold - 1)
            # on the lane's own grid: a sleep's overshoot is made up, not added up (the
            # window keeps that from becoming a burst); a lane idle for longer than the
            # lookahead starts afresh
            base = self._next_start if self._next_start > now - LOOKAHEAD_S else now
            self._next_start = base + 1.0 / (self.rate or 1e9)

    def _window_wait(self, now: float) -> float:
        """Seconds until one more start keeps every window of `WINDOW_S` within `rate`."""
        most = max(1, int(self.rate or 1e9))
        starts = self._starts
        while len(starts) > most or (starts and starts[0] <= now - WINDOW_S):
            starts.popleft()
        return starts[0] + WINDOW_S - now if len(starts) >= most else 0.0

    def release(self) -> None:
        """A message's slot is free."""
        self.busy -= 1

    def hold_reason(self) -> str:
        return self.stopped or "the provider asked to slow down; waiting for its Retry-After"

    # -- what the provider said -------------------------------------------------------

    def succeeded(self) -> None:
        if self.stopped:
            log.warning("delivery: the %s lane works again", self.channel)
            self.stopped = ""
            self._probe_at = None
        self._throttles = 0
        if self.rate is None or self._throttled_at is None:
            return
        full = self.nominal or THROTTLED_RATE * 10
        ceiling = self.ceiling or full
        now = self._clock.now()
        if (now - self._throttled_at).total_seconds() >= QUIET_S and ceiling < full:
            ceiling = min(full, ceiling + full * QUIET_STEP)  # a quiet minute: a step up
            self._throttled_at = now
        self.ceiling = ceiling
        self.rate = min(ceiling, self.rate + full * RECOVERY)
        if self.nominal is None and self.rate >= full:
            self.rate = None  # as fast as the concurrency allows, as configured
            self._throttled_at = None

    def throttle(self, retry_after_s: float | None) -> datetime:
        """The provider said "too many": no start until Retry-After (or a backoff), then
        half the rate, climbing back. Returns when the pause ends."""
        already = self.paused()  # the other answers to requests that were in flight
        if not already:
            self._throttles += 1
            refused = self.rate or THROTTLED_RATE * 2
            if self.nominal is not None:  # unpaced before, the refused rate is unknown
                self.ceiling = max(0.5, min(self.ceiling or refused, refused) * BELOW_REFUSED)
            self.rate = max(0.5, refused / 2)
            self._throttled_at = self._clock.now()
        pause = retry_after_s if retry_after_s is not None else min(30.0, 2.0**self._throttles)
        until = self._clock.now() + timedelta(seconds=pause)
        self.paused_until = max(self.paused_until or until, until)
        return self.paused_until

    def stop(self, reason: str) -> bool:
        """The provider refused the account: nothing more until a probe gets through.
        True the first time (said loudly once)."""
        first = not self.stopped
        if first:
            log.error(
                "delivery: the %s lane stopped: %s; messages wait and go out once it works "
                "(one try every %g s)",
                self.channel,
                reason,
                self.probe_s,
            )
        self.stopped = reason
        self._probe_at = self._clock.now() + timedelta(seconds=self.probe_s)
        return first

    def state(self) -> LaneState:
        if self.stopped:
            return LaneState(self.channel, "stopped", self.stopped)
        if self.paused():
            return LaneState(self.channel, "paused", "provider rate limit")
        return LaneState(self.channel, "ok", "")
