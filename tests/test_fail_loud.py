"""Running unattended: the store is private, one daemon per store, commands that only
read need no secrets and fail in one line; the daemon as its own process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from alertd.store import SqliteStore
from tests.broker import Broker
from tests.helpers import alertd, start_daemon
from tests.mqtt_tools import Publisher, until, write_config

ROOT = Path(__file__).resolve().parent.parent


def start_with_secret(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """The daemon, with the Twilio token its configuration asks the environment for."""
    os.environ["TWILIO_AUTH_TOKEN"] = "secret"
    try:
        return start_daemon(config, log)
    finally:
        del os.environ["TWILIO_AUTH_TOKEN"]


def write(tmp_path: Path, broker: Broker, name: str) -> Path:
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\nleak,zigbee2mqtt,zigbee2mqtt/leak,3,1,103\n"
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: {broker.port}, client_id: {name}}}\n"
        "storage: {path: var/alertd.db}\ndevices: devices.csv\n"
        "twilio: {account_sid: AC00000000000000000000000000000000, "
        "auth_token: '${TWILIO_AUTH_TOKEN}', from_number: '+15005550006'}\n"
    )
    return config


def test_the_store_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: files would be 0644
    try:
        store = SqliteStore(tmp_path / "alertd.db")
        store.conn.execute("CREATE TABLE x (y)")
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files] == ["alertd.db", "alertd.db-shm", "alertd.db-wal"]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
        store.close()
        (tmp_path / "alertd.db").chmod(0o644)  # an older store: tightened when opened
        SqliteStore(tmp_path / "alertd.db").close()
        assert stat.S_IMODE((tmp_path / "alertd.db").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_sqlite_too_old_for_the_store_is_said_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store writes a commit's rows a statement a table with SQLite's JSON functions,
    UPDATE ... FROM and RETURNING: a Python built with an older SQLite is refused when
    the store opens, by name, not with a syntax error at the first alarm. (The version is
    the one thing here that cannot be had for real: this machine's SQLite is newer.)"""
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(
        sqlite3.NotSupportedError, match=r"needs SQLite 3\.35\.0 or newer.*3\.31\.1"
    ):
        SqliteStore(tmp_path / "alertd.db")
    assert not (tmp_path / "alertd.db").exists()


