"""One alarm at a time: `python -m bench.commit [--quick]` (part of `make bench`).

The real decision and delivery path in one process, without the broker or HTTP: each
leak from a fresh device is decided, stored with its event, expanded and claimed in one
durable commit (FULL), its webhook "sent" by a sink that answers at once, the outcome
recorded by the next commit. One alarm per commit is what alertd does at a few hundred
messages a second, where every commit's fixed cost decides the latency: the CPU spent on
each (all of it, and the writer thread's part: an alarm's commit runs on the event loop
when the writer is idle, see `Writer`), the commit's latency, and its statements.
Steadier from run to run than the whole path (`bench.e2e`).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.clock import SystemClock
from alertd.config import DeliveryConfig
from alertd.engine.engine import Engine
from alertd.events import Event, Kind, Location, State, severity_of
from alertd.incidents.service import IncidentService
from alertd.outbox.dispatcher import Dispatcher
from alertd.outbox.sink import Message, Result
from alertd.playbooks.loader import load_playbooks
from alertd.store import Writer
from alertd.store.batch import Batch, StateRow
from bench import q, quick_flag
from bench.e2e import PLAYBOOK


class Sink:
    async def send(self, message: Message) -> Result:
        return Result("sent", provider_id="webhook:sink")

    async def close(self) -> None:
        pass


def thread_cpu(native_id: int) -> tuple[float, float]:
    """User and system seconds of one of this process's threads."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / 100, int(fields[12]) / 100


def alarm(n: int, clock: SystemClock) -> Batch:
    """What ingest hands on for a QoS 1 leak message from device n."""
    now = clock.now()
    event = Event(
        n,
        Kind.LEAK,
        State.ACTIVE,
        severity_of(Kind.LEAK, State.ACTIVE),
        f"leak_{n}",
        Location("", "1", "1", str(n), f"leak_{n}"),
        now,
        now,
        "mqtt",
        raw='{"water_leak": true}',
    )
    return Batch(
        events=[event],
        states=[StateRow(event.device_id, event.kind, True, now, n, n)],
        seen={event.device_id: (now, {"water_leak": True})},
        receipts={f"mqtt:bench:{n}": "0" * 24},
    )


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "playbooks").mkdir()
        (root / "playbooks" / "leak.yaml").write_text(PLAYBOOK)
        writer = Writer(root / "alertd.db", synchronous="FULL")
        store = await writer.open()
        clock = SystemClock()
        engine = Engine(load_playbooks(root / "playbooks").enabled, ZoneInfo("Asia/Shanghai"))
        config = DeliveryConfig(concurrency=50)  # type: ignore[call-arg]
        dispatcher = Dispatcher(writer, {"webhook": Sink()}, clock, config, None)
        await dispatcher.start()
        service = IncidentService(writer, engine, clock, None)
        service.delivery = dispatcher
        await service.catch_up(await service.open())
        delivering = asyncio.create_task(dispatcher.run())
        (tid,) = [t.native_id for t in threading.enumerate() if t.name == "alertd-writer"]
        assert tid is not None
        for n in range(1, 201):  # warm: caches, prepared statements, the store's pages
            await service.commit(alarm(n, clock), urgent=True)
        statements: list[str] = []
        await writer.call(store.conn.set_trace_callback, statements.append)
        await service.commit(alarm(201, clock), urgent=True)
        await writer.call(store.conn.set_trace_callback, None)
        latencies = []
        user0, sys0 = thread_cpu(tid)
        loop0, started = time.thread_time(), time.perf_counter()
        for n in range(202, 202 + count):
            at = time.perf_counter()
            await service.commit(alarm(n, clock), urgent=True)
            latencies.append((time.perf_counter() - at) * 1000)
        elapsed = time.perf_counter() - started
        loop1 = time.thread_time()
        user1, sys1 = thread_cpu(tid)
        dispatcher.stop()
        await delivering
        await dispatcher.close()
        await writer.close()
    per = 1e6 / count
    writer_us = (user1 - user0 + sys1 - sys0) * per
    loop_us = (loop1 - loop0) * per
    print(
        f"{count:,} alarms, one commit each, in {elapsed:.2f} s: commit p50={q(latencies, 50):.2f}"
        f" ms p99={q(latencies, 99):.2f} ms; CPU per alarm {writer_us + loop_us:.0f} us (the "
        f"event loop {loop_us:.0f}, the writer thread {writer_us:.0f}); {len(statements)} "
        "statements (its commit, and recording the alarm before it)"
    )


def main() -> None:
    asyncio.run(run(500 if quick_flag(__doc__) else 5000))


if __name__ == "__main__":
    main()
