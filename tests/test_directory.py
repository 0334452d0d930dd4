"""The directory: residents import, phone numbers, on-call rotations across DST."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from alertd.cli import main
from alertd.directory.phones import mask, normalise
from alertd.directory.residents import read_residents
from alertd.directory.staff import load_staff
from alertd.problems import InvalidInput
from alertd.store import SqliteStore
from alertd.store.directory import import_residents
from alertd.store.events import Events

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
    found = read_residents(path, "CN")
    residents, problems = found.residents, found.problems
    assert [(r.unit, r.phone, r.vulnerable) for r in residents] == [
        ("1203", "+8613800001203", False),
        ("1103", "+8613800001103", True),
    ]
    lines = [str(p).split(": ", 1)[0].rsplit(":", 1)[1] for p in problems]
    assert lines == ["4", "5", "6", "7", "8"]
    assert "language must be zh or en" in str(problems[1])
    assert "same phone in the same unit as line 2" in str(problems[3])


def test_reimport_updates_in_place_and_keeps_opt_outs(tmp_path: Path, store: Events) -> None:
    first = tmp_path / "a.csv"
    first.write_text(
        CSV_HEAD
        + "3,12,1203,Li Hua,13800001203,zh,no,\n"
        + "3,11,1103,Wang Fang,13800001103,zh,yes,\n"
    )
    residents = read_residents(first, "CN").residents
    assert import_residents(store.conn, residents, datetime.now(UTC)) == (2, 0, 0)
    store.conn.execute("UPDATE residents SET opted_out = 1 WHERE unit = '1203'")  # STOP
    second = tmp_path / "b.csv"
    second.write_text(CSV_HEAD + "3,12,1203,Li Hua,13800001203,en,yes,now elderly\n")
    residents = read_residents(second, "CN").residents
    assert import_residents(store.conn, residents, datetime.now(UTC)) == (0, 1, 1)
    rows = store.conn.execute(
        "SELECT unit, language, vulnerable, opted_out, moved_out IS NOT NULL FROM residents "
        "ORDER BY unit"
    ).fetchall()
    assert rows == [("1103", "zh", 1, 0, 1), ("1203", "en", 1, 1, 0)]


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


EIGHT = "".join(f"3,{f},{f}01,Resident {f},1380000{f:04},zh,no,\n" for f in range(1, 9))


def directory(store: SqliteStore) -> list[tuple[str, str, bool]]:
    return store.conn.execute(
        "SELECT unit, name, moved_out IS NOT NULL FROM residents ORDER BY unit"
    ).fetchall()


def cli_import(cfg: Path, csv: Path, *flags: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["residents", "import", "--config", str(cfg), str(csv), *flags])
    return out.exit_code, out.output


@pytest.fixture
def eight(tmp_path: Path) -> tuple[Path, SqliteStore]:
    """A directory of eight residents, imported from the CLI."""
    cfg = tmp_path / "a.yaml"
    cfg.write_text("storage: {path: a.db}\n")
    (tmp_path / "all.csv").write_text(CSV_HEAD + EIGHT)
    assert cli_import(cfg, tmp_path / "all.csv")[0] == 0
    return cfg, SqliteStore(tmp_path / "a.db")


def test_a_file_refused_as_a_whole_changes_nothing(
    eight: tuple[Path, SqliteStore], tmp_path: Path
) -> None:
    """A missing column, an unclosed quote or a file of bad rows moved every resident
    out while importing nobody: the next fire texted no one."""
    cfg, store = eight
    before = directory(store)
    bad = tmp_path / "bad.csv"
    for text, said in [
        ("building,floor,unit,name\n3,1,101,X\n", "bad.csv:1: missing column(s): phone"),
        (
            CSV_HEAD + "3,1,101,Resident 1,13800000001,zh,no,\n"
            '3,2,201,"Resident 2,13800000002,zh,no,\n' + EIGHT,
            'bad.csv:3: residents file refused: a quote (") opened on this line never closes',
        ),
        (CSV_HEAD + "3,1,101,X,12345,zh,no,\n", "residents file refused: no usable row"),
        (CSV_HEAD, "residents file refused: no rows under the header"),
    ]:
        bad.write_text(text)
        code, output = cli_import(cfg, bad, "--allow-removals")
        assert code == 1, output
        assert said in output
        assert "nothing was changed" in output
        assert directory(store) == before


def test_moving_out_more_than_a_small_share_needs_a_confirmation(
    eight: tuple[Path, SqliteStore], tmp_path: Path
) -> None:
    """A one-row file moved the other seven out with no warning."""
    cfg, store = eight
    one = tmp_path / "one.csv"
    one.write_text(CSV_HEAD + "3,1,101,Resident 1,13800000001,zh,no,\n")
    code, output = cli_import(cfg, one, "--dry-run")
    assert code == 0
    assert "0 added, 0 changed, 1 unchanged, 7 moved out of 8" in output
    code, output = cli_import(cfg, one)
    assert code == 1
    assert "would move out 7 of the 8 residents (88%)" in output
    assert "--allow-removals" in output
    assert all(not gone for _, _, gone in directory(store))
    code, output = cli_import(cfg, one, "--allow-removals")
    assert code == 0, output
    assert sum(gone for _, _, gone in directory(store)) == 7
    # one resident less is a move, not a mistake: no confirmation
    (tmp_path / "seven.csv").write_text(CSV_HEAD + EIGHT.split("\n", 1)[1])
    assert cli_import(cfg, tmp_path / "all.csv", "--allow-removals")[0] == 0
    code, output = cli_import(cfg, tmp_path / "seven.csv")
    assert code == 0, output
    assert "1 moved out of 8" in output


def test_excel_files_of_every_locale_are_read(
    eight: tuple[Path, SqliteStore], tmp_path: Path
) -> None:
    """Semicolons (Excel where the decimal point is a comma), GBK (Excel's "CSV" on
    Chinese Windows), UTF-8 with a BOM, UTF-16 tab-separated ("Unicode text")."""
    cfg, store = eight
    rows = CSV_HEAD + EIGHT.replace("Resident 3", "张秀兰")
    for name, data in [
        ("semicolons.csv", rows.replace(",", ";").encode()),
        ("gbk.csv", rows.encode("gbk")),
        ("bom.csv", rows.encode("utf-8-sig")),
        ("unicode.txt", rows.replace(",", "\t").encode("utf-16")),
    ]:
        (tmp_path / name).write_bytes(data)
        code, output = cli_import(cfg, tmp_path / name)
        assert code == 0, (name, output)
        assert "0 added, 1 changed, 7 unchanged, 0 moved out of 8" in output or (
            "0 added, 0 changed, 8 unchanged" in output
        ), (name, output)
        assert ("301", "张秀兰", False) in directory(store), name


def test_a_skipped_row_moves_nobody_out_and_a_shared_phone_is_said(
    eight: tuple[Path, SqliteStore], tmp_path: Path
) -> None:
    cfg, store = eight
    typo = tmp_path / "typo.csv"
    typo.write_text(
        CSV_HEAD
        + EIGHT.replace("13800000002", "1380000000")  # a digit lost: row 3 skipped
        + "3,9,901,Resident 9,13800000001,zh,no,\n"  # the same phone as unit 101
    )
    code, output = cli_import(cfg, typo)
    assert code == 1  # a row was skipped, and said so
    assert f"{typo}:3: row skipped" in output
    assert f"warning: {typo}:10: the same phone as line 2 (building 3, unit 101)" in output
    assert "1 added, 0 changed, 7 unchanged, 0 moved out of 8" in output
    assert ("201", "Resident 2", False) in directory(store)


def test_the_console_door_check_list_names_only_the_incident_site_s_residents(
    store: Events,
) -> None:
    """Two estates both have a building 7: the duty desk of a fire at one is never sent
    to the other's flats."""
    from alertd.console.roles import Role
    from alertd.console.views import door_checks
    from alertd.directory.residents import Resident

    import_residents(
        store.conn,
        [
            Resident("7", "3", "0301", "Zhang Xiulan", "+8613800000301", "zh", True, "alone", "hv"),
            Resident(
                "7", "3", "0302", "Other Estate", "+8613800000302", "zh", True, "wheelchair", "pine"
            ),
        ],
        datetime.now(UTC),
    )
    incident = {"id": 1, "site": "hv", "building": "7", "floor": "3"}
    listed = door_checks(store.conn, incident, Role.DUTY)
    assert [(r["unit"], r["name"]) for r in listed] == [("0301", "Zhang Xiulan")]