def test_a_sqlite_built_for_too_few_parameters_is_said_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's rows are one statement's parameters, up to SQLite's default limit: a
    build with a lower one is refused when the store opens, not at the first storm. (As
    above, a build like that cannot be had here: the limit asked for is raised instead.)"""
    import sqlite3

    from alertd.store import sqlite as store_sqlite

    monkeypatch.setattr(store_sqlite, "MAX_PARAMETERS", 10**9)
    with pytest.raises(
        sqlite3.NotSupportedError, match=r"1,000,000,000 parameters a statement.*built for [\d,]+"
    ):
        SqliteStore(tmp_path / "alertd.db")
    assert not (tmp_path / "alertd.db").exists()


def test_a_daemon_whose_store_cannot_be_opened_says_so_in_one_line(tmp_path: Path) -> None:
    """`alertd run` on a store that is not a database (or needs a newer SQLite): one line
    naming the store and why, exit 2; it was a traceback."""
    store = tmp_path / "var" / "alertd.db"
    store.parent.mkdir()
    store.write_bytes(b"this is not a database" * 100)
    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: 1}}\nstorage: {{path: {store}}}\n"
        f"devices: {ROOT / 'config' / 'devices.example.csv'}\nplaybooks: {ROOT / 'playbooks'}\n"
    )
    run = alertd("run", "--config", str(config))
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == (
        f"error: cannot open the store at {store}: file is not a database"
    )
    assert "Traceback" not in run.stderr


async def test_a_second_daemon_on_the_same_store_refuses_and_the_first_keeps_working(
    tmp_path: Path, broker: Broker
) -> None:
    config = write(tmp_path, broker, "only-one")
    env = {**os.environ, "TWILIO_AUTH_TOKEN": "secret"}
    log = tmp_path / "first.log"
    first = start_with_secret(config, log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        second = await asyncio.to_thread(alertd, "run", "--config", str(config), env=env)
        assert second.returncode == 1
        assert (
            f"another alertd runs on {tmp_path / 'var' / 'alertd.db'} (pid {first.pid})"
            in second.stderr
        )
        assert first.poll() is None
        pub = Publisher(broker, "only-one-pub")
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/leak", '{"water_leak": true}')
        pub.close()
        events = lambda: alertd("events", "--config", str(config)).stdout  # noqa: E731
        await until(lambda: "leak" in events(), 20)
        assert log.read_bytes().count(b"connected to MQTT") == 1  # no session fight
    finally:
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 20)
    for part in ("alertd.db", "alertd.db.lock"):
        mode = stat.S_IMODE((tmp_path / "var" / part).stat().st_mode)
        assert mode & 0o077 == 0, part


def test_commands_that_only_read_need_no_secrets_and_fail_in_one_line(
    tmp_path: Path, broker: Broker
) -> None:
    config = write(tmp_path, broker, "readers")
    env = {k: v for k, v in os.environ.items() if k != "TWILIO_AUTH_TOKEN"}
    missing = alertd("incidents", "list", "--config", str(config), env=env)
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == f"error: no store at {tmp_path / 'var' / 'alertd.db'} (has alertd run yet?)"
    )
    SqliteStore(tmp_path / "var" / "alertd.db").close()
    for command in (
        ["incidents", "list"],
        ["events"],
        ["dead-letters"],
        ["residents", "list"],
        ["outbox"],
    ):
        result = alertd(*command, "--config", str(config), env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
    # the daemon and `check` do need the secret, and say which one
    check = alertd("check", "--config", str(config), env=env)
    assert check.returncode == 2
    assert "environment variable TWILIO_AUTH_TOKEN is not set" in check.stderr
    # a store that is not a database: one line, no traceback
    (tmp_path / "var" / "alertd.db").write_bytes(b"this is not a database" * 100)
    for name in ("alertd.db-wal", "alertd.db-shm"):
        (tmp_path / "var" / name).unlink(missing_ok=True)
    broken = alertd("incidents", "list", "--config", str(config), env=env)
    assert broken.returncode == 2
    assert broken.stderr.startswith(
        f"error: cannot read the store at {tmp_path / 'var' / 'alertd.db'}"
    )
    assert len(broken.stderr.strip().splitlines()) == 1


def test_check_finds_a_broken_staff_file_unknown_people_and_roles_and_on_call_gaps(
    tmp_path: Path,
) -> None:
    from tests.test_playbooks import SHIPPED

    books = tmp_path / "playbooks"
    books.mkdir()
    for source in SHIPPED.glob("*.yaml"):
        (books / source.name).write_text(source.read_text())
    (books / "gas.yaml").write_text(
        "name: gas-desk\nmatch: {kinds: [gas]}\nsteps:\n"
        "  - notify: {person: Wang Qaing}\n    template: t\n"
        "  - notify: {role: engineer}\n    template: t\n"
        "templates:\n  t: {zh: '#{{ incident }} {{ location }}',\n"
        "      en: '#{{ incident }} {{ location }}'}\n"
    )
    (tmp_path / "devices.csv").write_text("device_id,profile,topic,building\n")
    (tmp_path / "alertd.yaml").write_text(
        "site: {timezone: Asia/Shanghai}\ndevices: devices.csv\nplaybooks: playbooks\n"
        "staff: staff.yaml\n"
    )
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Wang Qiang: {phone: '+8613900000002',\n"
        "    roles: [security, maintenance, supervisor]\n"  # the closing } is missing
    )
    broken = alertd("check", "--config", str(tmp_path / "alertd.yaml"))
    assert broken.returncode == 1
    assert f"{tmp_path / 'staff.yaml'}:4: invalid YAML: expected ',' or '}}'" in broken.stderr
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Wang Qiang: {phone: '+8613900000002',\n"
        "    roles: [security, maintenance, supervisor]}\n"
        "oncall:\n  security:\n    - {who: Wang Qiang, days: [mon, tue, wed, thu, fri],\n"
        "       start: '08:00', end: '20:00'}\n"
        "  maintenance:\n    - {who: Wang Qiang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang Qiang, start: '12:00', end: '00:00'}\n"
    )
    found = alertd("check", "--config", str(tmp_path / "alertd.yaml"))
    assert found.returncode == 1
    err = found.stderr
    assert f"{books / 'gas.yaml'}:4 steps.0.notify: notifies 'Wang Qaing', who is not in" in err
    assert (
        f"{books / 'gas.yaml'}:6 steps.1.notify: notifies role 'engineer', which nobody in" in err
    )
    assert f"{books / 'fire_alarm.yaml'}" in err
    assert "nobody is on call for 'security' in the next 7 days at" in err
    assert "'maintenance' in the next 7 days" not in err  # covered round the clock


def test_a_life_safety_step_with_nobody_to_tell_falls_back_to_the_duty_desk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import timedelta

    from alertd.directory.staff import Person, Staff
    from tests.helpers import expand_now
    from tests.test_incident_rules import T0, TZ, Desk

    desk = Desk()
    (opened,) = desk.event(device="smoke-1")  # calls and texts oncall:security
    store = SqliteStore(tmp_path / "alertd.db")
    from alertd.store import incidents as incidents_db

    incidents_db.save(store.conn, [opened], T0, incidents_db.Done())
    staff = Staff(
        {"Mark": Person(phone="+8613900000005", roles=["front_desk"], language="en")}, {}, [], TZ
    )
    with caplog.at_level(logging.ERROR):
        expand_now(store.conn, staff, T0, timedelta(hours=1))
    to_mark = store.conn.execute(
        "SELECT channel FROM messages WHERE recipient = '+8613900000005' ORDER BY id"
    ).fetchall()
    assert to_mark == [("call",), ("sms",)]  # the call and the door-check list
    lines = [
        t for (t,) in store.conn.execute("SELECT text FROM timeline WHERE type = 'no_recipients'")
    ]
    assert lines[0] == "no recipients for call to oncall:security: sent to role front_desk"
    assert any(
        "no recipients for call to oncall:security" in r.getMessage() for r in caplog.records
    )
    assert all(
        r.levelno == logging.ERROR for r in caplog.records if "no recipients" in r.getMessage()
    )
    from alertd.store.incidents import fallbacks_since

    store = SqliteStore(tmp_path / "alertd.db")
    count, latest = fallbacks_since(store.conn, T0 - timedelta(days=1))
    store.close()
    assert count == 2  # the call and the door-check list: health shows them for a day
    assert "sent to role front_desk" in latest


STAFF_ALL_DAY = (
    "people:\n  Sun: {phone: '+8613900000004', roles: [security, maintenance, supervisor]}\n"
    "oncall:\n  security:\n    - {who: Sun, start: '00:00', end: '12:00'}\n"
    "    - {who: Sun, start: '12:00', end: '00:00'}\n"
    "  maintenance:\n    - {who: Sun, start: '00:00', end: '12:00'}\n"
    "    - {who: Sun, start: '12:00', end: '00:00'}\n"
)


async def test_health_metrics_and_status_say_what_is_wrong(
    tmp_path: Path, own_broker: Broker
) -> None:
    import aiohttp

    from tests.broker import free_port
    from tests.fake_twilio import Failure, FakeTwilio

    fake = await FakeTwilio().start()
    port = free_port()
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\nleak,zigbee2mqtt,zigbee2mqtt/leak,3,1,103\n"
    )
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Sun: {phone: '+8613900000004', roles: [maintenance, supervisor]}\n"
        "oncall:\n  maintenance:\n    - {who: Sun, start: '00:00', end: '12:00'}\n"
        "    - {who: Sun, start: '12:00', end: '00:00'}\n"
    )
    from tests.test_playbooks import SHIPPED

    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: {own_broker.port}, client_id: health, reconnect_max_s: 0.5}}\n"
        f"storage: {{path: alertd.db}}\ndevices: devices.csv\nplaybooks: {SHIPPED}\n"
        "staff: staff.yaml\ndelivery: {fallback_role: supervisor}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, from_number: '+15005550006', "
        f"api_base_url: '{fake.base_url}'}}\n"
        f"http: {{host: 127.0.0.1, port: {port}}}\n"
    )
    url = f"http://127.0.0.1:{port}"

    async def get(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(url + path) as response:
            return response.status, await response.text()

    async def status() -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(alertd, "status", "--config", str(config))

    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await until(lambda: b"health, metrics" in log.read_bytes(), 10)
        code, body = await get("/healthz")
        assert (code, json.loads(body)["status"]) == (503, "degraded")
        assert json.loads(body)["problems"] == [
            "on call security: nobody on call now for 'security': life-safety steps go to "
            "nobody holds it: the fallback role 'supervisor'"
        ]
        (tmp_path / "staff.yaml").write_text(STAFF_ALL_DAY)
        daemon.send_signal(signal.SIGTERM)  # (reloading the staff file comes with SIGHUP)
        await asyncio.to_thread(daemon.wait, 20)
        daemon = start_daemon(config, log)
        await until(lambda: log.read_bytes().count(b"health, metrics") == 2, 30)
        await until(lambda: '"status": "ok"' in _health(url), 10)
        assert (await status()).returncode == 0
        # the provider refuses the account: the SMS lane stops, health says so
        fake.storm = Failure(401, code=20003)
        pub = Publisher(own_broker, "health-pub")
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/leak", '{"water_leak": true}')
        pub.close()
        await until(lambda: "lane sms: authentication" in _health(url), 20)
        code, body = await get("/healthz")
        answer = json.loads(body)
        assert (code, answer["status"]) == (503, "failing")
        assert any(p.startswith("lane sms: authentication failed") for p in answer["problems"])
        told = await status()
        assert told.returncode == 1
        assert "lane sms" in told.stdout
        assert "failing" in told.stdout
        _, metrics = await get("/metrics")
        for name in (
            "alertd_events_committed_total 1.0",
            "alertd_mqtt_connected 1.0",
            'alertd_delivery_lane_up{channel="sms"} 0.0',
            'alertd_outbox_messages{channel="sms",status="pending"}',
            "alertd_ingest_queue_depth",
            "alertd_dead_letters_total",
            "alertd_ingest_dropped_total",
            "alertd_commit_seconds_count",
        ):
            assert name in metrics, name
        # the broker goes away: MQTT is down, and the rest still answers
        own_broker.stop()
        await until(lambda: "mqtt: not connected" in _health(url), 20)
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)
        await fake.close()
    assert (await status()).returncode == 3


def _health(url: str) -> str:
    """/healthz's body, whatever its status (the daemon is another process)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


