"""Events and devices, the ingest's aggregate, on both engines: the same batch commits and
reads back the same on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from alertd.events import Event, Kind, Location, Severity, State
from alertd.store import Batch, DeadLetter, StateRow
from alertd.store.events import Events

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _event(n: int, kind: Kind = Kind.LEAK, *, at: datetime = T0) -> Event:
    return Event(
        id=n,
        kind=kind,
        state=State.ACTIVE,
        severity=Severity.MAJOR,
        device_id=f"leak-{n}",
        location=Location(site="hv", building="3", floor="12", unit="1203", zone="厨房 50%"),
        occurred_at=at,
        received_at=at + timedelta(milliseconds=n),
        source="mqtt",
        raw='{"water_leak": true}',
        tags={"riser": "2"},
    )


def test_a_batch_commits_and_reads_back_the_same_on_either_engine(store: Events) -> None:
    store.commit(
        Batch(
            events=[_event(n) for n in range(1, 301)],  # more rows than one statement takes
            states=[
                StateRow("leak-1", Kind.LEAK, True, T0, 1, seq=2),
                StateRow("smoke-1", Kind.FIRE_ALARM, True, T0, 2, seq=1),
            ],
            seen={"leak-1": (T0, {"battery": 97, "linkquality": 80})},
            dead_letters=[DeadLetter(T0, "mqtt", "not JSON", "z/x", "?", b"\xff\x00{oops", "hv")],
            receipts={"mqtt:1": "d1"},
            counters=Counter({"dead_letters": 1, "events": 300}),
        )
    )
    # later batches: an older state row never overwrites a newer one, an older sighting
    # never a newer one; a receipt is replaced, counters add up
    store.commit(
        Batch(
            states=[
                StateRow("leak-1", Kind.LEAK, False, T0 - timedelta(seconds=1), 3, seq=1),
                StateRow("smoke-1", Kind.FIRE_ALARM, False, T0 + timedelta(seconds=5), 4, seq=2),
            ],
            seen={"leak-1": (T0 - timedelta(seconds=1), {"battery": 1})},
            receipts={"mqtt:1": "d2"},
            counters=Counter({"events": 2}),
        )
    )
    assert store.max_event_id() == 300
    assert store.states() == {("leak-1", Kind.LEAK): True, ("smoke-1", Kind.FIRE_ALARM): False}
    assert store.last_seen() == {"leak-1": T0}
    assert store.device_values()["leak-1"]["values"] == {"battery": 97, "linkquality": 80}
    assert store.receipts() == {"mqtt:1": "d2"}
    assert store.counters() == {"dead_letters": 1, "events": 302}
    (letter,) = store.dead_letters()
    assert bytes(letter["payload"]) == b"\xff\x00{oops"
    assert (letter["reason"], letter["site"], letter["size"]) == ("not JSON", "hv", 7)
    found = list(store.events(since=T0 + timedelta(milliseconds=299)))
    assert [e["id"] for e in found] == [299, 300]
    assert found[0]["zone"] == "厨房 50%"
    assert found[0]["tags"] == '{"riser": "2"}'
    assert [e["id"] for e in store.events(kinds=("leak",), limit=2)] == [1, 2]
    assert list(store.events(kinds=("fire.alarm",))) == []


def test_a_batch_that_fails_leaves_nothing_on_either_engine(store: Events) -> None:
    """All of a batch or none of it: an event id already taken fails the commit, and the
    state rows and counters of the same batch are not kept either."""
    store.commit(Batch(events=[_event(1)]))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.commit(
            Batch(
                events=[_event(2), _event(1)],
                states=[StateRow("leak-2", Kind.LEAK, True, T0, 2, seq=1)],
                counters=Counter({"events": 2}),
            )
        )
    assert store.max_event_id() == 1
    assert store.states() == {}
    assert store.counters() == {}
