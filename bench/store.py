"""The ingest's batch commit on both engines: `python -m bench.store [--quick]`.

The store alone, in one thread, durable on both (SQLite WAL with synchronous=FULL in a
temporary file; a PostgreSQL server started here with its defaults: fsync on,
synchronous_commit on, over loopback TCP). Reports, for each engine:

1. one alarm per commit (its event, device state, sighting and MQTT receipt), as alertd
   commits a fire: commits/s and latency p50/p99;
2. telemetry batches as ingest groups them under a storm (500 devices' sightings and 50
   events a commit): rows/s.

Not the whole daemon: the daemon does not run on PostgreSQL yet (see the README).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from alertd.clock import SystemClock
from alertd.store import Batch, SqliteStore
from alertd.store.events import Events
from alertd.store.postgres import PgStore
from bench import commit, q, quick_flag
from tests.postgres import Cluster

CLOCK = SystemClock()


def storm(first: int, devices: int = 500, events: int = 50) -> Batch:
    now = datetime.now(UTC)
    return Batch(
        events=[alarm(first + i).events[0] for i in range(events)],
        seen={f"plug_{d}": (now, {"power": d, "linkquality": 80}) for d in range(devices)},
    )


def alarm(n: int) -> Batch:
    """What ingest hands on for a leak message from device n (as bench.commit)."""
    return commit.alarm(n, CLOCK)


def measure(name: str, open_store: Callable[[], Events], alarms: int, batches: int) -> None:
    store = open_store()
    try:
        for n in range(1, 101):  # warm: prepared statements, the store's pages
            store.commit(alarm(n))
        latencies = []
        started = time.perf_counter()
        for n in range(101, 101 + alarms):
            at = time.perf_counter()
            store.commit(alarm(n))
            latencies.append((time.perf_counter() - at) * 1000)
        elapsed = time.perf_counter() - started
        first = 101 + alarms
        rows = 0
        began = time.perf_counter()
        for b in range(batches):
            batch = storm(first + b * 50)
            store.commit(batch)
            rows += len(batch.events) + len(batch.seen)
        spent = time.perf_counter() - began
    finally:
        store.close()
    print(
        f"{name:<10} one alarm a commit: {alarms / elapsed:,.0f} commits/s, p50="
        f"{q(latencies, 50):.2f} ms p99={q(latencies, 99):.2f} ms; telemetry: "
        f"{rows / spent:,.0f} rows/s in commits of 550 rows"
    )


def main() -> None:
    quick = quick_flag(__doc__)
    alarms, batches = (300, 20) if quick else (2000, 100)
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite", lambda: SqliteStore(Path(tmp) / "alertd.db"), alarms, batches)
    cluster = Cluster(durable=True).start()
    try:
        measure("PostgreSQL", lambda: PgStore(cluster.url()), alarms, batches)
    finally:
        cluster.remove()


if __name__ == "__main__":
    main()
