"""Configuration and devices files: validated on load, errors name file, line and key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from alertd.cli import main
from alertd.config import load_config
from alertd.devices import load_devices
from alertd.events import Event, Kind, Location, Severity, State
from alertd.problems import InvalidInput
from alertd.store import Batch, SqliteStore

EXAMPLE = Path(__file__).parent.parent / "config" / "alertd.example.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_the_example_configuration_is_valid_and_complete() -> None:
    result = CliRunner().invoke(main, ["check", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output
    cfg = load_config(EXAMPLE)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.client_id) == ("127.0.0.1", 1883, "alertd")
    assert cfg.storage.path.name == "alertd.db"
    assert cfg.site.timezone == "Asia/Shanghai"


def test_check_warns_when_staff_texts_would_link_to_this_machine(tmp_path: Path) -> None:
    """The phone page's link in a staff text is made from console.public_url: left at
    its loopback default with a real SMS provider, it opens on no phone."""
    write(tmp_path, "devices.csv", "device_id,profile,topic\n")
    twilio = "twilio: {account_sid: AC0, auth_token: x, from_number: '+15005550006'}\n"
    path = write(tmp_path, "a.yaml", "devices: devices.csv\n" + twilio)
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 0, result.output  # a warning, not a problem
    assert "console.public_url is http://127.0.0.1:8090: the link in each staff text" in (
        result.output
    )
    path.write_text(path.read_text() + "console: {public_url: 'https://desk.example.com'}\n")
    assert "public_url" not in CliRunner().invoke(main, ["check", "--config", str(path)]).output


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "site:\n  name: x\nmqtt:\n  port: [1883\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert "invalid YAML" in problem


def test_a_file_saved_as_gbk_loads_and_one_of_no_known_encoding_is_named(
    tmp_path: Path,
) -> None:
    """A Chinese Windows editor saves GBK: every YAML file is read as the CSV files are;
    bytes that are no text are refused naming the file, not a traceback at start."""
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes("site: {name: 海景花园, timezone: Asia/Shanghai}\n".encode("gbk"))
    assert load_config(gbk).site.name == "海景花园"
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"site: {name: \xff\xfa\x80\x81}\n")
    with pytest.raises(InvalidInput, match=f"{junk}: loading refused: the text is neither"):
        load_config(junk)


def test_wrong_values_and_unknown_keys_name_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        "site:\n  timezone: Mars/Olympus\nmqtt:\n  host: broker\n  port: seventy\n"
        "  hots: typo\nprofiles:\n  bad:\n    rules:\n      - kind: leak\n        topic: x\n",
    )
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:2 site.timezone") and "Mars/Olympus" in p for p in problems)
    assert any(p.startswith(f"{path}:5 mqtt.port") and "'seventy'" in p for p in problems)
    assert any(p.startswith(f"{path}:6 mqtt.hots") and "unknown key" in p for p in problems)
    assert any(p.startswith(f"{path}:10 profiles.bad.rules.0") for p in problems)


def test_secrets_come_from_the_environment_and_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTD_TEST_PW", "hunter2")
    path = write(tmp_path, "a.yaml", "mqtt:\n  username: alertd\n  password: ${ALERTD_TEST_PW}\n")
    cfg = load_config(path)
    assert cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.model_dump())
    missing = write(tmp_path, "b.yaml", "mqtt:\n  password: ${ALERTD_NOT_SET_ANYWHERE}\n")
    assert problems_of(missing) == [
        f"{missing}:2: environment variable ALERTD_NOT_SET_ANYWHERE is not set"
    ]
    wrong = write(tmp_path, "c.yaml", "mqtt:\n  password: [hunter2]\n")
    assert not any("hunter2" in p for p in problems_of(wrong))


DEVICES = """device_id,profile,topic,site,building,floor,unit,zone,heartbeat_s,kind,owner
ok-1,zigbee2mqtt,zigbee2mqtt/a,,3,12,1203,kitchen,,,Mrs Li
,zigbee2mqtt,zigbee2mqtt/b,,3,12,1203,kitchen,,,
bad-profile,sonoff,x,,3,,,,,,
bad-heartbeat,zigbee2mqtt,zigbee2mqtt/c,,3,,,,soon,,
ok-1,zigbee2mqtt,zigbee2mqtt/d,,3,,,,,,
bad-kind,homeassistant,ha/x,,3,,,,,lava,
ok-2,homeassistant,ha/leak,,3,,,,60,moisture,
"""


def test_bad_device_rows_are_reported_with_their_line_and_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES)
    devices, problems = load_devices(path, profiles=["zigbee2mqtt", "homeassistant"], site="HV")
    assert [d.device_id for d in devices] == ["ok-1", "ok-2"]
    assert devices[0].tags == {"owner": "Mrs Li"}
    assert devices[0].location.site == "HV"
    assert devices[1].kind is Kind.LEAK
    assert devices[1].heartbeat_s == 60
    lines = {str(p).split(": ", 1)[0].rsplit(":", 1)[1]: str(p) for p in problems}
    assert sorted(lines) == ["3", "4", "5", "6", "7"]
    assert "device_id is empty" in lines["3"]
    assert "unknown profile 'sonoff'" in lines["4"]
    assert "heartbeat_s must be a number" in lines["5"]
    assert "already used on line 2" in lines["6"]
    assert "unknown kind 'lava'" in lines["7"]


def test_check_exits_non_zero_and_lists_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "devices.csv", DEVICES)
    path = write(tmp_path, "a.yaml", "devices: devices.csv\n")
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert result.output.count("error:") == 5
    assert f"{tmp_path / 'devices.csv'}:4: row skipped: unknown profile 'sonoff'" in result.output
    broken = write(tmp_path, "b.yaml", "mqtt: {port: 0}\n")
    result = CliRunner().invoke(main, ["check", "--config", str(broken)])
    assert result.exit_code == 2
    assert f"{broken}:1 mqtt.port" in result.output


def test_missing_devices_file_and_header(tmp_path: Path) -> None:
    devices, problems = load_devices(tmp_path / "nope.csv", profiles=[], site="x")
    assert devices == []
    assert "cannot read devices file" in str(problems[0])
    path = write(tmp_path, "d.csv", "id,topic\n1,x\n")
    _, problems = load_devices(path, profiles=[], site="x")
    assert str(problems[0]) == (
        f"{path}:1: missing column(s): device_id, profile (the header has: id, topic)"
    )


def test_events_json_is_one_object_per_line_with_offsets(tmp_path: Path) -> None:
    cfg = write(tmp_path, "a.yaml", "site: {timezone: Asia/Shanghai}\nstorage: {path: a.db}\n")
    store = SqliteStore(tmp_path / "a.db")
    at = datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC)
    batch = Batch()
    for i, kind in enumerate((Kind.LEAK, Kind.FIRE_ALARM), start=1):
        batch.events.append(
            Event(
                i,
                kind,
                State.ACTIVE,
                Severity.MAJOR,
                f"d{i}",
                Location("HV", "3", "12", "1203", "kitchen"),
                at,
                at,
                "mqtt",
            )
        )
    store.commit(batch)
    store.close()
    result = CliRunner().invoke(main, ["events", "--config", str(cfg), "--json"])
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["occurred_at"] == "2026-11-27T09:02:03+08:00"
    assert {
        "id",
        "kind",
        "state",
        "severity",
        "device_id",
        "site",
        "building",
        "floor",
        "unit",
        "zone",
        "occurred_at",
        "received_at",
        "source",
    } <= rows[0].keys()
    only_fire = CliRunner().invoke(main, ["events", "--config", str(cfg), "--kind", "fire.alarm"])
    assert "fire.alarm" in only_fire.output
    assert "leak" not in only_fire.output


def test_every_setting_is_shown_in_the_example_configuration() -> None:
    """The example is the reference: a setting missing from it is undocumented."""
    from pydantic import BaseModel

    from alertd.config import Config

    text = EXAMPLE.read_text()
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if f"{name}:" not in text:
                missing.append(prefix + name)
            kind = info.annotation
            for candidate in (kind, *getattr(kind, "__args__", ())):
                if (
                    isinstance(candidate, type)
                    and issubclass(candidate, BaseModel)
                    and name
                    not in ("profiles", "panels", "receivers", "printer_formats", "webhooks")
                ):
                    walk(candidate, f"{prefix}{name}.")

    walk(Config, "")
    assert missing == []


def test_check_says_a_chinese_printer_panel_left_on_ascii_can_never_be_read(
    tmp_path: Path,
) -> None:
    write(tmp_path, "devices.csv", "device_id,profile,topic\n")
    gst = EXAMPLE.read_text().split("printer_formats:\n", 1)[1].split("\n  notifier_en:", 1)[0]
    path = write(
        tmp_path,
        "a.yaml",
        "devices: devices.csv\n"
        "panels:\n  lobby: {protocol: printer, port: /dev/ttyUSB0, format: gst_cn}\n"
        f"printer_formats:\n{gst}\n",
    )
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert f"error: {path} panels.lobby.encoding: printer format 'gst_cn' reads '火警'" in (
        result.output
    )
    path.write_text(
        path.read_text().replace("format: gst_cn}", "format: gst_cn, encoding: gb18030}")
    )
    assert CliRunner().invoke(main, ["check", "--config", str(path)]).exit_code == 0
