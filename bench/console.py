"""Console benchmark: `python -m bench.console [--quick]` (part of `make bench`).

`alertd web` runs as its own process on a store of 100,000 incidents (a year of 20
buildings: timelines, messages, events), SQLite as the daemon leaves it. Measured from a
signed-in HTTP client on loopback:

1. The incident page and the analytics page (this month; the whole year): time from
   request to the last byte, p50 / p99.
2. The live board with 20 sessions open (server-sent events): a commit of a new
   incident -> each session's board update received, p50 / p99 / max; the board sessions
   fetch the buildings of their first two incidents as it changes (at most every 2 s),
   as its script does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from alertd.console.web import PAGE_TTL_S
from alertd.store import SqliteStore
from bench import q, quick_flag
from tests.broker import free_port
from tests.test_console import start_web

PLAYBOOKS = Path(__file__).parent.parent / "playbooks"
KINDS = ["fire-alarm", "water-leak", "water-leak", "power-loss", "sensor-offline", "fire-trouble"]
PASSWORD = "bench password 1"
FAN_OUT = 5000
TOWER_FLOORS = 30


def build(path: Path, incidents: int) -> None:
    """A year of incidents, each with a timeline and messages, and the events behind them."""
    store = SqliteStore(path, synchronous="OFF")
    conn = store.conn
    now = datetime.now(UTC)
    rng = random.Random(7)
    conn.execute("BEGIN")
    rows, lines, messages, events = [], [], [], []
    for n in range(1, incidents + 1):
        opened = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
        acked = opened + timedelta(seconds=rng.uniform(20, 900))
        resolved = acked + timedelta(seconds=rng.uniform(300, 7200))
        building = str(rng.randint(1, 20))
        playbook = rng.choice(KINDS)
        at = opened.isoformat()
        rows.append((
            n, playbook, f"building:HV/{building}", "closed", "major", "HV", building,
            str(rng.randint(1, 30)), "", "", f"{playbook} in building {building}", at, at,
            acked.isoformat(), resolved.isoformat(), "[]", "[]", "{}", int(n % 200 == 0),
        ))  # fmt: skip
        lines += [
            (n, at, "opened", "alertd", f"incident opened by {playbook}"),
            (n, at, "action", "alertd", "steps step 1: notify to oncall:security"),
            (n, acked.isoformat(), "acknowledged", "Wang", "acknowledged"),
            (n, (acked + timedelta(minutes=10)).isoformat(), "on_site", "Sun", ""),
            (n, resolved.isoformat(), "resolved", "Wang", "resolved"),
        ]
        messages += [
            (n, n, "sms", f"+86138{(n * 7 + k) % 10**8:08d}", "resident", str(k), "zh", "text",
             1, "delivered", 1, at, at)
            for k in range(3)
        ]  # fmt: skip
        events += [
            ("leak", "active", "major", f"dev-{building}-{k}", "HV", building, "1", "", "",
             at, at, "bench")
            for k in range(2)
        ]  # fmt: skip
    conn.executemany(
        "INSERT INTO incidents (id, playbook, key, status, severity, site, building, floor, "
        "unit, zone, title, opened_at, last_event_at, acknowledged_at, resolved_at, active, "
        "units, run, drill) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?,?,?,?,?)", lines
    )
    conn.executemany(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, attempts, due_at, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        messages,
    )
    conn.executemany(
        "INSERT INTO events (kind, state, severity, device_id, site, building, floor, unit, "
        "zone, occurred_at, received_at, source, decided) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
        events,
    )
    # incident 1 was a fire that texted 5,000 residents: its page is the heaviest
    conn.executemany(
        "INSERT INTO residents (id, building, floor, unit, name, phone, language, vulnerable, "
        "notes, updated_at) VALUES (?, '1', ?, ?, ?, ?, 'zh', ?, '', ?)",
        [
            (r, str(r % 30), f"{r % 30}{r:05d}", f"R{r}", f"+86137{r:08d}", int(r % 10 == 0), at)
            for r in range(1, FAN_OUT + 1)
        ],
    )
    conn.executemany(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, attempts, due_at, updated_at) "
        "VALUES (0, 1, 'sms', ?, 'resident', ?, 'zh', 'text', 1, 'delivered', 1, ?, ?)",
        [(f"+86137{r:08d}", str(r), at, at) for r in range(1, FAN_OUT + 1)],
    )
    conn.executemany(
        "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (1, ?, ?, ?, ?)",
        [
            (at, "delivery", "twilio", f"+86 137****{r % 10000:04d} delivered")
            for r in range(1, FAN_OUT + 1)
        ]
        + [
            (at, "check_in", f"+86137{r:08d}", "need help (2)" if r % 50 == 0 else "safe (1)")
            for r in range(1, FAN_OUT + 1, 3)
        ],
    )
    tower(conn, incidents + 1, at)
    accounts.add_user(conn, "boss", Role.SUPERVISOR, "Wang", PASSWORD, now)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    store.close()


def tower(conn: sqlite3.Connection, incident: int, at: str) -> None:
    """A fire in a 30-floor tower of 600 flats (20 a floor), one resident each, every
    tenth vulnerable: two floors in alarm (one joined later), a third of the residents
    answered (one in fifty of them: 2). Its page draws the whole building."""
    flats = [(f, k) for f in range(1, TOWER_FLOORS + 1) for k in range(1, 21)]
    conn.execute(
        "INSERT INTO incidents (id, playbook, key, status, severity, site, building, floor, "
        "unit, zone, title, opened_at, last_event_at, active, units, run, drill) VALUES "
        "(?, 'fire-alarm', 'building:HV/T', 'open', 'critical', 'HV', 'T', '12', '1201', '', "
        "'fire in the tower', ?, ?, ?, '[]', '{}', 0)",
        (incident, at, at, json.dumps(["smoke-T-12 fire.alarm", "smoke-T-13 fire.alarm"])),
    )
    conn.executemany(
        "INSERT INTO residents (building, floor, unit, name, phone, language, vulnerable, "
        "notes, updated_at, site) VALUES ('T', ?, ?, ?, ?, 'zh', ?, '', ?, 'HV')",
        [
            (str(f), f"{f:02d}{k:02d}", f"T{f}-{k}", f"+86136{f:04d}{k:04d}", int(k % 10 == 0), at)
            for f, k in flats
        ],
    )
    conn.executemany(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, attempts, due_at, updated_at) "
        "VALUES (0, ?, 'sms', ?, 'resident', '', 'zh', 'text', 1, 'delivered', 1, ?, ?)",
        [(incident, f"+86136{f:04d}{k:04d}", at, at) for f, k in flats],
    )
    conn.executemany(
        "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?, ?, 'check_in', ?, ?)",
        [
            (incident, at, f"+86136{f:04d}{k:04d}", "need help (2)" if n % 50 == 0 else "safe (1)")
            for n, (f, k) in enumerate(flats)
            if n % 3 == 0
        ],
    )
    event = conn.execute(
        "INSERT INTO events (kind, state, severity, device_id, site, building, floor, unit, "
        "zone, occurred_at, received_at, source, decided) VALUES ('fire.alarm', 'active', "
        "'critical', 'smoke-T-13', 'HV', 'T', '13', '1301', '', ?, ?, 'bench', 1) RETURNING id",
        (at, at),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO timeline (incident_id, at, type, actor, text, event_id) "
        "VALUES (?, ?, 'join', 'alertd', 'new: device smoke-T-13; announced', ?)",
        (incident, at, event),
    )


def tower_devices() -> str:
    """One smoke detector a floor in the tower, in its first flat."""
    rows = ["device_id,profile,topic,site,building,floor,unit"]
    rows += [
        f"smoke-T-{f},zigbee2mqtt,z/t{f},HV,T,{f},{f:02d}01" for f in range(1, TOWER_FLOORS + 1)
    ]
    return "\n".join(rows) + "\n"


async def sign_in(url: str, password: str = PASSWORD) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(url + "/login") as page:
        token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token is not None
    form = {"name": "boss", "password": password, "csrf": token.group(1), "next": "/"}
    async with http.post(url + "/login", data=form) as answer:
        assert answer.status == 200, await answer.text()
    return http


async def timed(http: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with http.get(url) as answer:
        await answer.read()
        assert answer.status == 200, url
    return (time.perf_counter() - start) * 1000


async def pages(url: str, incidents: int, rounds: int) -> None:
    http = await sign_in(url)
    try:
        rng = random.Random(3)
        await timed(http, f"{url}/incidents/1")
        page = [
            await timed(http, f"{url}/incidents/{rng.randint(2, incidents)}") for _ in range(rounds)
        ]
        fan_out = []
        for _ in range(max(5, rounds // 10)):
            await asyncio.sleep(PAGE_TTL_S + 0.1)  # past the shared read: the server's own work
            fan_out.append(await timed(http, f"{url}/incidents/1"))
        async with http.get(f"{url}/incidents/{incidents + 1}") as answer:
            drawn = await answer.text()
        flats, alarms = drawn.count('<g class="flat'), drawn.count('class="floor alarm"')
        assert (flats, alarms) == (600, 2), (flats, alarms)  # the whole tower, two floors in alarm
        tall, alone = [], []
        for _ in range(max(5, rounds // 10)):
            await asyncio.sleep(PAGE_TTL_S + 0.1)
            tall.append(await timed(http, f"{url}/incidents/{incidents + 1}"))
            await asyncio.sleep(PAGE_TTL_S + 0.1)
            alone.append(await timed(http, f"{url}/incidents/{incidents + 1}/building"))
        month = [await timed(http, f"{url}/analytics") for _ in range(max(5, rounds // 5))]
        today = datetime.now(UTC).date()
        year = f"{url}/analytics?from={today - timedelta(days=366)}&until={today}"
        whole = [await timed(http, year) for _ in range(5)]
    finally:
        await http.close()
    for name, values in (
        ("incident page", page),
        (f"... {FAN_OUT:,}-resident fan-out", fan_out),
        (f"... {TOWER_FLOORS}-floor, 600-flat picture", tall),
        ("... the picture alone (board)", alone),
        ("analytics, this month", month),
        ("analytics, the year", whole),
    ):
        print(
            f"{name:<24} p50 {q(values, 50):7.1f} ms  p99 {q(values, 99):7.1f} ms  "
            f"({len(values)} requests)"
        )


async def board(url: str, store: Path, sessions: int, rounds: int) -> None:
    """Commit -> every open page's update, through the SSE streams: half the sessions on
    the board (its rows), half on other pages (the alarm banner every page shows)."""
    clients = [await sign_in(url) for _ in range(sessions)]
    got: list[dict[int, float]] = [{} for _ in range(sessions)]
    arrived = asyncio.Event()

    def on_board(i: int) -> bool:
        return i % 2 == 0

    drawing: list[float] = []

    async def draw(http: aiohttp.ClientSession, shown: list[str], changed: asyncio.Event) -> None:
        """What the board's script does as it changes: the buildings of its first two
        incidents, fetched again, at most every 2 s."""
        while True:
            await changed.wait()
            changed.clear()
            for number in shown[:2]:
                drawing.append(await timed(http, f"{url}/incidents/{number}/building"))
            await asyncio.sleep(2)

    async def listen(i: int) -> None:
        query, key = ("?rows=1", "html") if on_board(i) else ("", "banner")
        shown: list[str] = []
        changed = asyncio.Event()
        painter = asyncio.create_task(draw(clients[i], shown, changed)) if on_board(i) else None
        try:
            async with clients[i].get(url + "/board/stream" + query) as stream:
                async for line in stream.content:
                    if line.startswith(b"data: "):
                        data = json.loads(line[6:])
                        shown[:] = re.findall(r'data-incident="(\d+)"', data[key])
                        for found in shown:
                            got[i].setdefault(int(found), time.time())
                        arrived.set()
                        changed.set()
        finally:
            if painter is not None:
                painter.cancel()

    tasks = [asyncio.create_task(listen(i)) for i in range(sessions)]
    conn = sqlite3.connect(store, isolation_level=None)
    latencies: dict[bool, list[float]] = {True: [], False: []}
    rng = random.Random(5)
    try:
        base = conn.execute("SELECT max(id) FROM incidents").fetchone()[0]
        await asyncio.sleep(1)  # every stream has its first board
        for r in range(1, rounds + 1):
            n = base + r
            at = datetime.now(UTC).isoformat()
            conn.execute(
                "INSERT INTO incidents (id, playbook, key, status, severity, site, building, "
                "floor, unit, zone, title, opened_at, last_event_at, active, units, run, drill) "
                "VALUES (?, 'fire-alarm', ?, 'open', 'critical', 'HV', '3', '12', '1203', '', "
                "'fire', ?, ?, '[]', '[]', '{}', 0)",
                (n, f"k{n}", at, at),
            )
            committed = time.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while any(n not in g for g in got):
                        arrived.clear()
                        await arrived.wait()
            for i, g in enumerate(got):
                if n in g:
                    latencies[on_board(i)].append((g[n] - committed) * 1000)
            missing = sum(n not in g for g in got)
            if missing:
                print(f"  incident {n}: {missing} session(s) saw nothing within 5 s")
            conn.execute("UPDATE incidents SET status = 'closed' WHERE id = ?", (n,))
            await asyncio.sleep(0.2 + rng.random() * 0.1)  # commits out of step with the poll
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for http in clients:
            await http.close()
        conn.close()
    for where, found in (("the board", latencies[True]), ("other pages' banner", latencies[False])):
        print(
            f"{where}, {sessions} sessions open: commit -> update received "
            f"p50 {q(found, 50):.0f} ms, p99 {q(found, 99):.0f} ms, max {max(found):.0f} ms "
            f"({len(found)} updates)"
        )
    print(
        f"the board's building pictures, fetched as it changes: p50 {q(drawing, 50):.0f} ms, "
        f"p99 {q(drawing, 99):.0f} ms ({len(drawing)} fetches)"
    )


async def run(quick: bool) -> None:
    incidents = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="alertd-bench-console-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        build(root / "alertd.db", incidents)
        print(f"store: {incidents:,} incidents built in {time.perf_counter() - start:.1f} s")
        (root / "devices.csv").write_text(tower_devices())
        port = free_port()
        (root / "alertd.yaml").write_text(
            "site: {name: HV, timezone: Asia/Shanghai}\nstorage: {path: alertd.db}\n"
            f"devices: devices.csv\nplaybooks: {PLAYBOOKS}\nconsole: {{port: {port}}}\n"
            "log_level: WARNING\n"
        )
        web = start_web(root / "alertd.yaml", root / "web.log")
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                if b"alertd console on" in (root / "web.log").read_bytes():
                    break
                await asyncio.sleep(0.1)
            await pages(url, incidents, 20 if quick else 100)
            await board(url, root / "alertd.db", 20, 10 if quick else 100)
        finally:
            web.send_signal(signal.SIGTERM)
            await asyncio.to_thread(web.wait, 20)


def main() -> None:
    asyncio.run(run(quick_flag(__doc__)))


if __name__ == "__main__":
    main()
