"""Edge triggering, hold times and heartbeats, in simulated time."""

from __future__ import annotations

from alertd.clock import FakeClock
from alertd.events import Kind, Observation
from alertd.ingest.edge import EdgeDetector
from alertd.ingest.supervision import Heartbeats
from tests.helpers import device

LEAK_ON = Observation(Kind.LEAK, True)
LEAK_OFF = Observation(Kind.LEAK, False)


def test_repeated_state_is_not_an_event() -> None:
    clock = FakeClock()
    edge = EdgeDetector()
    now = clock.now()
    assert edge.observe("d", LEAK_OFF, now, now) is None  # first normal report: no restore
    change = edge.observe("d", LEAK_ON, now, now)
    assert change is not None
    assert change.active
    assert edge.observe("d", LEAK_ON, now, now) is None
    restore = edge.observe("d", LEAK_OFF, now, now)
    assert restore is not None
    assert not restore.active


def test_first_report_of_an_active_condition_is_an_event() -> None:
    now = FakeClock().now()
    change = EdgeDetector().observe("d", LEAK_ON, now, now)
    assert change is not None
    assert change.active
    assert change.kind is Kind.LEAK


def test_known_state_survives_a_restart() -> None:
    now = FakeClock().now()
    edge = EdgeDetector({("d", Kind.LEAK): True})
    assert edge.observe("d", LEAK_ON, now, now) is None  # still wet: not a new leak
    assert edge.observe("d", LEAK_OFF, now, now) is not None


def test_hold_time_fires_when_the_condition_persists() -> None:
    clock = FakeClock()
    edge = EdgeDetector({("m", Kind.POWER_LOSS): False})
    low = Observation(Kind.POWER_LOSS, True, hold_s=5)
    started = clock.now()
    assert edge.observe("m", low, started, started) is None
    clock.advance(3)
    assert edge.observe("m", low, clock.now(), clock.now()) is None
    assert edge.due(clock.now()) == []
    clock.advance(2)
    (change,) = edge.due(clock.now())
    assert change.active
    assert change.occurred_at == started
    assert edge.due(clock.now()) == []


def test_a_dip_shorter_than_the_hold_is_forgotten() -> None:
    clock = FakeClock()
    edge = EdgeDetector({("m", Kind.POWER_LOSS): False})
    edge.observe("m", Observation(Kind.POWER_LOSS, True, hold_s=5), clock.now(), clock.now())
    clock.advance(2)
    edge.observe("m", Observation(Kind.POWER_LOSS, False, hold_s=5), clock.now(), clock.now())
    clock.advance(10)
    assert edge.due(clock.now()) == []


def test_hold_confirmed_by_a_later_message() -> None:
    clock = FakeClock()
    edge = EdgeDetector()
    low = Observation(Kind.POWER_LOSS, True, hold_s=5)
    edge.observe("m", low, clock.now(), clock.now())
    clock.advance(6)
    change = edge.observe("m", low, clock.now(), clock.now())
    assert change is not None
    assert change.active


def test_heartbeat_silence_is_reported_once_per_silence() -> None:
    clock = FakeClock()
    quiet = device("quiet", heartbeat_s=60)
    chatty = device("chatty", heartbeat_s=60)
    never = device("never")  # no heartbeat configured
    beats = Heartbeats([quiet, chatty, never], {}, clock.now())
    clock.advance(30)
    beats.seen("chatty", clock.now())
    clock.advance(31)
    assert beats.overdue(clock.now()) == [quiet]
    assert beats.overdue(clock.now()) == []
    clock.advance(30)
    assert beats.overdue(clock.now()) == [chatty]
    beats.seen("quiet", clock.now())
    clock.advance(61)
    assert {d.device_id for d in beats.overdue(clock.now())} == {"quiet"}


def test_heartbeats_give_a_full_interval_after_a_restart() -> None:
    clock = FakeClock()
    long_ago = clock.now()
    clock.advance(3600)
    beats = Heartbeats([device("d", heartbeat_s=60)], {"d": long_ago}, clock.now())
    assert beats.overdue(clock.now()) == []
    clock.advance(60)
    assert [d.device_id for d in beats.overdue(clock.now())] == ["d"]