async def test_sighup_reloads_and_a_broken_file_keeps_the_one_in_force(
    tmp_path: Path, broker: Broker
) -> None:
    from tests.broker import free_port
    from tests.test_playbooks import SHIPPED

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "staff.yaml").write_text(STAFF_ALL_DAY)
    config = write_config(
        tmp_path,
        broker,
        "device_id,profile,topic,building\nleak-1,zigbee2mqtt,zigbee2mqtt/leak_1,3\n",
        client_id="reload",
        extra=f"playbooks: {SHIPPED}\nstaff: staff.yaml\nhttp: {{host: 127.0.0.1, port: {port}}}\n",
    )
    devices = tmp_path / "devices.csv"
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)

    def events() -> str:
        return alertd("events", "--config", str(config)).stdout

    try:
        await until(lambda: b"health, metrics" in log.read_bytes(), 30)
        await until(lambda: '"status": "ok"' in _health(url), 10)
        # a device added to the file: after SIGHUP its topic is heard, no restart
        devices.write_text(devices.read_text() + "leak-2,zigbee2mqtt,zigbee2mqtt/leak_2,5\n")
        daemon.send_signal(signal.SIGHUP)
        await until(lambda: b"reload: done" in log.read_bytes(), 10)
        pub = Publisher(broker, "reload-pub")
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/leak_2", '{"water_leak": true}')
        await until(lambda: "leak-2" in events(), 20)
        # a staff file with a typo: the old one stays in force, the error is shown
        (tmp_path / "staff.yaml").write_text("people:\n  Sun: {phone: '+8613900000004'\n")
        daemon.send_signal(signal.SIGHUP)
        await until(lambda: b"staff file not reloaded" in log.read_bytes(), 10)
        answer = json.loads(_health(url))
        assert answer["status"] == "degraded"
        assert any(
            "staff file not reloaded" in p and "staff.yaml:3" in p for p in answer["problems"]
        )
        assert '"name": "staff"' not in _health(url)  # the one in force is still loaded
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/leak_1", '{"water_leak": true}')
        await until(lambda: "leak-1" in events(), 20)  # and everything else runs
        pub.close()
        (tmp_path / "staff.yaml").write_text(STAFF_ALL_DAY)
        daemon.send_signal(signal.SIGHUP)
        await until(lambda: log.read_bytes().count(b"reload: done") == 2, 10)
        assert json.loads(_health(url))["status"] == "ok"
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)


