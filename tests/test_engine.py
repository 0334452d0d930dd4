"""The engine in simulated time: no I/O, no sleeps, exact decisions."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from alertd.clock import FakeClock
from alertd.engine.engine import Engine
from alertd.engine.replay import replay
from alertd.engine.state import Decision, Incident, Timer
from alertd.events import Kind, State
from alertd.playbooks.loader import load_playbooks
from alertd.playbooks.schema import Playbook, WaitAck
from tests.test_playbooks import SHIPPED, TZ, event

PLAYBOOKS = load_playbooks(SHIPPED).enabled


def engine(**extra: Playbook) -> Engine:
    return Engine({**PLAYBOOKS, **extra}, TZ)


def actions(decision: Decision) -> list[tuple[str, str]]:
    return [(a.channel, a.target) for a in decision.actions]


def open_leak(e: Engine, clock: FakeClock) -> Decision:
    _, (decision,) = e.on_event(event(at=clock.now()), [], clock.now(), next_id=1)
    return decision


def test_a_leak_opens_an_incident_and_tells_maintenance_and_both_flats() -> None:
    clock = FakeClock()
    decision = open_leak(engine(), clock)
    incident = decision.incident
    assert incident is not None
    assert (incident.id, incident.playbook, incident.status, incident.key) == (
        1,
        "water-leak",
        "open",
        "unit:HV/3/12/1203",
    )
    assert (incident.location.building, incident.location.unit, incident.location.zone) == (
        "3",
        "1203",
        "",
    )
    assert actions(decision) == [
        ("notify", "oncall:maintenance"),
        ("sms", "unit"),
        ("sms", "unit_below"),
    ]
    resident = decision.actions[1].texts
    # a sensor detected it (nobody "reported" it), what to do now, and how to ask for help
    assert resident["zh"] == (
        "您家漏水传感器报警。请先关闭进户水阀，维修师傅30分钟内到场。需要协助请回复2。"
    )
    assert resident["en"].startswith("Your flat's water sensor detected a leak.")
    assert "3号楼 12层 1203 厨房" in decision.actions[0].texts["zh"]
    assert "Bldg 3, 12F, 1203 kitchen" in decision.actions[0].texts["en"]
    assert decision.timers == [Timer(1, clock.now() + timedelta(seconds=600), "escalate", 3)]
    assert [e.type for e in decision.entries][:2] == ["opened", "event"]
    assert "water-leak: matched" in decision.entries[1].text
    assert "fire-alarm: kind leak is not one of fire.alarm" in decision.entries[1].text


def test_escalation_chain_repeats_until_acknowledged_then_stops() -> None:
    e, clock = engine(), FakeClock()
    incident = open_leak(e, clock).incident
    assert incident is not None
    timer = Timer(1, clock.advance(600), "escalate", 3)
    first = e.on_timer(incident, timer, clock.now())
    assert actions(first) == [("notify", "role:supervisor")]
    assert "10 minutes without acknowledgement" in first.actions[0].texts["en"]
    assert first.timers == [Timer(1, clock.now() + timedelta(seconds=600), "escalate", 3)]
    assert first.incident is not None
    again = e.on_timer(first.incident, first.timers[0], clock.advance(600))
    assert actions(again) == [("notify", "role:supervisor")]
    assert again.incident is not None
    acked = e.acknowledge(again.incident, "Wang (maintenance)", clock.advance(30))
    assert acked.cancel_timers
    assert acked.incident is not None
    assert (acked.incident.status, acked.incident.run.done) == ("acknowledged", True)
    assert acked.entries[0].actor == "Wang (maintenance)"
    stale = e.on_timer(acked.incident, Timer(1, clock.now(), "escalate", 3), clock.now())
    assert stale.actions == []
    assert stale.incident is None


def test_more_sensors_in_the_flat_join_the_incident_and_the_last_restore_clears_it() -> None:
    e, clock = engine(), FakeClock()
    incident = open_leak(e, clock).incident
    assert incident is not None
    _, (second,) = e.on_event(event(device="leak-2", at=clock.now()), [incident], clock.now(), 2)
    assert second.actions == []
    assert second.incident is not None
    assert second.incident.active == ("leak-1 leak", "leak-2 leak")
    _, (dry1,) = e.on_event(
        event(state=State.RESTORE, at=clock.advance(60)), [second.incident], clock.now(), 2
    )
    assert dry1.actions == []
    assert dry1.incident is not None
    _, (dry2,) = e.on_event(
        event(state=State.RESTORE, device="leak-2", at=clock.advance(60)),
        [dry1.incident],
        clock.now(),
        2,
    )
    # dry sensors are not "under control": that is for staff to say
    assert dry2.actions == []
    assert dry2.incident is not None
    (hold,) = dry2.timers
    held = e.on_timer(dry2.incident, hold, clock.advance(60))
    assert held.actions == []
    assert held.incident is not None
    assert held.incident.status == "open"
    assert "when staff confirm" in held.entries[-1].text
    resolved = e.resolve(held.incident, "Li (supervisor)", clock.advance(300))
    assert resolved.incident is not None
    assert resolved.incident.status == "resolved"
    assert actions(resolved) == [("sms", "notified")]
    assert "漏水已得到控制" in resolved.actions[0].texts["zh"]
    (follow,) = resolved.timers
    assert (follow.kind, follow.due_at) == ("follow_up", clock.now() + timedelta(days=1))
    later = e.on_timer(resolved.incident, follow, follow.due_at)
    assert actions(later) == [("sms", "unit")]
    assert "1 if it is" in later.actions[0].texts["en"]


def test_a_flapping_sensor_reopens_the_incident_it_came_from() -> None:
    e, clock = engine(), FakeClock()
    incident = open_leak(e, clock).incident
    assert incident is not None
    resolved = dataclasses.replace(
        incident, status="resolved", active=(), last_event_at=clock.now()
    )
    _, (flap,) = e.on_event(event(at=clock.advance(120)), [resolved], clock.now(), 2)
    assert flap.incident is not None
    assert flap.incident.id == 1
    assert flap.incident.status == "open"
    assert actions(flap)[0] == ("notify", "oncall:maintenance")


def test_a_fire_drill_is_marked_and_residents_are_not_texted_unless_allowed() -> None:
    clock = FakeClock()
    for allowed in (False, True):
        e = Engine(PLAYBOOKS, TZ, resident_sms_in_drills=allowed)
        _, (decision,) = e.on_event(
            event(Kind.FIRE_ALARM, drill=True, at=clock.now()), [], clock.now(), 1
        )
        expected = [
            ("call", "oncall:security"),
            ("notify", "oncall:security"),
            ("pa", "building"),
        ] + ([("sms", "building")] if allowed else [])
        assert actions(decision) == expected
        assert all(a.texts["zh"].startswith("【演练】") for a in decision.actions)
        assert all(a.texts["en"].startswith("[DRILL] ") for a in decision.actions)
        assert decision.actions[1].vulnerable_list  # the door-to-door list for security
        suppressed = [x.text for x in decision.entries if x.type == "suppressed"]
        assert suppressed == ([] if allowed else ["steps step 4: sms to building (a drill)"])
        assert decision.incident is not None
        assert decision.incident.drill


def test_run_modes_restart_and_queued() -> None:
    base = {
        "match": {"kinds": ["power.loss"]},
        "correlate": {"by": "building"},
        "steps": [{"note": "one"}, {"delay_s": 60}, {"note": "two"}],
    }
    restart = Playbook.model_validate({**base, "name": "r", "mode": "restart"})
    queued = Playbook.model_validate({**base, "name": "q", "mode": "queued"})
    clock = FakeClock()
    for pb, expected in ((restart, ["one"]), (queued, [])):
        e = Engine({pb.name: pb}, TZ)
        _, (first,) = e.on_event(event(Kind.POWER_LOSS, at=clock.now()), [], clock.now(), 1)
        assert first.incident is not None
        _, (second,) = e.on_event(
            event(Kind.POWER_LOSS, device="m2", at=clock.now()), [first.incident], clock.now(), 2
        )
        assert [x.text for x in second.entries if x.type == "note"] == expected
        assert second.incident is not None
        if pb.mode == "queued":
            assert second.incident.run.queued
            done = e.on_timer(second.incident, Timer(1, clock.now(), "continue", 1), clock.now())
            notes = [x.text for x in done.entries if x.type == "note"]
            assert notes == ["two", "one"]  # the rest of this run, then the queued one


def test_an_incident_whose_playbook_was_removed_is_left_alone() -> None:
    clock = FakeClock()
    incident = open_leak(engine(), clock).incident
    assert isinstance(incident, Incident)
    decision = Engine({}, TZ).on_timer(incident, Timer(1, clock.now(), "escalate", 3), clock.now())
    assert decision.actions == []
    assert "gone" in decision.entries[0].text


def test_shipped_playbooks_exist_for_each_hazard() -> None:
    kinds = {k for pb in PLAYBOOKS.values() for k in pb.match.kinds}
    assert {
        Kind.FIRE_ALARM,
        Kind.FIRE_TROUBLE,
        Kind.FIRE_SUPERVISORY,
        Kind.LEAK,
        Kind.POWER_LOSS,
        Kind.SENSOR_OFFLINE,
        Kind.MANUAL,
    } <= kinds


SCENARIOS = {
    "fire-alarm": (
        Kind.FIRE_ALARM,
        [
            ("call", "oncall:security"),
            ("notify", "oncall:security"),
            ("pa", "building"),
            ("sms", "building"),
        ],
    ),
    "fire-trouble": (Kind.FIRE_TROUBLE, [("notify", "oncall:maintenance")]),
    "power-loss": (Kind.POWER_LOSS, [("notify", "oncall:maintenance"), ("sms", "building")]),
    "water-leak": (
        Kind.LEAK,
        [("notify", "oncall:maintenance"), ("sms", "unit"), ("sms", "unit_below")],
    ),
    "sensor-offline": (Kind.SENSOR_OFFLINE, [("notify", "oncall:maintenance")]),
    "manual-emergency": (Kind.MANUAL, [("call", "oncall:security")]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_shipped_playbook_through_replay(name: str) -> None:
    """Golden first actions, then: the escalation an hour of silence brings, the restore,
    and the follow-up."""
    kind, first = SCENARIOS[name]
    clock = FakeClock()
    active = event(kind, at=clock.now())
    restore = event(kind, State.RESTORE, at=clock.now() + timedelta(hours=1))
    steps = list(replay([active, restore], Engine({name: PLAYBOOKS[name]}, TZ)))
    assert [(s.action.channel, s.action.target) for s in steps[: len(first)]] == first
    assert all(s.action.texts["zh"] and s.action.texts["en"] for s in steps)
    escalated = [s for s in steps if s.action.step.startswith("escalation")]
    has_chain = any(isinstance(x, WaitAck) for x in PLAYBOOKS[name].steps)
    assert bool(escalated) == has_chain
    if escalated:
        assert escalated[0].at > clock.now()
    follow_up = PLAYBOOKS[name].follow_up
    on_restore = PLAYBOOKS[name].on_restore
    if follow_up is not None and on_restore.resolve == "auto":
        held = timedelta(seconds=on_restore.hold_s + follow_up.after_s)
        assert steps[-1].at == restore.occurred_at + held


def test_a_new_restore_time_is_recorded_and_residents_are_updated() -> None:
    e, clock = engine(), FakeClock()  # 2026-01-01 00:00 UTC = 08:00 in Shanghai
    _, (opened,) = e.on_event(event(Kind.POWER_LOSS, at=clock.now()), [], clock.now(), 1)
    assert opened.incident is not None
    assert "预计10:00恢复" in opened.actions[1].texts["zh"]  # the playbook's 2 h
    later = clock.advance(1800)
    update = e.expect_restore(
        opened.incident,
        "Sun Min",
        later + timedelta(hours=3),
        later,
        "the power company says 3 hours",
    )
    assert update.incident is not None
    assert update.incident.expected_restore_at == later + timedelta(hours=3)
    assert actions(update) == [("sms", "building")]
    assert "预计11:30恢复供电" in update.actions[0].texts["zh"]
    assert update.entries[0].actor == "Sun Min"
    assert update.entries[0].text.endswith("the power company says 3 hours")