def test_the_directory_answers_the_same_on_either_engine(store: Events) -> None:
    """Every question the directory is asked, with floors as people write them ("B1",
    "12A") and residents of two sites."""
    from alertd.directory.residents import Resident
    from alertd.store import directory as db

    people = [
        Resident("7", "12A", "12A01", "A", "+8613800000001", "zh", True, "alone", "hv"),
        Resident("7", "3", "0301", "B", "+8613800000002", "en", False, "", "hv"),
        Resident("7", "B1", "B101", "C", "+8613800000003", "zh", True, "", "hv"),
        Resident("7", "3", "0302", "D", "+8613800000004", "zh", True, "", "pine"),
    ]
    assert db.import_residents(store.conn, people, datetime.now(UTC)) == (4, 0, 0)
    assert [r["unit"] for r in db.listing(store.conn, sites=["hv"])] == ["B101", "0301", "12A01"]
    assert [r["unit"] for r in db.vulnerable(store.conn, "hv", "7")] == ["B101", "12A01"]
    assert db.counts_by_site(store.conn) == {"hv": 3, "pine": 1}
    assert db.known_units(store.conn, "hv", "7", ["0301", "0302"]) == {"0301"}
    assert [r[1] for r in db.textable(store.conn, "hv", building="7", floor="3")] == [
        "+8613800000002"
    ]
    assert db.set_opt_out(store.conn, "+8613800000002", True) == 1
    db.flag_unreachable(store.conn, "+8613800000003", "invalid number (Twilio 21211)")
    assert [r[1] for r in db.textable(store.conn, "hv")] == ["+8613800000001"]
    assert [r["unit"] for r in db.listing(store.conn, flagged=True)] == ["B101", "0301"]
    assert db.clear_undeliverable(store.conn, "+8613800000003") == 1
    assert db.by_phone(store.conn, "+8613800000004") == {
        "site": "pine", "building": "7", "floor": "3", "unit": "0302", "name": "D",
        "notes": "", "vulnerable": "1", "phone": "+8613800000004",
    }  # fmt: skip
    assert sorted(k[2] for k in db.active_keys(store.conn, ["hv"])) == ["0301", "12A01", "B101"]
    (first,) = db.listing(store.conn, sites=["pine"])
    assert db.phone_of(store.conn, first["id"]) == ("+8613800000004", "7-0302", "pine")