def test_a_secret_from_the_environment_in_the_wrong_field_is_never_echoed(tmp_path: Path) -> None:
    secret = "hunter2-super-secret-token"
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    config = tmp_path / "alertd.yaml"
    config.write_text(
        'mqtt: {port: "${MY_SECRET}", client_id: "${MY_SECRET}${MY_SECRET}${MY_SECRET}"}\n'
        'site: {timezone: "${MY_SECRET}"}\ndevices: devices.csv\n'
    )
    env = {**os.environ, "MY_SECRET": secret}
    result = alertd("check", "--config", str(config), env=env)
    assert result.returncode == 2
    assert f"{config}:1 mqtt.port: Input should be a valid integer" in result.stderr
    assert f"{config}:2 site.timezone: Value error, unknown time zone '***'" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


async def test_a_backup_while_the_daemon_writes_is_consistent_and_private(
    tmp_path: Path, broker: Broker
) -> None:
    import sqlite3

    config = write(tmp_path, broker, "backup")
    log = tmp_path / "alertd.log"
    daemon = start_with_secret(config, log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        pub = Publisher(broker, "backup-pub")
        writes = asyncio.create_task(
            asyncio.to_thread(
                pub.publish_all,
                [
                    ("zigbee2mqtt/leak", f'{{"water_leak": {str(n % 2 == 0).lower()}}}')
                    for n in range(400)
                ],
            )
        )
        copy = tmp_path / "backups" / "alertd-copy.db"
        made = await asyncio.to_thread(alertd, "backup", str(copy), "--config", str(config))
        await writes
        pub.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)
    assert made.returncode == 0, made.stderr
    assert "integrity ok" in made.stdout
    assert stat.S_IMODE(copy.stat().st_mode) & 0o077 == 0
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ids = [i for (i,) in conn.execute("SELECT id FROM events ORDER BY id")]
    conn.close()
    assert ids == list(range(1, len(ids) + 1))  # what was committed when it was taken, whole
    again = alertd("backup", str(copy), "--config", str(config))
    assert again.returncode == 1
    assert "exists" in again.stderr


