"""Engine benchmark: `python -m bench.engine` (part of `make bench`).

1. One decision for an event against 50 playbooks with 1,000 open incidents.
2. Replay of 100,000 events through the shipped playbooks in simulated time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.engine.engine import Engine
from alertd.engine.replay import replay
from alertd.engine.state import Incident, IncidentIndex
from alertd.events import Event, Kind, Location, State, severity_of
from alertd.playbooks.loader import load_playbooks
from alertd.playbooks.schema import Playbook
from bench import q, quick_flag

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
KINDS = [Kind.LEAK, Kind.FIRE_ALARM, Kind.POWER_LOSS, Kind.SENSOR_OFFLINE, Kind.FIRE_TROUBLE]


def event(n: int, state: State = State.ACTIVE, at: datetime = T0) -> Event:
    kind = KINDS[n % len(KINDS)]
    return Event(
        n,
        kind,
        state,
        severity_of(kind, state),
        f"dev-{n % 5000}",
        Location("HV", str(n % 40), str(n % 30), f"{n % 40}{n % 30:02d}{n % 8}", "z"),
        at,
        at,
        "bench",
    )


def decisions(samples: int) -> None:
    shipped = load_playbooks(Path(__file__).parent.parent / "playbooks").enabled
    # 50 playbooks: the shipped ones, each in variants for groups of buildings
    books: dict[str, Playbook] = {}
    for i in range(50):
        base = list(shipped.values())[i % len(shipped)]
        group = [str(b) for b in range(40) if b % 9 == i // len(shipped)]
        match = base.match.model_copy(update={"buildings": group})
        books[f"{base.name}-{i}"] = base.model_copy(
            update={"name": f"{base.name}-{i}", "match": match}
        )
    engine = Engine(books, TZ)
    live: list[Incident] = []
    n = 0
    while len(live) < 1000:  # 1,000 open incidents, each from a distinct place
        _, made = engine.on_event(event(n), [], T0, n + 1)
        live.extend(d.incident for d in made if d.incident is not None)
        n += 1
    index = IncidentIndex(live[:1000])
    times = []
    for n in range(samples):
        ev = event(100_000 + n, at=T0 + timedelta(seconds=n))
        t = time.perf_counter()
        engine.on_event(ev, index, ev.occurred_at, 10_000 + n)
        times.append(time.perf_counter() - t)
    print(
        f"engine: one event, {len(books)} playbooks, {len(index)} open incidents: "
        f"p50={q(times, 50) * 1000:.3f} ms p99={q(times, 99) * 1000:.3f} ms"
    )


def replay_many(count: int) -> None:
    engine = Engine(load_playbooks(Path(__file__).parent.parent / "playbooks").enabled, TZ)
    events = []
    for n in range(count):
        at = T0 + timedelta(seconds=n * 3)
        events.append(event(n, State.ACTIVE if (n // 5000) % 2 == 0 else State.RESTORE, at))
    t = time.perf_counter()
    actions = sum(1 for _ in replay(events, engine, horizon=timedelta(hours=1)))
    elapsed = time.perf_counter() - t
    print(
        f"replay: {count:,} events in {elapsed:.1f} s ({count / elapsed:,.0f} events/s), "
        f"{actions:,} actions"
    )


def main() -> None:
    quick = quick_flag(__doc__)
    decisions(300 if quick else 2000)
    replay_many(10_000 if quick else 100_000)


if __name__ == "__main__":
    main()
