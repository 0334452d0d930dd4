"""alertd on PostgreSQL: the daemon runs on it, and a second instance stands by and takes
over when the active one dies (real processes, a real PostgreSQL server and Mosquitto,
the twilio SDK against the fake)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import psycopg

from alertd.config import load_config
from alertd.directory.residents import Resident
from alertd.store.directory import import_residents
from alertd.store.postgres import PgStore
from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import alertd, start_daemon, wait_for
from tests.mqtt_tools import Live, Publisher, publish, until
from tests.postgres import Cluster
from tests.proxy import FreezableProxy
from tests.test_playbooks import SHIPPED

SECURITY = "+8613900000001"


def write_site(
    tmp_path: Path,
    broker: Broker,
    fake: FakeTwilio,
    url: str,
    lease_s: float,
    delivery: str = "poll_s: 0.05",
) -> Path:
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\n"
        "smoke-1,zigbee2mqtt,zigbee2mqtt/hv/smoke_1,7,3,0301\n"
    )
    (tmp_path / "staff.yaml").write_text(
        f"people:\n  Wang: {{phone: '{SECURITY}', roles: [security]}}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        "site: {name: Harbour View, timezone: Asia/Shanghai}\n"
        f"mqtt: {{port: {broker.port}, client_id: failover-{tmp_path.name[-8:]}}}\n"
        f"storage: {{url: '{url}', lease_s: {lease_s}}}\n"
        f"devices: devices.csv\nstaff: staff.yaml\nplaybooks: {SHIPPED}\n"
        f"ingest: {{tick_s: 0.05}}\ndelivery: {{{delivery}}}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
    )
    return config


def security_texts(fake: FakeTwilio) -> list[str]:
    return [r["form"]["Body"] for r in fake.sms() if r["form"]["To"] == SECURITY]


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql.encode()).fetchall())


@dataclass
class Instance:
    """An `alertd run` process and its log."""

    proc: subprocess.Popen[bytes]
    log: Path


def instance(config: Path, log: Path) -> Instance:
    return Instance(start_daemon(config, log), log)


async def active_and_standby(config: Path, tmp_path: Path) -> tuple[Instance, Instance]:
    """Two `alertd run` on the same store: the first active (connected to the broker),
    the second standing by."""
    first = instance(config, tmp_path / "first.log")
    await asyncio.to_thread(
        wait_for, lambda: b"connected to MQTT" in first.log.read_bytes(), 30, "the first"
    )
    second = instance(config, tmp_path / "second.log")
    await asyncio.to_thread(
        wait_for, lambda: b"standing by" in second.log.read_bytes(), 30, "the standby"
    )
    return first, second


async def stop(*procs: Instance) -> None:
    for one in procs:
        if one.proc.poll() is None:
            one.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(one.proc.wait, 20)


async def test_a_fire_on_postgresql_reaches_security_and_is_stored_there(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    fake = await FakeTwilio().start()
    try:
        config = load_config(write_site(tmp_path, broker, fake, pg_url, 5))
        async with Live(config) as live:
            await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
            await live.seen.until(lambda evs: len(evs) == 1)
            await live.settled()
            await until(lambda: len(security_texts(fake)) == 1)
    finally:
        await fake.close()
    assert rows(pg_url, "SELECT kind, device_id FROM events") == [("fire.alarm", "smoke-1")]
    assert rows(pg_url, "SELECT site, status FROM incidents") == [("Harbour View", "open")]
    assert not (tmp_path / "var").exists()  # no SQLite file beside it


async def test_the_standby_takes_over_when_the_active_instance_is_killed(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """Two instances on one store: one active, one standing by (it does not even connect
    to the broker: the active one's MQTT session is not taken from it). kill -9 the
    active one, then a fire: the standby takes the service over within the lease and
    security is texted once, by it; one incident."""
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, pg_url, 2)
    first, second = await active_and_standby(config, tmp_path)
    try:
        assert b"connected to MQTT" not in second.log.read_bytes()
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        killed = time.monotonic()
        # published while nobody is active: the broker keeps it for the session
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: len(security_texts(fake)) >= 1, within=30)
        took = time.monotonic() - killed
        assert b"active:" in second.log.read_bytes()
        assert len(security_texts(fake)) == 1
        assert rows(pg_url, "SELECT count(*) FROM incidents") == [(1,)]
        assert rows(pg_url, "SELECT takeovers FROM site_leases WHERE site = '*'") == [(1,)]
        print(f"kill -9 of the active instance -> security's SMS by the standby: {took:.1f} s")
    finally:
        await stop(first, second)
        await fake.close()


async def test_a_daemon_that_cannot_reach_postgresql_says_so_and_keeps_trying(
    tmp_path: Path, broker: Broker
) -> None:
    fake = await FakeTwilio().start()
    nowhere = f"postgresql://alertd@127.0.0.1:{free_port()}/alertd"
    config = write_site(tmp_path, broker, fake, nowhere, 1)
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await asyncio.to_thread(
            wait_for,
            lambda: log.read_bytes().count(b"cannot reach the store for the service lease") >= 2,
            30,
            "the daemon to say it cannot reach the store, twice",
        )
        assert daemon.poll() is None  # it waits for the store, as for a broker
        assert not (tmp_path / "var").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        await fake.close()


async def test_an_active_instance_stopping_cleanly_hands_the_service_to_the_standby(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """A rolling restart's step: SIGTERM to the active one; the standby is handed the
    service at once, long before the (here 30 s) lease could run out, and answers the
    next fire."""
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, pg_url, 30)
    first, second = await active_and_standby(config, tmp_path)
    try:
        first.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.proc.wait, 20) == 0
        await asyncio.to_thread(
            wait_for, lambda: b"connected to MQTT" in second.log.read_bytes(), 15, "the takeover"
        )
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: len(security_texts(fake)) >= 1, within=15)
        assert rows(pg_url, "SELECT takeovers, handovers FROM site_leases") == [(0, 1)]
        assert b"lost the service lease" not in first.log.read_bytes()
    finally:
        await stop(first, second)
        await fake.close()


def health(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    """An instance's answer at `path`: (HTTP status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except urllib.error.URLError:  # between the standby's server and the active one's
        return 0, {"parts": []}


async def answers(check: Callable[[], bool], what: str, within: float = 20) -> None:
    """Until `check` holds (an instance's HTTP answers, the store's rows), asked from a
    thread: a blocking request or query on the test's loop would hold up the fake Twilio
    and the proxy it serves."""
    await asyncio.to_thread(wait_for, check, within, what)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


async def test_a_standby_answers_health_and_only_the_active_instance_says_active(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """A load balancer sends Twilio's callbacks where /active answers 200; monitoring
    sees the standby (503 "standby") and the active one's view: who stands by, and that
    nobody does once the other is gone."""
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, pg_url, 2)
    ports = free_port(), free_port()
    configs = []
    for n, port in enumerate(ports):
        own = tmp_path / f"alertd-{n}.yaml"
        own.write_text(config.read_text() + f"http: {{host: 127.0.0.1, port: {port}}}\n")
        configs.append(own)
    first = instance(configs[0], tmp_path / "first.log")
    second = None
    try:
        await asyncio.to_thread(
            wait_for, lambda: b"connected to MQTT" in first.log.read_bytes(), 30, "the first"
        )
        second = instance(configs[1], tmp_path / "second.log")
        await asyncio.to_thread(
            wait_for, lambda: b"standing by" in second.log.read_bytes(), 30, "the standby"
        )

        def cluster(port: int) -> dict[str, Any]:
            found = [p for p in health(port)[1]["parts"] if p["name"] == "cluster"]
            return found[0] if found else {"state": "", "detail": ""}

        await answers(lambda: "is active" in cluster(ports[1])["detail"], "the standby's view")
        code, body = health(ports[1])
        assert (code, body["status"]) == (503, "standby")
        assert health(ports[1], "/active")[0] == 503
        assert health(ports[0], "/active") == (200, {"instance": ANY, "active": True})
        standby_id = health(ports[1], "/active")[1]["instance"]
        await answers(lambda: standby_id in cluster(ports[0])["detail"], "the active's view")
        assert cluster(ports[0])["state"] == "ok"
        active_id = health(ports[0], "/active")[1]["instance"]
        assert f'alertd_cluster_active{{instance="{active_id}"}} 1.0' in metrics(ports[0])
        assert f'alertd_cluster_active{{instance="{standby_id}"}} 0.0' in metrics(ports[1])
        assert f'alertd_cluster_standbys{{instance="{active_id}"}} 1.0' in metrics(ports[0])
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        await answers(lambda: health(ports[1], "/active")[0] == 200, "the takeover", 20)
        await answers(lambda: cluster(ports[1])["state"] == "degraded", "no standby left")
        assert "no instance stands by" in cluster(ports[1])["detail"]
    finally:
        await stop(first, *([second] if second else []))
        await fake.close()


async def test_a_network_cut_to_postgresql_holds_the_alarm_tells_the_desk_and_loses_nothing(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """The store goes silent (its connections carry nothing, new ones are refused) for
    longer than the lease: the active instance acknowledges nothing it could not commit,
    its health fails, it texts the duty desk straight through the SMS sink, gives the
    service up and exits (its supervisor starts it again, as a standby that waits for the
    store). Back, the fire published during the cut is decided and sent, once."""
    parts = urllib.parse.urlsplit(pg_url)
    proxy = await FreezableProxy(parts.port or 5432).start()
    via_proxy = parts._replace(netloc=f"alertd@127.0.0.1:{proxy.port}").geturl()
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, via_proxy, 2)
    port = free_port()
    with config.open("a") as out:
        out.write(f"http: {{host: 127.0.0.1, port: {port}}}\n")
    first = instance(config, tmp_path / "first.log")
    again = None
    try:
        await asyncio.to_thread(
            wait_for, lambda: b"connected to MQTT" in first.log.read_bytes(), 30, "active"
        )
        proxy.cut()
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await answers(lambda: health(port)[1].get("status") == "failing", "health failing", 10)
        await until(lambda: any("PostgreSQL" in t for t in security_texts(fake)), within=20)
        assert await asyncio.to_thread(first.proc.wait, 40) == 1  # gave the service up
        assert not any("火警" in t or "FIRE" in t for t in security_texts(fake))
        again = instance(config, tmp_path / "again.log")  # as systemd restarts it
        await asyncio.to_thread(
            wait_for,
            lambda: b"cannot reach the store" in again.log.read_bytes(),
            30,
            "the restarted instance to wait for the store",
        )
        proxy.mend()
        await until(lambda: any("#1" in t for t in security_texts(fake)), within=30)
        assert rows(pg_url, "SELECT kind FROM events") == [("fire.alarm",)]
        assert rows(pg_url, "SELECT count(*) FROM incidents") == [(1,)]
    finally:
        await stop(first, *([again] if again else []))
        await proxy.close()
        await fake.close()


async def test_an_owner_killed_in_the_middle_of_a_fan_out_every_resident_is_texted(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """kill -9 of the active instance while it texts a building's 2,000 residents: the
    standby takes over, sends again what was in flight (said in its log and on each such
    message) and the rest: everyone texted, duplicates no more than were in flight, at
    most the lane's concurrency."""
    residents = [
        Resident("7", str(n % 30), f"{n:05d}", f"R{n}", f"+86138{n:08d}", "zh", False,
                 site="Harbour View")
        for n in range(2000)
    ]  # fmt: skip
    store = PgStore(pg_url)
    import_residents(store.conn, residents, datetime.now(UTC))
    store.close()
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, pg_url, 2, "poll_s: 0.05, sms_per_s: 200")
    first, second = await active_and_standby(config, tmp_path)

    def texted() -> list[str]:
        return [r["form"]["To"] for r in fake.sms() if r["form"]["To"].startswith("+86138")]

    try:
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: len(texted()) >= 400, within=30)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        await until(lambda: len(set(texted())) == 2000, within=60)
    finally:
        await stop(first, second)
        await fake.close()
    found = re.search(rb"(\d+) message\(s\) were in flight", second.log.read_bytes())
    assert found is not None
    in_flight = int(found.group(1))
    assert 0 < in_flight <= 20  # delivery.concurrency
    duplicates = len(texted()) - 2000
    assert duplicates <= in_flight
    (said,) = rows(pg_url, "SELECT text FROM timeline WHERE type = 'in_flight'")
    assert str(said[0]).startswith(f"{in_flight} message(s) were being sent when alertd stopped")
    print(f"kill -9 mid fan-out: {in_flight} in flight, {duplicates} texted twice")