def test_prune_never_deletes_an_incident_younger_than_the_retention(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from alertd.store.sql import iso
    from alertd.store.upkeep import prune

    store = SqliteStore(tmp_path / "alertd.db")
    now = datetime(2026, 11, 29, tzinfo=UTC)
    for number, age, status in ((1, 500, "closed"), (2, 380, "closed"), (3, 800, "open")):
        at = iso(now - timedelta(days=age))
        store.conn.execute(
            "INSERT INTO incidents (id, playbook, key, status, severity, site, building, floor, "
            "unit, zone, title, opened_at, last_event_at, resolved_at, active, units, run, "
            "drill) VALUES (?, 'p', 'k', ?, 'major', '', '3', '', '', '', 't', ?, ?, ?, '[]', "
            "'[]', '{}', 0)",
            (number, status, at, at, at if status == "closed" else None),
        )
        store.conn.execute(
            "INSERT INTO timeline (incident_id, at, type, actor, text) "
            "VALUES (?, ?, 'x', 'x', 'x')",
            (number, at),
        )
    counted = prune(store.conn, now, 400, 90, dry_run=True)
    assert counted.incidents == 1
    assert [r[0] for r in store.conn.execute("SELECT id FROM incidents ORDER BY id")] == [1, 2, 3]
    prune(store.conn, now, 400, 90)
    assert [r[0] for r in store.conn.execute("SELECT id FROM incidents ORDER BY id")] == [2, 3]
    assert [r[0] for r in store.conn.execute("SELECT incident_id FROM timeline")] == [2, 3]


def test_the_retention_cannot_be_set_below_a_year(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("storage: {keep_incidents_days: 30}\n")
    result = alertd("check", "--config", str(tmp_path / "a.yaml"))
    assert result.returncode == 2
    assert (
        "storage.keep_incidents_days: Input should be greater than or equal to 365" in result.stderr
    )


def test_the_systemd_unit_restarts_alertd_keeps_files_private_and_reloads_on_sighup() -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(Path(__file__).parent.parent / "config" / "alertd.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["UMask"] == "0077"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["NoNewPrivileges"] == "yes"
    assert "ExecStartPre" not in service  # nothing it finds may keep the daemon down


def test_json_logs_are_one_object_a_line_in_the_sites_zone() -> None:
    from zoneinfo import ZoneInfo

    from alertd.logs import JsonFormatter

    record = logging.LogRecord("alertd.x", logging.ERROR, "f", 1, "lane %s stopped", ("sms",), None)
    record.created = 1764374400.25  # 2025-11-29 00:00:00.250 UTC
    record.msecs = 250
    line = JsonFormatter(ZoneInfo("Asia/Shanghai"), "%(message)s").format(record)
    assert json.loads(line) == {
        "at": "2025-11-29 08:00:00.250 +08:00",
        "level": "ERROR",
        "logger": "alertd.x",
        "message": "lane sms stopped",
    }


async def test_a_full_store_fails_health_tells_the_desk_and_loses_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    from alertd.config import load_config
    from alertd.health import parts, summary
    from tests.fake_twilio import FakeTwilio
    from tests.mqtt_tools import Live
    from tests.test_playbooks import SHIPPED

    fake = await FakeTwilio().start()
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\nleak,zigbee2mqtt,zigbee2mqtt/leak,3,1,103\n"
    )
    (tmp_path / "staff.yaml").write_text(
        STAFF_ALL_DAY.replace(
            "[security, maintenance, supervisor]", "[security, maintenance, front_desk]"
        )
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: {broker.port}, client_id: full-{tmp_path.name[-8:]}}}\n"
        f"storage: {{path: alertd.db, synchronous: NORMAL}}\ndevices: devices.csv\n"
        f"playbooks: {SHIPPED}\nstaff: staff.yaml\ningest: {{tick_s: 0.05}}\n"
        "delivery: {poll_s: 0.05}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, from_number: '+15005550006', "
        f"api_base_url: '{fake.base_url}'}}\n"
    )
    sun = "+8613900000004"

    def texts() -> list[str]:
        return [r["form"]["Body"] for r in fake.sms() if r["form"]["To"] == sun]

    try:
        async with Live(load_config(config)) as live:
            daemon = live.daemon
            conn = daemon.writer.store.conn  # type: ignore[union-attr]

            def full(pages: int | None) -> None:  # SQLITE_FULL, as a full disk gives
                size = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {pages or size}")

            await daemon.writer.call(full, None)
            pub = Publisher(broker, "full-pub")
            await asyncio.to_thread(
                pub.publish_all,
                [
                    (
                        "zigbee2mqtt/leak",
                        f'{{"water_leak": {str(n % 2 == 0).lower()}, "note": "{"x" * 3000}"}}',
                    )
                    for n in range(50)
                ],
            )
            await until(lambda: daemon.ingest.store_error, 10)
            status, _ = summary(parts(daemon, daemon.clock.now()))
            assert status == "failing"
            await until(lambda: any("数据库无法写入" in t for t in texts()), 10)  # Sun reads zh
            assert not daemon.failed
            await daemon.writer.call(full, 1_000_000)  # space again
            await until(lambda: not daemon.ingest.store_error, 20)
            await live.seen.until(lambda evs: len(evs) >= 1)
            await until(lambda: any("漏水 #1" in t for t in texts()), 20)  # the leak went out
            await until(lambda: any("works again" in t or "已可写入" in t for t in texts()), 10)
            pub.close()
    finally:
        await fake.close()


