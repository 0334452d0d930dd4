"""Many sites on one box: `python -m bench.sites [--quick]` (part of `make bench`).

1. The daemon (`alertd run`, its own process) serving 50 sites on 5 Mosquitto brokers
   (10 sites each, the brokers' default settings): 20,000 devices in 50 devices files,
   100,000 residents in the store, 500 staff in 50 site-team files. Start -> ready (every
   broker's subscriptions confirmed, as `/healthz` says), its RSS then, and a SIGHUP ->
   "reload: done" (alertd reloads every site's files: there is no one-site reload).
2. `alertd web` on a store of those 50 sites with 500 open incidents and a month of
   10,000 closed ones: a head-office account's board (all sites) and analytics of the
   month across the 50 sites, time from request to the last byte.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from alertd.console import accounts
from alertd.console.roles import Role
from alertd.directory.residents import Resident
from alertd.store import SqliteStore
from alertd.store.directory import import_residents
from bench import q, quick_flag, rss_mib
from bench.console import timed
from tests.broker import Broker, free_port
from tests.helpers import start_daemon
from tests.mqtt_tools import until
from tests.test_console import start_web

SITES = 50
BROKERS = 5
DEVICES = 20_000
RESIDENTS = 100_000
STAFF = 500
PASSWORD = "bench password 1"
PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


def write_sites(root: Path, brokers: list[Broker], sites: int) -> Path:
    per_devices, per_staff = DEVICES // sites, STAFF // sites
    entries = []
    for n in range(sites):
        site = f"s{n:02d}"
        (root / site).mkdir()
        (root / site / "devices.csv").write_text(
            "device_id,profile,topic,building,floor,unit,zone\n"
            + "".join(
                f"leak-{d},zigbee2mqtt,zigbee2mqtt/{site}/leak_{d},{d % 20 + 1},{d % 30 + 1},"
                f"{d % 30 + 1:02d}{d % 4 + 1:02d},kitchen\n"
                for d in range(per_devices)
            )
        )
        people = "".join(
            f"  P{n}-{k}: {{phone: '+86139{n:03d}{k:05d}', roles: [security, maintenance, "
            "supervisor, front_desk]}\n"
            for k in range(per_staff)
        )
        (root / site / "staff.yaml").write_text(
            f"people:\n{people}oncall:\n  security:\n"
            f"    - {{who: P{n}-0, start: '00:00', end: '12:00'}}\n"
            f"    - {{who: P{n}-1, start: '12:00', end: '00:00'}}\n"
        )
        broker = brokers[n % len(brokers)]
        entries.append(
            f"  {site}:\n    name: Estate {n}\n    devices: {site}/devices.csv\n"
            f"    staff: {site}/staff.yaml\n    mqtt: {{port: {broker.port}, "
            f"client_id: bench-sites-{broker.port}}}\n"
        )
    (root / "devices.csv").write_text("device_id,profile,topic\n")
    config = root / "alertd.yaml"
    config.write_text(
        "site: {timezone: Asia/Shanghai}\n"
        f"sites:\n{''.join(entries)}"
        f"mqtt: {{port: {brokers[0].port}, client_id: bench-sites-{brokers[0].port}}}\n"
        "storage: {path: alertd.db}\n"
        f"devices: devices.csv\nplaybooks: {PLAYBOOKS}\n"
        f"http: {{port: {free_port()}}}\n"
        f"console: {{port: {free_port()}}}\n"
        "log_level: INFO\n"
    )
    return config


def residents(path: Path, sites: int) -> None:
    per = RESIDENTS // sites
    store = SqliteStore(path, synchronous="OFF")
    people = [
        Resident(
            str(r % 20 + 1),
            str(r % 30 + 1),
            f"{r % 30 + 1:02d}{r % 4 + 1:02d}",
            f"R{r}",
            f"+86138{n:02d}{r:06d}",
            "zh",
            r % 10 == 0,
            site=f"s{n:02d}",
        )
        for n in range(sites)
        for r in range(per)
    ]
    import_residents(store.conn, people, datetime.now(UTC))
    store.close()


async def daemon_phase(root: Path, sites: int) -> None:
    brokers = [Broker(root / f"mosquitto-{n}").start() for n in range(BROKERS)]
    try:
        config = write_sites(root, brokers, sites)
        residents(root / "alertd.db", sites)
        port = int(re.search(r"http: \{port: (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
        log = root / "alertd.log"
        started = time.perf_counter()
        daemon = start_daemon(config, log)
        try:
            await ready(port, started)
            ready_s = time.perf_counter() - started
            rss = rss_mib(daemon.pid)
            size = log.stat().st_size
            hup = time.perf_counter()
            daemon.send_signal(signal.SIGHUP)
            await until(lambda: b"reload: " in log.read_bytes()[size:], 60)
            reload_s = time.perf_counter() - hup
            said = log.read_bytes()[size:].decode(errors="replace")
            done = "done" if "reload: done" in said else said.strip().splitlines()[-1]
        finally:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.to_thread(daemon.wait, 30)
    finally:
        for broker in brokers:
            broker.stop()
    print(
        f"{sites} sites, {DEVICES:,} devices, {RESIDENTS:,} residents, {STAFF} staff, "
        f"{BROKERS} brokers: start -> ready {ready_s:.2f} s, RSS {rss:.0f} MiB; "
        f"SIGHUP -> reload {done} in {reload_s:.2f} s"
    )


async def ready(port: int, started: float, within: float = 120) -> None:
    """Until /healthz says every broker part is ok."""
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < within:
            try:
                async with session.get(url) as answer:
                    parts = (await answer.json())["parts"]
                    brokers = [p for p in parts if p["name"].startswith("mqtt")]
                    if brokers and all(p["state"] == "ok" for p in brokers):
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.02)  # another process: polled
    raise TimeoutError("alertd did not get ready")


def console_store(path: Path, sites: int, open_incidents: int, month: int) -> None:
    store = SqliteStore(path, synchronous="OFF")
    conn = store.conn
    now = datetime.now(UTC)
    rng = random.Random(5)
    rows = []
    for n in range(1, open_incidents + month + 1):
        site = f"s{n % sites:02d}"
        building = str(rng.randint(1, 20))
        opened = now - timedelta(seconds=rng.uniform(0, 27 * 86400 if n > open_incidents else 3600))
        at = opened.isoformat()
        closed = n > open_incidents
        acked = (opened + timedelta(seconds=rng.uniform(20, 900))).isoformat() if closed else None
        resolved = (
            (opened + timedelta(seconds=rng.uniform(900, 7200))).isoformat() if closed else None
        )
        playbook = rng.choice(["fire-alarm", "water-leak", "power-loss"])
        rows.append((
            n, playbook, f"building:{site}/{building}", "closed" if closed else "open", "major",
            site, building, "3", "", "", f"{playbook} in building {building}", at, at, acked,
            resolved, "[]", "[]", "{}", 0,
        ))  # fmt: skip
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO incidents (id, playbook, key, status, severity, site, building, floor, "
        "unit, zone, title, opened_at, last_event_at, acknowledged_at, resolved_at, active, "
        "units, run, drill) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    accounts.add_user(conn, "boss", Role.SUPERVISOR, "", PASSWORD, now)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    store.close()


async def console_phase(root: Path, sites: int, rounds: int) -> None:
    from bench.console import sign_in

    config = root / "alertd.yaml"
    console_store(root / "console.db", sites, 500, 10_000)
    text = config.read_text().replace("storage: {path: alertd.db}", "storage: {path: console.db}")
    config.write_text(text)
    port = int(re.search(r"console: \{port: (\d+)", text).group(1))  # type: ignore[union-attr]
    log = root / "web.log"
    web = start_web(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: b"alertd console on" in log.read_bytes(), 60)
        http = await sign_in(url, PASSWORD)
        try:
            async with asyncio.timeout(30):  # until the board has read the store once
                while True:
                    async with http.get(url + "/") as page:
                        if "data-incident" in await page.text():
                            break
                    await asyncio.sleep(0.05)  # another process's first read: polled
            board = [await timed(http, url + "/") for _ in range(rounds)]
            month = [await timed(http, url + "/analytics") for _ in range(max(5, rounds // 10))]
        finally:
            await http.close()
    finally:
        web.send_signal(signal.SIGTERM)
        await asyncio.to_thread(web.wait, 20)
    conn = sqlite3.connect(root / "console.db")
    shown = conn.execute("SELECT count(*) FROM incidents WHERE status = 'open'").fetchone()[0]
    conn.close()
    for name, values in (
        (f"head-office board, {sites} sites, {shown} open", board),
        (f"analytics, this month across {sites} sites", month),
    ):
        print(
            f"{name:<44} p50 {q(values, 50):7.1f} ms  p99 {q(values, 99):7.1f} ms  "
            f"({len(values)} requests)"
        )


async def run(quick: bool) -> None:
    sites = 10 if quick else SITES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        await daemon_phase(root, sites)
        await console_phase(root, sites, 20 if quick else 100)


def main() -> None:
    asyncio.run(run(quick_flag(__doc__)))


if __name__ == "__main__":
    main()