async def test_the_primary_dies_its_synchronous_standby_is_promoted_and_alertd_carries_on(
    tmp_path: Path, broker: Broker
) -> None:
    """PostgreSQL's primary crashes; its synchronous standby (pg_basebackup -R) is
    promoted. alertd, on the multi-host connection string, reconnects to it and carries
    on: the fire published while no primary was up is decided and sent; nothing that
    was committed before the crash is lost."""
    primary = Cluster().start()
    standby = None
    fake = await FakeTwilio().start()
    active = None
    try:
        standby = Cluster(standby_of=primary).start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            await asyncio.to_thread(
                wait_for,
                lambda: conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone() == (1,),
                30,
                "the standby to stream",
            )
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        url = f"postgresql://alertd@{hosts}/postgres?target_session_attrs=read-write"
        config = write_site(tmp_path, broker, fake, url, 5)
        with (tmp_path / "devices.csv").open("a") as out:
            out.write("smoke-2,zigbee2mqtt,zigbee2mqtt/hv/smoke_2,8,3,0301\n")
        active = instance(config, tmp_path / "alertd.log")
        await asyncio.to_thread(
            wait_for, lambda: b"connected to MQTT" in active.log.read_bytes(), 30, "active"
        )
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: any("#1" in t for t in security_texts(fake)))
        primary.stop("immediate")  # a crash
        died = time.monotonic()
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_2", '{"smoke": true}')
        await asyncio.to_thread(standby.promote)
        await until(lambda: any("#2" in t for t in security_texts(fake)), within=30)
        waited = time.monotonic() - died
        assert active.proc.poll() is None  # it carried on: the same process, still active
        new_primary = standby.url()
        assert rows(new_primary, "SELECT device_id FROM events ORDER BY id") == [
            ("smoke-1",),
            ("smoke-2",),
        ]
        assert rows(new_primary, "SELECT count(*) FROM incidents") == [(2,)]
        print(f"the primary crashed -> the fire's SMS through the promoted standby: {waited:.1f} s")
    finally:
        if active is not None:
            await stop(active)
        await fake.close()
        for cluster in (primary, standby):
            if cluster is not None:
                cluster.remove()