def test_check_renders_every_template_with_a_sample_incident(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "leak.yaml").write_text(
        "name: typo\nmatch: {kinds: [leak]}\nsteps:\n  - sms: unit\n    template: t\n"
        "templates:\n  t:\n    zh: '{{ building }}号楼漏水'\n    en: 'Leak in {{ buidling }}'\n"
    )
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    (tmp_path / "a.yaml").write_text("devices: devices.csv\nplaybooks: playbooks\n")
    result = alertd("check", "--config", str(tmp_path / "a.yaml"))
    assert result.returncode == 1
    assert (
        f"{tmp_path / 'playbooks' / 'leak.yaml'}:9 templates.t.en: does not render with a "
        "sample incident: 'buidling' is undefined"
    ) in result.stderr
    assert "templates.t.zh" not in result.stderr


async def test_health_says_starting_until_every_subscription_is_confirmed(
    tmp_path: Path, own_broker: Broker
) -> None:
    """The HTTP port answered before the subscriptions were confirmed, so a tool waiting
    for health published into nothing: health says `starting` until they are."""
    from tests.broker import free_port

    port = free_port()
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\nleak,zigbee2mqtt,zigbee2mqtt/leak,3,1,103\n"
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: {own_broker.port}, client_id: starting, reconnect_max_s: 0.2}}\n"
        "storage: {path: alertd.db}\ndevices: devices.csv\n"
        f"http: {{host: 127.0.0.1, port: {port}}}\n"
    )
    url = f"http://127.0.0.1:{port}"
    own_broker.stop()  # the broker is not there yet when alertd starts
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await until(lambda: b"health, metrics" in log.read_bytes(), 30)
        answer = json.loads(_health(url))
        assert answer["status"] == "starting"
        assert "mqtt: connecting and subscribing to the broker" in answer["problems"]
        told = await asyncio.to_thread(alertd, "status", "--config", str(config))
        assert told.returncode == 1
        assert "alertd: starting" in told.stdout
        own_broker.start()
        await until(lambda: json.loads(_health(url))["status"] == "ok", 30)
        own_broker.stop()  # once it was up, a lost broker is a failure, not a start
        await until(lambda: json.loads(_health(url))["status"] == "failing", 30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)


