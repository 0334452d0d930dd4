"""Accounts, sessions, the audit trail and the analytics on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.console import accounts, analytics
from alertd.console.audit import Actor, record
from alertd.console.roles import Role
from alertd.console.throttle import PER_ACCOUNT, Throttle
from alertd.store import Conn
from alertd.store.accounts import audit as rows
from alertd.store.events import Events

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def conn(store: Events) -> Conn:
    """Each test that takes it runs on SQLite and on PostgreSQL."""
    return store.conn


def test_passwords_are_argon2_hashes_and_a_wrong_one_or_a_disabled_account_signs_nobody_in(
    conn: Conn,
) -> None:
    accounts.add_user(conn, "desk", Role.DUTY, "Wang", PASSWORD, NOW)
    (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert accounts.verify(conn, "desk", PASSWORD) is not None
    assert accounts.verify(conn, "desk", PASSWORD + "!") is None
    assert accounts.verify(conn, "nobody", PASSWORD) is None
    accounts.set_disabled(conn, "desk", True, NOW)
    assert accounts.verify(conn, "desk", PASSWORD) is None


def test_short_passwords_and_twice_the_same_name_are_refused_with_a_reason(
    conn: Conn,
) -> None:
    with pytest.raises(accounts.AccountError, match="at least 10 characters"):
        accounts.add_user(conn, "desk", Role.DUTY, "Wang", "short", NOW)
    accounts.add_user(conn, "desk", Role.DUTY, "Wang", PASSWORD, NOW)
    with pytest.raises(accounts.AccountError, match="already an account 'desk'"):
        accounts.add_user(conn, "desk", Role.VIEWER, "", PASSWORD, NOW)
    with pytest.raises(accounts.AccountError, match=r"no account 'dsek' \(accounts: desk\)"):
        accounts.set_disabled(conn, "dsek", True, NOW)


def test_a_session_expires_and_ends_when_the_account_is_disabled_or_its_password_reset(
    conn: Conn,
) -> None:
    user = accounts.add_user(conn, "desk", Role.DUTY, "Wang", PASSWORD, NOW)
    token = accounts.open_session(conn, user, "10.0.0.5", NOW)
    assert token not in str(conn.execute("SELECT * FROM web_sessions").fetchall())
    live = accounts.session(conn, token, NOW + timedelta(hours=11))
    assert live is not None
    assert live.user.staff == "Wang"
    assert accounts.session(conn, token, NOW + accounts.SESSION_TTL) is None
    assert accounts.session(conn, "forged", NOW) is None
    accounts.reset_password(conn, "desk", PASSWORD + " 2", NOW)
    assert accounts.session(conn, token, NOW) is None
    token = accounts.open_session(conn, user, "10.0.0.5", NOW)
    accounts.set_disabled(conn, "desk", True, NOW)
    assert accounts.session(conn, token, NOW) is None


def test_the_audit_trail_is_append_only(conn: Conn) -> None:
    record(conn, Actor("Wang", "web", "10.0.0.5", "account desk"), "ack", "done", NOW, 12)
    with pytest.raises(Exception, match="append-only"):
        conn.execute("UPDATE audit SET who = 'Li'")
    with pytest.raises(Exception, match="append-only"):
        conn.execute("DELETE FROM audit")
    (row,) = rows(conn, incident=12)
    assert (row["who"], row["via"], row["remote"], row["action"]) == (
        "Wang",
        "web",
        "10.0.0.5",
        "ack",
    )


def test_sign_in_attempts_are_limited_per_account_and_address() -> None:
    throttle = Throttle()
    for _ in range(PER_ACCOUNT):
        assert throttle.wait("10.0.0.5", "desk", NOW) is None
        throttle.failed("10.0.0.5", "desk", NOW)
    wait = throttle.wait("10.0.0.5", "desk", NOW)
    assert wait is not None
    assert wait > timedelta(minutes=14)
    assert throttle.wait("10.0.0.6", "desk", NOW) is None  # another desk is not locked out
    assert throttle.wait("10.0.0.5", "desk", NOW + timedelta(minutes=16)) is None


def _incident(conn: Conn, n: int, playbook: str, opened: datetime, **kw: object) -> None:
    row = {
        "id": n, "playbook": playbook, "key": str(n), "status": "closed", "severity": "major",
        "site": "HV", "building": kw.pop("building", "3"), "floor": "12", "unit": "1203",
        "zone": "", "title": "t", "opened_at": opened.isoformat(),
        "last_event_at": opened.isoformat(),
        "active": "[]", "units": "[]", "run": "{}", "drill": kw.pop("drill", 0), **kw,
    }  # fmt: skip
    conn.execute(
        f"INSERT INTO incidents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )


def test_analytics_count_in_the_sites_time_and_measure_response_times(
    conn: Conn,
) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 11, 1, tzinfo=tz).astimezone(UTC)
    # 30 Nov 23:30 in Shanghai is still November there (15:30 UTC)
    late = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)
    for n in range(1, 11):
        opened = start + timedelta(days=n)
        _incident(
            conn, n, "water-leak", opened,
            acknowledged_at=(opened + timedelta(minutes=n)).isoformat(),
            resolved_at=(opened + timedelta(minutes=10 * n)).isoformat(),
        )  # fmt: skip
        if n <= 3:  # three technicians on site within 30 minutes, one after
            on_site = opened + timedelta(minutes=20 if n < 3 else 45)
            conn.execute(
                "INSERT INTO timeline (incident_id, at, type, actor, text) "
                "VALUES (?, ?, 'on_site', 'Sun', '')",
                (n, on_site.isoformat()),
            )
    _incident(conn, 11, "fire-alarm", late, building="5")
    _incident(conn, 12, "fire-alarm", late, drill=1, acknowledged_at=late.isoformat())
    period = analytics.Period(start, datetime(2026, 12, 1, tzinfo=tz).astimezone(UTC))
    tables = analytics.analyse(conn, period, tz, {"water-leak"}, {"fire-alarm": 120})
    assert tables["by_kind"].rows == [["water-leak", 10], ["fire-alarm", 1]]  # no drill
    assert tables["by_month"].rows == [["2026-11", 11]]
    assert dict(tables["by_hour"].rows)["23"] == 1
    ack, resolve = tables["response"].rows
    assert ack == ["acknowledge", 10, "5.5", "9.0"]  # mean of 1..10 min, p90 = 9 min
    assert resolve == ["resolve", 10, "55.0", "90.0"]
    assert tables["leaks_on_site"].rows == [[10, 2, "20"]]
    (drill,) = tables["drills"].rows
    assert drill[4:7] == ["0.0", "2.0", "✓"]  # acknowledged at once, within its 2 min
    only_5 = analytics.Period(period.start, period.end, "5")
    assert analytics.analyse(conn, only_5, tz, set(), {})["by_kind"].rows == [["fire-alarm", 1]]


def test_users_from_the_cli_name_a_staff_member_and_are_audited(tmp_path: Path) -> None:
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Wang: {phone: '+8613900000001', roles: [security]}\n"
    )
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    config = tmp_path / "alertd.yaml"
    config.write_text("storage: {path: alertd.db}\ndevices: devices.csv\nstaff: staff.yaml\n")

    def run(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alertd", *args, "--config", str(config)],
            input=password + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip

    typo = run("users", "add", "desk", "--role", "duty", "--staff", "Wnag", "--password-stdin")
    assert typo.returncode == 2
    assert "'Wnag' is not in" in typo.stderr
    assert "people: Wang" in typo.stderr
    nobody = run("users", "add", "desk", "--role", "duty", "--password-stdin")
    assert "a duty account acts as a staff member" in nobody.stderr
    ok = run("users", "add", "desk", "--role", "duty", "--staff", "Wang", "--password-stdin")
    assert ok.returncode == 0, ok.stderr
    assert run("users", "disable", "desk").returncode == 0
    listed = run("users", "list")
    assert "desk" in listed.stdout
    assert "DISABLED" in listed.stdout
    assert run("residents", "list", "--show-phones").returncode == 0
    trail = run("audit")
    assert "reveal_phones residents list --show-phones" in trail.stdout
    assert "via cli" in trail.stdout
    assert "user_add" in trail.stdout
    assert "user_disable desk" in trail.stdout


def test_the_daemons_files_are_read_again_only_when_they_change(tmp_path: Path) -> None:
    from alertd.console.files import Reread

    path = tmp_path / "staff.yaml"
    path.write_text("one")
    reads: list[str] = []

    def load(p: Path) -> str:
        text = p.read_text()
        reads.append(text)
        if text == "broken":
            raise ValueError("staff.yaml:1: broken")
        return text

    files = Reread()
    assert files.get(path, load) == "one"
    assert files.get(path, load) == "one"
    assert reads == ["one"]
    path.write_text("broken")
    for _ in range(2):  # a broken file says so on every page, it is not kept
        with pytest.raises(ValueError, match=r"staff\.yaml:1"):
            files.get(path, load)
    path.write_text("two!")
    assert files.get(path, load) == "two!"
    assert reads == ["one", "broken", "broken", "two!"]


@pytest.mark.parametrize(
    "asked",
    [
        "//evil.example/x",
        "/%09/evil.example/x".replace("%09", "\t"),
        "/\t/evil.example/phish",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "\\\\evil.example",
        "/\\evil.example",
        "\\/evil.example",
        " //evil.example",
        "\x00//evil.example",
        "/\x01/evil.example",
        "https://evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
    ],
)
def test_going_back_never_leaves_the_console(asked: str) -> None:
    """`next` and `back` as a browser reads them: tabs and newlines dropped anywhere,
    controls and spaces at the ends, backslashes as slashes (the known bypasses)."""
    from alertd.console.web import local_path

    assert local_path(asked) == "/"


def test_going_back_keeps_a_path_of_the_console() -> None:
    from alertd.console.web import local_path

    assert local_path("/incidents/12?lang=en#timeline") == "/incidents/12?lang=en#timeline"
    assert local_path("/analytics") == "/analytics"