ESCALATING = """\
name: fire-escalating
match: {kinds: [fire.alarm]}
correlate: {by: building}
severity: critical
steps:
  - notify: {oncall: security}
    template: fire
  - wait_ack_s: 8
    escalate:
      - to: {oncall: security}
        template: nobody
templates:
  fire: {zh: "火警 {{ incident }} {{ location }}", en: "fire {{ incident }} {{ location }}"}
  nobody:
    zh: "无人确认 {{ incident }} {{ location }}"
    en: "unacknowledged {{ incident }} {{ location }}"
"""


async def test_a_rolling_restart_during_a_storm_loses_no_event_and_no_timer(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """Two instances restarted one by one (SIGTERM: the service handed over at once)
    while 20 leak sensors change state 100 times a second and a fire's escalation timer
    runs: every state change is stored once, the escalation goes out once, on time."""
    fake = await FakeTwilio().start()
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "fire.yaml").write_text(ESCALATING)
    config = write_site(tmp_path, broker, fake, pg_url, 5)
    config.write_text(config.read_text().replace(f"playbooks: {SHIPPED}", "playbooks: playbooks"))
    with (tmp_path / "devices.csv").open("a") as out:
        for n in range(20):
            out.write(f"leak-{n},zigbee2mqtt,zigbee2mqtt/hv/leak_{n},8,{n},0101\n")
    first, second = await active_and_standby(config, tmp_path)
    changes = 1000
    storm = asyncio.create_task(asyncio.to_thread(_leak_storm, broker, changes, 100))
    running = [first, second]
    try:
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: any("火警" in t for t in security_texts(fake)))
        fired = time.monotonic()
        for n in range(2):  # the active one first, then the other, each started again
            stopping = running.pop(0)
            stopping.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(stopping.proc.wait, 20) == 0
            log = tmp_path / f"again-{n}.log"
            running.append(instance(config, log))
            await asyncio.to_thread(
                wait_for, lambda log=log: b"standing by" in log.read_bytes(), 30, "a standby"
            )
        await storm
        await until(lambda: any("无人确认" in t for t in security_texts(fake)), within=30)
        late = time.monotonic() - fired
        stored = [(changes + 1,)]
        await answers(lambda: rows(pg_url, "SELECT count(*) FROM events") == stored, "events")
    finally:
        storm.cancel()
        await stop(*running)
        await fake.close()
    assert sum("无人确认" in t for t in security_texts(fake)) == 1
    assert late < 8 + 5  # its due time, plus at most a lease
    per_device = rows(pg_url, "SELECT device_id, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert per_device == sorted(
        [*((f"leak-{n}", changes // 20) for n in range(20)), ("smoke-1", 1)]
    )


def _leak_storm(broker: Broker, changes: int, rate: float) -> None:
    """`changes` leak sensor reports, each a change of state (wet, dry, wet, ...), paced."""
    pub = Publisher(broker, "storm")
    try:
        start = time.monotonic()
        for k in range(changes):
            pause = start + k / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            wet = (k // 20) % 2 == 0
            pub.publish(f"zigbee2mqtt/hv/leak_{k % 20}", json.dumps({"water_leak": wet}))
    finally:
        pub.close()


#: the commands that read the store, with arguments that make them read it all
READING = [
    ("events",), ("incidents", "list"), ("incidents", "show", "1"), ("outbox",),
    ("report", "1"), ("dead-letters",), ("residents", "list"), ("oncall",), ("sites",),
    ("users", "list"), ("audit",), ("prune", "--dry-run"), ("cluster",),
]  # fmt: skip


async def test_the_commands_read_and_write_postgresql_whichever_instance_is_active(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    """Before alertd made the store, a command says so (and makes no SQLite file in its
    place); then a staff command typed after the active instance was killed is applied
    by the standby that took over, through the commands table."""
    fake = await FakeTwilio().start()
    config = write_site(tmp_path, broker, fake, pg_url, 2)
    at = ["--config", str(config)]

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(alertd, *args, *at)

    early = await run("incidents", "list")
    assert early.returncode == 2
    assert "no alertd store in postgresql://" in early.stderr
    first, second = await active_and_standby(config, tmp_path)
    try:
        await asyncio.to_thread(publish, broker, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
        await until(lambda: len(security_texts(fake)) == 1)
        listed = await run("incidents", "list", "--json")
        assert [json.loads(line)["status"] for line in listed.stdout.splitlines()] == ["open"]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        acked = await run("incidents", "ack", "1", "--by", "Wang")
        assert acked.returncode == 0, acked.stderr
        assert "ack: done" in acked.stdout
        assert b"active:" in second.log.read_bytes()
        assert rows(pg_url, "SELECT status FROM incidents") == [("acknowledged",)]
        added = await asyncio.to_thread(
            alertd_input, "correct horse battery\n", "users", "add", "desk", "--role", "duty",
            "--staff", "Wang", "--password-stdin", *at,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert "desk" in (await run("users", "list")).stdout
        audit = (await run("audit")).stdout
        assert "ack" in audit
        assert "user_add desk" in audit
        for reading in READING:  # every command that reads the store, on PostgreSQL
            done = await run(*reading)
            assert done.returncode == 0, (reading, done.stderr)
            assert "Traceback" not in done.stderr, reading
        checked = await run("check")  # its staff file is short of a supervisor: exit 1
        assert "resident(s)" not in checked.stderr
        assert "Traceback" not in checked.stderr
        backup = await run("backup", str(tmp_path / "copy.db"))
        assert backup.returncode == 1
        assert "pg_dump" in backup.stderr
    finally:
        await stop(first, second)
        await fake.close()
    assert not (tmp_path / "var").exists()  # no SQLite file was made beside it


def alertd_input(text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`alertd ARGS` with `text` on its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args], input=text, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
