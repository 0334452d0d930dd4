"""Running unattended: the store is private, one daemon per store, commands that only
read need no secrets and fail in one line; the daemon as its own process."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from alertd.store import SqliteStore
from tests.broker import Broker
from tests.mqtt_tools import Publisher, until
from tests.test_delivery_crash import start


def alertd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )


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


async def test_a_second_daemon_on_the_same_store_refuses_and_the_first_keeps_working(
    tmp_path: Path, broker: Broker
) -> None:
    config = write(tmp_path, broker, "only-one")
    env = {**os.environ, "TWILIO_AUTH_TOKEN": "secret"}
    log = tmp_path / "first.log"
    os.environ["TWILIO_AUTH_TOKEN"] = "secret"
    try:
        first = start(config, log)
    finally:
        del os.environ["TWILIO_AUTH_TOKEN"]
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
