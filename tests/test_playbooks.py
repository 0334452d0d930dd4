"""Playbooks: loading with file:line errors, matching with a trace, correlation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from alertd.cli import main
from alertd.engine.correlate import OpenIncident, correlation_key, place
from alertd.engine.match import check
from alertd.events import Event, Kind, Location, Severity, State, severity_of
from alertd.playbooks.loader import load_playbooks
from alertd.playbooks.schema import Playbook

SHIPPED = Path(__file__).parent.parent / "playbooks"
TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Friday


def event(
    kind: Kind = Kind.LEAK,
    state: State = State.ACTIVE,
    *,
    device: str = "leak-1",
    building: str = "3",
    floor: str = "12",
    unit: str = "1203",
    at: datetime = T0,
    tags: dict[str, str] | None = None,
    drill: bool = False,
) -> Event:
    return Event(
        1,
        kind,
        state,
        severity_of(kind, state),
        device,
        Location("HV", building, floor, unit, "kitchen"),
        at,
        at,
        "test",
        tags=tags or {},
        drill=drill,
    )


def playbook(**match: object) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "p",
            "match": {"kinds": ["leak"], **match},
            "correlate": {"by": "unit", "window_s": 600},
            "steps": [{"note": "leak"}],
        }
    )


def test_the_shipped_playbooks_load() -> None:
    loaded = load_playbooks(SHIPPED)
    assert loaded.problems == []
    assert {"fire-alarm", "water-leak"} <= set(loaded.enabled)


def test_a_broken_playbook_is_disabled_with_file_and_line_and_the_others_load(
    tmp_path: Path,
) -> None:
    for source in SHIPPED.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "broken_yaml.yaml").write_text("name: x\nmatch: [unclosed\n")
    (tmp_path / "bad_kind.yaml").write_text(
        "name: bad\nmatch:\n  kinds: [earthquake]\nsteps:\n  - note: hi\n"
    )
    (tmp_path / "no_template.yaml").write_text(
        "name: t\nmatch: {kinds: [leak]}\nsteps:\n  - sms: unit\n    template: missing\n"
    )
    (tmp_path / "duplicate.yaml").write_text((SHIPPED / "fire_alarm.yaml").read_text())
    loaded = load_playbooks(tmp_path)
    assert set(loaded.enabled) == set(load_playbooks(SHIPPED).enabled)
    problems = {Path(f).name: [str(p) for p in ps] for f, ps in loaded.disabled.items()}
    assert problems["broken_yaml.yaml"][0].startswith(f"{tmp_path / 'broken_yaml.yaml'}:")
    assert "invalid YAML" in problems["broken_yaml.yaml"][0]
    assert problems["bad_kind.yaml"][0].startswith(f"{tmp_path / 'bad_kind.yaml'}:3 match.kinds.0")
    assert "templates not defined under templates: missing" in problems["no_template.yaml"][0]
    # files load in name order: the second file naming fire-alarm is the one disabled
    assert "playbook name 'fire-alarm' is already used by" in problems["fire_alarm.yaml"][0]


def test_check_lists_playbook_problems(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "bad.yaml").write_text("name: bad\nmatch: {kinds: []}\nsteps: []\n")
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    cfg = tmp_path / "a.yaml"
    cfg.write_text("devices: devices.csv\nplaybooks: playbooks\n")
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'playbooks' / 'bad.yaml'}:2 match.kinds" in result.output


@pytest.mark.parametrize(
    ("match", "ev", "reason"),
    [
        ({}, event(), "matched"),
        ({}, event(Kind.FIRE_ALARM), "kind fire.alarm is not one of leak"),
        ({"buildings": ["5"]}, event(), "building 3 is not one of 5"),
        ({"units": ["1203"]}, event(), "matched"),
        ({"min_severity": "critical"}, event(), "severity major is below critical"),
        ({"tags": {"model": "SJCGQ11LM"}}, event(tags={"model": "SJCGQ11LM"}), "matched"),
        ({"tags": {"model": "SJCGQ11LM"}}, event(), "tag model is None, not 'SJCGQ11LM'"),
        ({"drill": False}, event(drill=True), "a drill"),
        ({"states": ["restore"]}, event(), "state active is not one of restore"),
        ({"windows": [{"start": "09:00", "end": "18:00", "days": ["fri"]}]}, event(), "matched"),
        (
            {"windows": [{"start": "22:00", "end": "06:00"}]},
            event(),
            "Fri 10:00 is outside the playbook's time windows",
        ),
        (
            {"windows": [{"start": "22:00", "end": "06:00", "days": ["thu"]}]},
            event(at=T0 - timedelta(hours=5)),
            "matched",
        ),  # Fri 05:00, in Thursday's night
    ],
)
def test_matching_says_which_condition_failed(
    match: dict[str, object], ev: Event, reason: str
) -> None:
    trace = check(playbook(**match), ev, TZ)
    assert (trace.matched, trace.reason) == (reason == "matched", reason)


def test_a_restore_matches_whatever_its_severity() -> None:
    restore = event(state=State.RESTORE)
    assert restore.severity is Severity.INFO
    assert check(playbook(min_severity="major"), restore, TZ).matched


def test_correlation_opens_attaches_clears_and_reopens_a_flapping_sensor() -> None:
    pb = playbook()
    first = place(pb, event(), [])
    assert (first.outcome, first.incident, first.key) == ("open", None, "unit:HV/3/12/1203")
    incident = OpenIncident(7, "p", first.key, "open", T0, first.active)
    second_sensor = place(pb, event(device="leak-2"), [incident])
    assert (second_sensor.outcome, second_sensor.incident) == ("attach", 7)
    assert second_sensor.active == ("leak-1 leak", "leak-2 leak")
    incident = OpenIncident(7, "p", first.key, "open", T0, second_sensor.active)
    one_dry = place(pb, event(state=State.RESTORE), [incident])
    assert (one_dry.outcome, one_dry.active) == ("attach", ("leak-2 leak",))
    incident = OpenIncident(7, "p", first.key, "open", T0, one_dry.active)
    all_dry = place(pb, event(state=State.RESTORE, device="leak-2"), [incident])
    assert (all_dry.outcome, all_dry.active) == ("all_clear", ())
    resolved = OpenIncident(7, "p", first.key, "resolved", T0, frozenset())
    flap = place(pb, event(at=T0 + timedelta(seconds=300)), [resolved])
    assert (flap.outcome, flap.incident) == ("reopen", 7)
    later = place(pb, event(at=T0 + timedelta(seconds=601)), [resolved])
    assert later.outcome == "open"
    elsewhere = place(pb, event(unit="1103", floor="11"), [incident])
    assert elsewhere.outcome == "open"
    stray = place(pb, event(state=State.RESTORE, device="leak-9"), [incident])
    assert stray.outcome == "ignore"


def test_mains_monitors_of_one_building_make_one_power_incident() -> None:
    pb = Playbook.model_validate(
        {
            "name": "power",
            "match": {"kinds": ["power.loss"]},
            "correlate": {"by": "building"},
            "steps": [{"note": "x"}],
        }
    )
    a = event(Kind.POWER_LOSS, device="mains-a", floor="B1", unit="")
    b = event(Kind.POWER_LOSS, device="mains-b", floor="1", unit="")
    assert correlation_key(pb, a) == correlation_key(pb, b) == "building:HV/3"
    first = place(pb, a, [])
    incident = OpenIncident(1, "power", first.key, "open", T0, first.active)
    assert place(pb, b, [incident]).outcome == "attach"