async def test_metrics_count_messages_sent_delivered_and_failed_and_show_every_status(
    tmp_path: Path, broker: Broker
) -> None:
    """A dashboard of pending or failed SMS showed "no data" (no series at 0), and a sent
    SMS left `sent` as soon as its receipt came: counters that only go up say it."""
    from tests.broker import free_port
    from tests.fake_twilio import Failure, FakeTwilio
    from tests.test_playbooks import SHIPPED

    fake = await FakeTwilio(receipts_token="t").start()
    fake.always["+8613900000005"] = Failure(400, 21211)  # an invalid number: failed
    port = free_port()
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\nleak,zigbee2mqtt,zigbee2mqtt/mleak,3,1,103\n"
    )
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Sun: {phone: '+8613900000004', roles: [maintenance]}\n"
        "  Bad: {phone: '+8613900000005', roles: [maintenance]}\n"
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        f"mqtt: {{port: {broker.port}, client_id: metrics-{tmp_path.name[-8:]}}}\n"
        f"storage: {{path: alertd.db}}\ndevices: devices.csv\nplaybooks: {SHIPPED}\n"
        "staff: staff.yaml\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, from_number: '+15005550006', "
        f"api_base_url: '{fake.base_url}'}}\n"
        f"http: {{host: 127.0.0.1, port: {port}, public_url: 'http://127.0.0.1:{port}'}}\n"
    )
    url = f"http://127.0.0.1:{port}"

    def metrics() -> str:
        import urllib.request

        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await until(lambda: b"health, metrics" in log.read_bytes(), 30)
        mqtt_ok = {"name": "mqtt", "state": "ok", "detail": ""}
        await until(lambda: mqtt_ok in json.loads(_health(url))["parts"], 30)
        before = metrics()
        for status in ("pending", "sending", "sent", "delivered", "failed", "expired"):
            assert f'alertd_outbox_messages{{channel="sms",status="{status}"}} 0.0' in before
        assert 'alertd_messages_sent_total{channel="sms"} 0.0' in before
        pub = Publisher(broker, "metrics-pub")
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/mleak", '{"water_leak": true}')
        pub.close()
        await until(lambda: 'alertd_messages_delivered_total{channel="sms"} 1.0' in metrics())
        after = metrics()
        assert 'alertd_messages_sent_total{channel="sms"} 1.0' in after  # still, delivered
        assert 'alertd_messages_failed_total{channel="sms"} 1.0' in after
        assert 'alertd_outbox_messages{channel="sms",status="sent"} 0.0' in after
        assert 'alertd_outbox_messages{channel="sms",status="delivered"} 1.0' in after
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)
        await fake.close()


def test_an_http_port_already_taken_is_one_line_not_a_traceback(
    tmp_path: Path, broker: Broker
) -> None:
    """Two instances on one machine given the same `http.port` (a copied configuration):
    the second says which address is taken and exits 2, however far it had started."""
    import socket

    config = write(tmp_path, broker, "taken")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with config.open("a") as out:
            out.write(f"http: {{host: 127.0.0.1, port: {port}}}\n")
        done = alertd("run", "--config", str(config), env={**os.environ, "TWILIO_AUTH_TOKEN": "x"})
    assert done.returncode == 2, done.stderr
    assert f"error: http: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
