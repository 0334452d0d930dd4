"""The directory: residents import, phone numbers, on-call rotations across DST."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from alertd.cli import main
from alertd.directory.phones import mask, normalise
from alertd.directory.residents import import_residents, read_residents
from alertd.directory.staff import load_staff
from alertd.problems import InvalidInput
from alertd.store import SqliteStore

CSV_HEAD = "building,floor,unit,name,phone,language,vulnerable,notes\n"


def test_phone_numbers_are_normalised_and_masked() -> None:
    assert normalise("138 0000 1203", "CN") == "+8613800001203"
    assert normalise("+44 20 7946 0958", "CN") == "+442079460958"
    with pytest.raises(ValueError, match="not a valid number"):
        normalise("12345", "CN")
    with pytest.raises(ValueError, match="not a phone number"):
        normalise("call me", "CN")
    assert mask("+8613800001203") == "+86 138****1203"
    assert "0958" in mask("+442079460958")
    assert "7946" not in mask("+442079460958")


def test_bad_rows_are_reported_with_their_line_and_the_rest_imports(tmp_path: Path) -> None:
    path = tmp_path / "residents.csv"
    path.write_text(
        CSV_HEAD
        + "3,12,1203,Li Hua,13800001203,zh,no,\n"
        + "3,11,1103,Wang Fang,138-0000-1103,zh,是,lives alone\n"
        + "3,12,1204,Nobody,12345,zh,no,\n"
        + "3,12,1205,Anna,13800001205,fr,no,\n"
        + "3,12,1206,Ben,13800001206,en,maybe,\n"
        + "3,12,1203,Li Hua again,13800001203,zh,no,\n"
        + ",12,1207,No Building,13800001207,zh,no,\n"
    )
    residents, problems = read_residents(path, "CN")
    assert [(r.unit, r.phone, r.vulnerable) for r in residents] == [
        ("1203", "+8613800001203", False),
        ("1103", "+8613800001103", True),
    ]
    lines = [str(p).split(": ", 1)[0].rsplit(":", 1)[1] for p in problems]
    assert lines == ["4", "5", "6", "7", "8"]
    assert "language must be zh or en" in str(problems[1])
    assert "same phone in the same unit as line 2" in str(problems[3])


def test_reimport_updates_in_place_and_keeps_opt_outs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a.db")
    first = tmp_path / "a.csv"
    first.write_text(
        CSV_HEAD
        + "3,12,1203,Li Hua,13800001203,zh,no,\n"
        + "3,11,1103,Wang Fang,13800001103,zh,yes,\n"
    )
    residents, _ = read_residents(first, "CN")
    assert import_residents(store.conn, residents, datetime.now(UTC)) == (2, 0, 0)
    store.conn.execute("UPDATE residents SET opted_out = 1 WHERE unit = '1203'")  # STOP
    second = tmp_path / "b.csv"
    second.write_text(CSV_HEAD + "3,12,1203,Li Hua,13800001203,en,yes,now elderly\n")
    residents, _ = read_residents(second, "CN")
    assert import_residents(store.conn, residents, datetime.now(UTC)) == (0, 1, 1)
    rows = store.conn.execute(
        "SELECT unit, language, vulnerable, opted_out, moved_out IS NOT NULL FROM residents "
        "ORDER BY unit"
    ).fetchall()
    assert rows == [("1103", "zh", 1, 0, 1), ("1203", "en", 1, 1, 0)]
    store.close()


def test_the_cli_masks_phone_numbers_unless_asked(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text("storage: {path: a.db}\n")
    csv = tmp_path / "r.csv"
    csv.write_text(CSV_HEAD + "3,12,1203,Li Hua,13800001203,zh,no,\n3,1,101,X,bad,zh,no,\n")
    imported = CliRunner().invoke(main, ["residents", "import", "--config", str(cfg), str(csv)])
    assert imported.exit_code == 1  # one row skipped, and said so
    assert "1 added" in imported.output
    assert f"{csv}:3: row skipped" in imported.output
    masked = CliRunner().invoke(main, ["residents", "list", "--config", str(cfg)])
    assert "+86 138****1203" in masked.output
    assert "13800001203" not in masked.output
    shown = CliRunner().invoke(main, ["residents", "list", "--config", str(cfg), "--show-phones"])
    assert "+8613800001203" in shown.output


STAFF = """
people:
  Night: {phone: "+447911000001", roles: [security]}
  Day: {phone: "+447911000002", roles: [security]}
  Cover: {phone: "+447911000003", roles: [security]}
oncall:
  security:
    - {who: Night, start: "22:00", end: "06:00"}
    - {who: Day, start: "06:00", end: "22:00"}
overrides:
  - {role: security, who: Cover, start: "2026-12-24T18:00", end: "2026-12-26T08:00"}
"""


def test_on_call_follows_the_wall_clock_across_daylight_saving(tmp_path: Path) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text(STAFF)
    staff = load_staff(path, "GB", ZoneInfo("Europe/London"))
    # clocks go forward at 01:00 UTC on 29 March 2026: 06:00 local is 05:00 UTC after it
    assert staff.on_call("security", datetime(2026, 3, 29, 4, 59, tzinfo=UTC)) == "Night"
    assert staff.on_call("security", datetime(2026, 3, 29, 5, 0, tzinfo=UTC)) == "Day"
    assert staff.on_call("security", datetime(2026, 3, 28, 5, 59, tzinfo=UTC)) == "Night"
    assert staff.on_call("security", datetime(2026, 3, 28, 6, 0, tzinfo=UTC)) == "Day"
    # and back on 25 October: 22:00 local is 22:00 UTC again
    assert staff.on_call("security", datetime(2026, 10, 25, 21, 59, tzinfo=UTC)) == "Day"
    assert staff.on_call("security", datetime(2026, 10, 25, 22, 0, tzinfo=UTC)) == "Night"
    assert staff.on_call("security", datetime(2026, 12, 25, 12, 0, tzinfo=UTC)) == "Cover"
    assert staff.on_call("maintenance", datetime(2026, 12, 25, 12, 0, tzinfo=UTC)) is None


def test_a_bad_staff_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "staff.yaml"
    path.write_text(STAFF.replace("who: Day,", "who: Dya,").replace('"+447911000003"', '"12"'))
    with pytest.raises(InvalidInput) as info:
        load_staff(path, "GB", ZoneInfo("Europe/London"))
    assert "not under people: Dya" in str(info.value)
    path.write_text(STAFF.replace('"+447911000003"', '"12"'))
    with pytest.raises(InvalidInput) as info:
        load_staff(path, "GB", ZoneInfo("Europe/London"))
    assert str(info.value.problems[0]).startswith(f"{path}:5 people.Cover.phone")


def test_oncall_cli(tmp_path: Path) -> None:
    (tmp_path / "staff.yaml").write_text(STAFF)
    cfg = tmp_path / "a.yaml"
    cfg.write_text("site: {timezone: Europe/London, country: GB}\nstaff: staff.yaml\n")
    out = CliRunner().invoke(main, ["oncall", "--config", str(cfg), "--at", "2026-11-27T23:00"])
    assert out.exit_code == 0, out.output
    assert "security     Night" in out.output
    assert "+44 791****0001" in out.output
    full = CliRunner().invoke(
        main, ["oncall", "--config", str(cfg), "--at", "2026-11-27T23:00", "--show-phones"]
    )
    assert "+447911000001" in full.output
