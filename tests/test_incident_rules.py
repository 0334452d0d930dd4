"""Incident rules a duty desk relies on at 3 a.m., decided by the engine in simulated
time (no I/O) and through `replay`: a drill never absorbs a real alarm, a new detector is
announced, staff are told where and which incident, one cause makes one incident, the
all-clear goes out once and only when true, the record cannot be bent."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.config import DEFAULT_INHIBIT
from alertd.directory.residents import Resident
from alertd.directory.staff import Person, Staff
from alertd.directory.units import below
from alertd.engine.engine import Engine
from alertd.engine.replay import replay
from alertd.engine.state import Decision, Incident, IncidentIndex, Timer
from alertd.events import Kind, State
from alertd.outbox.expand import STAFF_BODY_MAX
from alertd.outbox.segments import segments
from alertd.playbooks.loader import load_playbooks
from alertd.playbooks.schema import Playbook, Sms
from alertd.store import SqliteStore
from alertd.store import incidents as incidents_db
from alertd.store.directory import claim_residents, import_residents
from tests.helpers import expand_now
from tests.test_playbooks import SHIPPED, T0, TZ, event

PLAYBOOKS = load_playbooks(SHIPPED).enabled
RAW_KINDS = re.compile(r"\b(fire|power|sensor|device)\.[a-z_]+\b")


def engine(**options: object) -> Engine:
    return Engine(PLAYBOOKS, TZ, inhibit=DEFAULT_INHIBIT, **options)  # type: ignore[arg-type]


class Desk:
    """The engine with its incidents and timers, as the service keeps them."""

    def __init__(self, e: Engine | None = None) -> None:
        self.engine = e or engine()
        self.clock = FakeClock(T0)
        self.incidents = IncidentIndex()
        self.timers: list[Timer] = []
        self.next_id = 1

    def apply(self, decisions: list[Decision]) -> list[Decision]:
        for d in decisions:
            if d.incident is None:
                continue
            self.incidents.put(d.incident)
            self.next_id = max(self.next_id, d.incident.id + 1)
            self.timers += d.timers
        return decisions

    def event(
        self, kind: Kind = Kind.FIRE_ALARM, state: State = State.ACTIVE, **kw: Any
    ) -> list[Decision]:
        e = event(kind, state, at=self.clock.now(), **kw)
        _, decisions = self.engine.on_event(e, self.incidents, self.clock.now(), self.next_id)
        return self.apply(decisions)

    def advance(self, seconds: float) -> list[Decision]:
        """Move time on and fire what falls due, in order."""
        until = self.clock.advance(seconds)
        fired = []
        while due := sorted((t for t in self.timers if t.due_at <= until), key=lambda t: t.due_at):
            timer = due[0]
            self.timers.remove(timer)
            incident = self.incidents.get(timer.incident)
            if incident is not None:
                fired += self.apply([self.engine.on_timer(incident, timer, timer.due_at)])
        return fired

    def get(self, incident_id: int) -> Incident:
        found = self.incidents.get(incident_id)
        assert found is not None
        return found


def sent(decisions: list[Decision]) -> list[tuple[int, str, str]]:
    return [
        (d.incident.id if d.incident else 0, a.channel, a.target)
        for d in decisions
        for a in d.actions
    ]


# 1. A drill never absorbs a real alarm -------------------------------------------------


def test_a_real_alarm_during_a_drill_opens_a_real_incident_that_notes_the_drill() -> None:
    desk = Desk()
    (drill,) = desk.event(drill=True, device="drill:1")
    assert drill.incident is not None
    assert drill.incident.drill
    real = desk.event(device="smoke-3-12")
    (opened,) = real
    assert opened.incident is not None
    assert (opened.incident.id, opened.incident.drill) == (2, False)
    assert ("call", "oncall:security") in [(a.channel, a.target) for a in opened.actions]
    assert not any(a.texts["zh"].startswith("【演练】") for a in opened.actions)
    assert any("a drill runs here too (incident 1)" in e.text for e in opened.entries)
    # the reverse: a drill while a real incident is open joins the drill, not the real one
    (second_drill,) = desk.event(drill=True, device="drill:2")
    assert second_drill.incident is not None
    assert (second_drill.incident.id, second_drill.incident.drill) == (1, True)
    # a second real detector joins the real incident, announced, never the drill
    (spread,) = desk.event(device="smoke-3-05", floor="5", unit="0502")
    assert spread.incident is not None
    assert (spread.incident.id, spread.incident.drill) == (2, False)
    assert ("notify", "oncall:security") in [(a.channel, a.target) for a in spread.actions]
    assert "now also Bldg 3, 5F, 0502" in spread.actions[-1].texts["en"]
    assert "0502" not in desk.get(1).units
    assert "device:smoke-3-05" not in desk.get(1).seen


def test_a_drill_nobody_closes_ends_by_itself() -> None:
    desk = Desk(engine(drill_end_s=3600))
    desk.event(drill=True, device="drill:1")
    assert desk.advance(3599) == [] or desk.get(1).status != "closed"
    assert desk.get(1).status != "closed"
    desk.advance(2)
    assert desk.get(1).status == "closed"
    # a closed drill takes no more events: the next drill is a new incident
    (again,) = desk.event(drill=True, device="drill:1")
    assert again.incident is not None
    assert again.incident.id == 2


def test_an_acknowledgement_does_not_cancel_the_end_of_a_drill() -> None:
    desk = Desk(engine(drill_end_s=600))
    desk.event(drill=True, device="drill:1")
    desk.apply([desk.engine.acknowledge(desk.get(1), "Wang", desk.clock.now())])
    desk.advance(601)
    assert desk.get(1).status == "closed"


# 2. A second alarm is always announced --------------------------------------------------


def test_a_new_detector_joining_an_acknowledged_fire_is_announced_with_its_place() -> None:
    desk = Desk()
    desk.event(device="smoke-3-12", floor="12", unit="1203")
    desk.apply([desk.engine.acknowledge(desk.get(1), "Wang", desk.clock.now())])
    (joined,) = desk.event(device="smoke-3-05", floor="5", unit="0502")
    assert [(a.channel, a.target) for a in joined.actions] == [
        ("call", "oncall:security"),
        ("notify", "oncall:security"),
    ]
    text = joined.actions[1].texts
    assert "火警蔓延 #1" in text["zh"]
    assert "3号楼 5层 0502 厨房" in text["zh"]
    assert "now also Bldg 3, 5F, 0502 kitchen" in text["en"]
    assert "First alarm: Fire alarm, Bldg 3, 12F, 1203 kitchen" in text["en"]
    assert joined.incident is not None
    assert joined.incident.status == "acknowledged"
    # the same detector again (it flapped) is not news
    desk.event(state=State.RESTORE, device="smoke-3-05", floor="5", unit="0502")
    (again,) = desk.event(device="smoke-3-05", floor="5", unit="0502")
    assert again.actions == []


def test_joins_are_announced_in_replay_too() -> None:
    events = [
        dataclasses.replace(event(Kind.FIRE_ALARM, device="smoke-a", at=T0), id=1),
        dataclasses.replace(
            event(Kind.FIRE_ALARM, device="smoke-b", floor="14", unit="1401", at=T0), id=2
        ),
    ]
    steps = [s for s in replay(events, engine()) if s.at == T0]
    assert [s.action.step for s in steps].count("on_join step 2") == 1
    assert any("now also Bldg 3, 14F, 1401" in s.action.texts["en"] for s in steps)


def test_a_playbook_says_what_counts_as_new() -> None:
    pb = Playbook.model_validate(
        {
            "name": "floors",
            "match": {"kinds": ["fire.alarm"]},
            "steps": [{"note": "fire"}],
            "on_join": {
                "new": ["floor"],
                "steps": [{"notify": {"role": "security"}, "template": "more"}],
            },
            "templates": {
                "more": {
                    "zh": "#{{ incident }} {{ location }}",
                    "en": "x {{ incident }} {{ location }}",
                }
            },
        }
    )
    desk = Desk(Engine({pb.name: pb}, TZ))
    desk.event(device="a", floor="12")
    (same_floor,) = desk.event(device="b", floor="12")
    (new_floor,) = desk.event(device="c", floor="13")
    assert same_floor.actions == []
    assert [a.texts["zh"] for a in new_floor.actions] == ["#1 3号楼 13层 1203 厨房"]


# 3. Staff are told exactly where and which incident -------------------------------------


@pytest.mark.parametrize("name", sorted(PLAYBOOKS))
def test_every_staff_text_names_the_device_place_and_the_incident(name: str) -> None:
    kind = PLAYBOOKS[name].match.kinds[0]
    active = dataclasses.replace(event(kind, device="dev-1", at=T0), id=1)
    steps = list(replay([active], Engine({name: PLAYBOOKS[name]}, TZ)))
    staff = [s for s in steps if s.action.channel in ("notify", "call")]
    assert staff, "every shipped playbook tells somebody"
    for s in staff:
        zh, en = s.action.texts["zh"], s.action.texts["en"]
        assert "3号楼 12层 1203 厨房" in zh, zh  # even when the incident is the whole building
        assert "Bldg 3, 12F, 1203 kitchen" in en, en
        assert "#1" in zh
        assert "#1" in en
        assert not RAW_KINDS.search(zh + en), (zh, en)
        if s.action.channel == "call":
            assert "按1确认" in zh
            assert "press 1 to acknowledge" in en
            assert "OK" not in zh + en
        else:
            assert "回复 OK 1 确认" in zh
            assert "reply OK 1" in en


def test_a_playbook_whose_staff_text_does_not_say_which_incident_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"staff_fire \(zh\) goes to staff but does not name the incident number"
    ):
        Playbook.model_validate(
            {
                "name": "vague",
                "match": {"kinds": ["fire.alarm"]},
                "steps": [{"notify": {"role": "security"}, "template": "staff_fire"}],
                "templates": {
                    "staff_fire": {
                        "zh": "火警 {{ location }}",
                        "en": "Fire #{{ incident }} {{ location }}",
                    }
                },
            }
        )


# 5. The unit below is found -------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "floor", "unit_format", "expected"),
    [
        ("1203", "12", None, ["1103"]),
        ("0805", "8", None, ["0705", "705"]),
        ("805", "8", None, ["705"]),
        ("3-0805", "8", None, ["3-0705", "3-705"]),
        ("B1203", "", None, ["B1103"]),
        ("1001", "10", None, ["0901", "901"]),
        ("0105", "1", None, []),  # the ground floor has nothing below
        ("0805", "", "{floor:02}{flat:02}", ["0705"]),
        ("3-1203", "", "{building}-{floor}{flat:02}", ["3-1103"]),
        ("A12-03", "", "A{floor}-{flat:02}", ["A11-03"]),
    ],
)
def test_the_flat_below(
    unit: str, floor: str, unit_format: str | None, expected: list[str]
) -> None:
    assert below(unit, floor, unit_format) == expected


# 6. One cause, one incident -------------------------------------------------------------


def test_a_power_cut_taking_twelve_monitors_offline_is_one_incident() -> None:
    desk = Desk()
    decisions = []
    for n in range(12):  # each mains monitor: power.loss (the cause) first, then offline
        decisions += desk.event(Kind.POWER_LOSS, device=f"mains-{n}", floor=str(n + 1))
        decisions += desk.event(Kind.SENSOR_OFFLINE, device=f"mains-{n}", floor=str(n + 1))
    opened = {d.incident.id for d in decisions if d.incident is not None}
    assert opened == {1}
    assert desk.get(1).playbook == "power-loss"
    explained = [e for d in decisions for e in d.entries if e.type == "inhibited"]
    assert len(explained) == 12
    assert "mains-7" in explained[7].text
    assert "explained by this incident" in explained[7].text
    assert sent(decisions) == [(1, "notify", "oncall:maintenance"), (1, "sms", "building")]


def test_inhibition_holds_only_while_the_cause_is_open_and_only_in_its_place() -> None:
    desk = Desk()
    desk.event(Kind.POWER_LOSS, device="mains-1")
    (elsewhere,) = desk.event(Kind.SENSOR_OFFLINE, device="cam-9", building="5")
    assert elsewhere.incident is not None
    assert elsewhere.incident.playbook == "sensor-offline"
    (drill,) = desk.event(Kind.SENSOR_OFFLINE, device="cam-1", drill=True)
    assert drill.incident is not None
    assert drill.incident.playbook == "sensor-offline"
    desk.event(Kind.POWER_LOSS, state=State.RESTORE, device="mains-1")
    desk.advance(61)
    assert desk.get(1).status == "resolved"
    (after,) = desk.event(Kind.SENSOR_OFFLINE, device="cam-2")
    assert after.incident is not None
    assert after.incident.playbook == "sensor-offline"


# 7. The all-clear goes out once, and only when it is true -------------------------------


def test_a_flapping_detector_gives_one_all_clear_after_the_hold() -> None:
    desk = Desk()
    desk.event(Kind.POWER_LOSS, device="mains-1")
    decisions = []
    for _ in range(4):  # four restores and three relapses within 0.3 s
        decisions += desk.event(Kind.POWER_LOSS, state=State.RESTORE, device="mains-1")
        desk.clock.advance(0.05)
        decisions += desk.event(Kind.POWER_LOSS, device="mains-1")
        desk.clock.advance(0.025)
    decisions += desk.event(Kind.POWER_LOSS, state=State.RESTORE, device="mains-1")
    assert [a for d in decisions for a in d.actions] == []
    decisions += desk.advance(120)
    all_clears = [a for d in decisions for a in d.actions if a.step.startswith("on_restore")]
    assert len(all_clears) == 1
    assert "已恢复供电" in all_clears[0].texts["zh"]
    assert desk.get(1).status == "resolved"


def test_no_all_clear_while_any_condition_is_active_even_when_staff_resolve() -> None:
    desk = Desk()
    desk.event(device="smoke-a")
    desk.event(device="smoke-b", floor="14")
    desk.event(state=State.RESTORE, device="smoke-a")
    desk.advance(120)
    refused = desk.engine.resolve(desk.get(1), "Wang", desk.clock.now())
    assert "incident 1 is still active: smoke-b fire.alarm" in refused.refused
    assert refused.incident is None
    without_reason = desk.engine.resolve(desk.get(1), "Wang", desk.clock.now(), force=True)
    assert "say why" in without_reason.refused
    resolved = desk.apply(
        [desk.engine.resolve(desk.get(1), "Wang", desk.clock.now(), "brigade: toast", force=True)]
    )
    assert resolved[0].actions == []
    assert "the all-clear waits until these clear: smoke-b fire.alarm" in resolved[0].reply
    desk.event(state=State.RESTORE, device="smoke-b", floor="14")
    (cleared,) = desk.advance(60)
    assert [(a.channel, a.target) for a in cleared.actions] == [("sms", "notified")]
    assert "火警已解除" in cleared.actions[0].texts["zh"]
    desk.advance(3600)  # and never again for this clearing
    assert desk.get(1).all_clear_sent


def test_a_restore_finds_its_incident_however_late_and_the_all_clear_goes_out() -> None:
    """Resolved while the second detector was still in alarm, the all-clear waited for
    it; its restore came after `correlate.window_s` (two hours) and matched nothing, so
    the evacuated residents were never told they may go home."""
    desk = Desk()
    desk.event(device="smoke-a")
    desk.event(device="smoke-b", floor="14")
    desk.event(state=State.RESTORE, device="smoke-a")
    desk.apply([desk.engine.resolve(desk.get(1), "Wang", desk.clock.now(), "out", force=True)])
    desk.advance(5 * 3600)  # five hours later, past the two-hour window
    desk.event(state=State.RESTORE, device="smoke-b", floor="14")
    cleared = desk.advance(60)
    assert [(a.channel, a.target) for a in cleared[0].actions] == [("sms", "notified")]
    assert desk.get(1).active == ()
    assert len(desk.incidents) == 1  # no incident of its own


def test_closing_while_a_leak_is_still_wet_asks_and_the_incident_stays_in_sight() -> None:
    """处理完毕 then 关闭 on a wet sensor closed the incident for good, and a detector that
    stays in alarm raised nothing new."""
    desk = Desk()
    desk.event(Kind.LEAK, device="leak-1")
    refused = desk.engine.close(desk.get(1), "Li", "")
    assert "incident 1 is still active: leak-1 leak" in refused.refused
    (closed,) = desk.apply([desk.engine.close(desk.get(1), "Li", "valve shut", force=True)])
    assert closed.reply == "closed; still active: leak-1 leak"
    assert desk.get(1).status == "closed"
    assert desk.get(1).active == ("leak-1 leak",)
    # a day later the sensor dries: its restore finds the closed incident
    desk.advance(86400)
    desk.event(Kind.LEAK, state=State.RESTORE, device="leak-1")
    assert desk.get(1).active == ()
    assert desk.get(1).status == "closed"
    # and a new leak there is a new incident, not a line on a closed record
    desk.event(Kind.LEAK, device="leak-1")
    assert desk.get(2).status == "open"


def test_staff_send_the_all_clear_themselves_once() -> None:
    desk = Desk()
    desk.event(device="smoke-a")
    desk.apply([desk.engine.resolve(desk.get(1), "Wang", desk.clock.now(), "out", force=True)])
    (sent,) = desk.apply([desk.engine.all_clear(desk.get(1), "Wang", desk.clock.now(), "dead")])
    assert [(a.channel, a.target) for a in sent.actions] == [("sms", "notified")]
    assert "火警已解除" in sent.actions[0].texts["zh"]
    assert "still active: smoke-a fire.alarm" in sent.entries[0].text
    assert desk.get(1).status == "resolved"
    again = desk.engine.all_clear(desk.get(1), "Wang", desk.clock.now())
    assert again.refused == "incident 1: the all-clear was sent already"
    # the detector clears later: no second all-clear
    desk.event(state=State.RESTORE, device="smoke-a")
    assert [a for d in desk.advance(600) for a in d.actions] == []


def test_a_leak_is_under_control_when_staff_confirm_not_when_the_sensor_dries() -> None:
    desk = Desk()
    desk.event(Kind.LEAK, device="leak-1")
    dried = desk.event(Kind.LEAK, state=State.RESTORE, device="leak-1") + desk.advance(600)
    assert [a for d in dried for a in d.actions if a.channel == "sms"] == []
    assert desk.get(1).status == "open"
    (confirmed,) = desk.apply([desk.engine.resolve(desk.get(1), "Li", desk.clock.now())])
    assert [(a.channel, a.target) for a in confirmed.actions] == [("sms", "notified")]
    assert "漏水已得到控制" in confirmed.actions[0].texts["zh"]


# 8. A resident asking for help reaches a person -----------------------------------------


def test_a_help_request_tells_security_the_flat_the_name_and_the_note() -> None:
    desk = Desk()
    desk.event(device="smoke-a")
    resident = {
        "building": "3",
        "floor": "8",
        "unit": "0805",
        "name": "Zhang Xiulan",
        "notes": "lives alone, wheelchair",
        "phone": "+8613800000805",
    }
    decision = desk.engine.help_requested(desk.get(1), resident, "2", desk.clock.now())
    ((channel, target, texts),) = [(a.channel, a.target, a.texts) for a in decision.actions]
    assert (channel, target) == ("notify", "oncall:security")
    assert "3号楼 8层 0805" in texts["zh"]
    assert "Zhang Xiulan" in texts["zh"]
    assert "lives alone, wheelchair" in texts["en"]
    assert "+8613800000805" in texts["en"]
    assert "#1" in texts["en"]
    assert decision.entries[0].type == "help_request"
    assert "Bldg 3, 8F, 0805 Zhang Xiulan asked for help" in decision.entries[0].text


# 10. The record cannot be bent ----------------------------------------------------------


def test_the_first_acknowledgement_counts_and_none_after_resolve() -> None:
    desk = Desk()
    desk.event(device="smoke-a")
    first_at = desk.clock.now()
    desk.apply([desk.engine.acknowledge(desk.get(1), "Wang", first_at)])
    later = desk.engine.acknowledge(desk.get(1), "Li", desk.clock.advance(300))
    desk.apply([later])
    assert (desk.get(1).acknowledged_at, desk.get(1).acknowledged_by) == (first_at, "Wang")
    assert later.entries[0].actor == "Li"
    assert "first: Wang at" in later.entries[0].text
    desk.apply([desk.engine.resolve(desk.get(1), "Wang", desk.clock.now(), "out", force=True)])
    refused = desk.engine.acknowledge(desk.get(1), "Li", desk.clock.now())
    assert refused.refused == "incident 1 is resolved already"
    assert refused.incident is None


# 11. New restore times tell the people affected, or say nobody was --------------------


def test_a_new_restore_time_without_on_eta_steps_says_nobody_was_told() -> None:
    desk = Desk()
    desk.event(Kind.LEAK, device="leak-1")
    eta = desk.clock.now() + timedelta(hours=2)
    decision = desk.engine.expect_restore(desk.get(1), "Li", eta, desk.clock.now())
    assert decision.actions == []
    assert "has no on_eta steps, so nobody was told" in decision.reply


def test_a_restore_time_on_another_day_gives_the_date() -> None:
    desk = Desk()
    desk.event(Kind.POWER_LOSS, device="mains-1")
    tomorrow = desk.clock.now() + timedelta(hours=20)  # 06:00 next morning in Shanghai
    decision = desk.engine.expect_restore(desk.get(1), "Li", tomorrow, desk.clock.now())
    assert "预计11月28日 06:00恢复供电" in decision.actions[0].texts["zh"]
    assert "back by 28 Nov 06:00" in decision.actions[0].texts["en"]


# 12. Residents get messages a property service would send --------------------------------


SIGNATURES = {"zh": "【海景物业】", "en": "Harbour View: "}


def resident_texts() -> list[tuple[str, str, str]]:
    """Every resident SMS the shipped playbooks send for an alarm that lasts 30 hours, as a
    drill (the longest form: 【演练】 is added), with the example signatures."""
    out = []
    for pb in PLAYBOOKS.values():
        e = Engine({pb.name: pb}, TZ, signatures=SIGNATURES, resident_sms_in_drills=True)
        for kind in pb.match.kinds:
            active = event(kind, device="d", building="12", at=T0, drill=True)
            restore = dataclasses.replace(
                active, id=2, state=State.RESTORE, occurred_at=T0 + timedelta(hours=30)
            )
            for s in replay([active, restore], e):
                if s.action.channel == "sms":
                    out += [(pb.name, lang, s.action.texts[lang]) for lang in ("zh", "en")]
    return out


def test_every_resident_text_starts_with_the_signature_and_fits_one_segment() -> None:
    texts = resident_texts()
    assert {name for name, _, _ in texts} == {"fire-alarm", "power-loss", "water-leak"}
    for name, lang, text in texts:
        assert text.startswith(SIGNATURES[lang]), text
        assert segments(text) == 1, (name, lang, len(text), text)
        # how to ask for help
        assert "回复" in text if lang == "zh" else "reply" in text.lower()
        assert "2" in text


def test_the_leak_text_says_a_sensor_found_it_and_what_to_do() -> None:
    template = PLAYBOOKS["water-leak"].templates["resident_leak"]
    assert "传感器" in template.zh
    assert "水阀" in template.zh
    assert "sensor" in template.en
    assert "valve" in template.en
    assert "收到" not in template.zh
    assert "report" not in template.en


def test_segments_are_counted_as_carriers_do() -> None:
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2
    assert segments("[" * 80) == 1
    assert segments("[" * 81) == 2
    assert segments("火" * 70) == 1
    assert segments("火" * 71) == 2
    assert segments("a" * 69 + "火") == 1


def test_a_resident_text_of_any_shipped_template_has_no_raw_kind() -> None:
    for pb in PLAYBOOKS.values():
        for step in pb.all_steps():
            if isinstance(step, Sms):
                template = pb.templates[step.template]
                assert not RAW_KINDS.search(template.zh + template.en)


def test_every_shipped_template_reads_the_same_with_only_the_values_it_uses() -> None:
    """A step works out only the values its template uses (the place in each language,
    times, the acknowledgement hint cost a decision more than the rest of it): every
    shipped template reads exactly as with all of them, for a text and for a call. A
    template that cannot be read gets every value, and says what is wrong with it."""
    from alertd.engine.templates import context, names, render
    from alertd.playbooks.audit import SAMPLE_RESIDENT, sample

    now = T0 + timedelta(minutes=7)
    incident = dataclasses.replace(sample(T0), expected_restore_at=now + timedelta(hours=2))
    checked = 0
    for pb in PLAYBOOKS.values():
        for template in pb.templates.values():
            only = names(template.zh, template.en)
            assert only is not None
            for channel in ("sms", "call"):
                full = context(incident, now, TZ, channel=channel, extra=SAMPLE_RESIDENT)
                lean = context(incident, now, TZ, channel=channel, extra=SAMPLE_RESIDENT, only=only)
                assert render(template, lean, drill=False) == render(template, full, drill=False)
                checked += 1
    assert checked > 20
    assert names("{{ location", "x") is None  # rendered with every value, and its error


# 4 and 5, as the delivery stage expands them from the directory (a real SQLite file) ----


SECURITY = Staff(
    {
        "Wang": Person(phone="+8613900000001", roles=["security"]),
        "Sam": Person(phone="+8613900000002", roles=["security"], language="en"),
    },
    {},
    [],
    TZ,
)


def expand(tmp_path: Path, residents: list[Resident], decision: Decision) -> SqliteStore:
    store = SqliteStore(tmp_path / "alertd.db")
    import_residents(store.conn, residents, T0)
    claim_residents(store.conn, "HV")  # the site of the events (tests/test_playbooks.py)
    incidents_db.save(store.conn, [decision], T0, incidents_db.Done())
    expand_now(store.conn, SECURITY, T0, timedelta(hours=1))
    return store


def texted(store: SqliteStore, outbox_step: str) -> list[str]:
    return [
        r[0]
        for r in store.conn.execute(
            "SELECT r.unit FROM messages m JOIN outbox o ON o.id = m.outbox_id JOIN residents r "
            "ON CAST(r.id AS TEXT) = m.recipient_ref WHERE o.step = ? ORDER BY r.unit",
            (outbox_step,),
        )
    ]


@pytest.mark.parametrize(
    ("leak_unit", "floor", "flats", "expected"),
    [
        ("0805", "8", ["0705", "0805", "0905"], ["0705"]),  # zero-padded
        ("805", "8", ["705", "805"], ["705"]),  # unpadded
        ("805", "", ["705", "805"], ["705"]),  # no floor given: read from the number
        ("1203", "12", ["1103", "1203"], ["1103"]),
        ("3-0805", "8", ["3-0705", "3-0805"], ["3-0705"]),
    ],
)
def test_the_flat_below_a_leak_is_texted_however_flats_are_numbered(
    tmp_path: Path, leak_unit: str, floor: str, flats: list[str], expected: list[str]
) -> None:
    residents = [
        Resident("3", f, u, f"R{u}", f"+86138{n:08d}", "zh", False)
        for n, u in enumerate(flats)
        for f in [u.split("-")[-1][:-2].lstrip("0")]
    ]
    desk = Desk()
    (opened,) = desk.event(Kind.LEAK, device="leak-1", floor=floor, unit=leak_unit)
    store = expand(tmp_path, residents, opened)
    assert texted(store, "steps step 3") == expected
    assert texted(store, "steps step 2") == [leak_unit]


def test_the_door_check_list_is_made_from_the_directory_and_says_how_many_more(
    tmp_path: Path,
) -> None:
    residents = [
        Resident(
            "3",
            str(f),
            f"{f:02d}0{u}",
            f"Resident {f}-{u}",
            f"+8613{f:03d}{u:06d}",
            "zh",
            True,
            "lives alone",
        )
        for f in range(2, 30)
        for u in (1, 2)
    ] + [Resident("3", "5", "0503", "Not Vulnerable", "+8613800000503", "zh", False)]
    desk = Desk()
    (opened,) = desk.event(device="smoke-1")
    store = expand(tmp_path, residents, opened)
    bodies = dict(
        store.conn.execute(
            "SELECT m.language, m.body FROM messages m JOIN outbox o ON o.id = m.outbox_id "
            "WHERE o.vulnerable_list = 1"
        ).fetchall()
    )
    assert "... and " in bodies["en"]
    assert bodies["en"].endswith("more: alertd incidents show 1")
    zh = bodies["zh"]
    assert zh.startswith("【火警 #1】3号楼 12层 1203 厨房")
    assert "0201 Resident 2-1 (lives alone)" in zh  # lowest floors first, door to door
    assert "Not Vulnerable" not in zh
    shown = zh.count("(lives alone)")
    assert 0 < shown < 56
    assert zh.endswith(f"另有 {56 - shown} 户，完整名单：alertd incidents show 1")
    assert len(zh) <= STAFF_BODY_MAX
    (listed,) = store.conn.execute(
        "SELECT text FROM timeline WHERE type = 'vulnerable_list'"
    ).fetchall()
    assert listed[0].count("(lives alone)") == 56  # the timeline keeps the whole list


def test_a_door_check_list_with_the_phone_link_points_to_it_and_leaves_it_room(
    tmp_path: Path,
) -> None:
    """The guard on the stairs cannot type `alertd incidents show`: with the phone page's
    link (which lists everyone) the text says so, and text and link fit the budget."""
    from alertd.links import Links
    from alertd.outbox.expand import with_list

    entries = [f"{n:04d} Resident {n} (lives alone)" for n in range(60)]
    links = Links(b"k" * 32, "https://desk.example.com")
    room = len(links.url(1, "名" * 12, T0)) + 1
    zh = with_list("【火警 #1】3号楼", entries, "zh", 1, room)
    assert zh.endswith("户，完整名单见下方链接")
    assert len(zh) + len("\n" + links.url(1, "王强", T0)) <= STAFF_BODY_MAX
    en = with_list("Fire #1", entries, "en", 1, room)
    assert en.endswith("more: the whole list at the link below")
    assert with_list("Fire #1", entries, "en", 1).endswith("alertd incidents show 1")


def test_a_signature_without_a_space_is_followed_by_one_in_english() -> None:
    """ "Harbour View:Fire alarm in building 7" read as one word."""
    from alertd.engine.templates import render
    from alertd.playbooks.schema import Template

    values = {"zh": {}, "en": {}}
    texts = render(
        Template(zh="7号楼火警", en="Fire alarm in building 7"),
        values,
        drill=False,
        prefix={"zh": "【海景物业】", "en": "Harbour View:"},
    )
    assert texts == {"zh": "【海景物业】7号楼火警", "en": "Harbour View: Fire alarm in building 7"}
    bracketed = render(
        Template(zh="x", en="Fire"), values, drill=False, prefix={"zh": "", "en": "[HV] "}
    )
    assert bracketed["en"] == "[HV] Fire"


@pytest.mark.parametrize(
    ("zone", "floor", "chinese"),
    [
        ("hall", "3", "7号楼 3层 0301 门厅"),
        ("riser 1", "B1", "7号楼 B1层 0301 管井1"),
        ("east hall", "3", "7号楼 3层 0301 东门厅"),
        ("fire control room", "1", "7号楼 1层 0301 消防控制室"),
        ("Zone X-12", "2", "7号楼 2层 0301 Zone X-12"),  # nothing known: kept as written
    ],
)
def test_a_chinese_text_names_the_place_in_chinese(zone: str, floor: str, chinese: str) -> None:
    from alertd.engine.wording import place
    from alertd.events import Location

    assert place(Location("HV", "7", floor, "0301", zone), "zh") == chinese


def test_a_declared_emergency_or_a_drill_ends_without_a_detector_to_clear() -> None:
    """A declared fire has no detector that will ever restore: resolving it asks for no
    confirmation and sends the all-clear; a drill that ends by itself leaves nothing
    "still active" on the board."""
    desk = Desk()
    desk.event(device="manual:Front desk-1")
    (resolved,) = desk.apply([desk.engine.resolve(desk.get(1), "Wang", desk.clock.now())])
    assert not resolved.refused
    assert [(a.channel, a.target) for a in resolved.actions] == [("sms", "notified")]
    assert desk.get(1).active == ()
    drill = Desk(engine(drill_end_s=60))
    drill.event(drill=True, device="drill:Li-2")
    drill.advance(61)
    assert (drill.get(1).status, drill.get(1).active) == ("closed", ())
