"""Life-safety benchmark: `python -m bench.lifesafety [--quick] [--postgres]` (in `make bench`).

alertd runs as its own process on the shipped playbooks, SQLite with synchronous=FULL, a
real Mosquitto, and the real twilio SDK against the local fake Twilio (which posts a
signed delivery receipt back for every SMS: receipts on). `calls_per_s: 1`,
`sms_per_s: 200`, concurrency 20. While a separate process publishes routine telemetry
at 2,000 messages/s:

1. A fire in building 0 texts its 5,000 residents (the fan-out: its rate is reported).
2. During that fan-out, 50 fires in 50 other buildings, one every 200 ms: for each, the
   smoke detector's MQTT publish -> the first provider request to security (the call
   waits for its 1 a second; the SMS lane does not), and the stages: publish ->
   received (the event's received_at), received -> decided (the incident opened: the
   commit included), decided -> expanded (the message row), expanded -> request.
3. A 429 storm of 10 s with Retry-After 2 s on 2,000 resident SMS (the dispatcher on its
   own, real time): requests inside each Retry-After window, lost, duplicates.

`--console N` (default 20; 0: none): `alertd web` runs on the same store throughout, with
N signed-in sessions each holding the live board open (server-sent events, its rows; the
buildings of its first two incidents, at most every 2 s, as the board's script fetches them)
and loading the board and the fan-out's incident page every 2 s. The sessions are a niced process of
their own (on site, the browsers run on the desks' machines, not on alertd's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import re
import signal
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from alertd.console.accounts import add_user
from alertd.console.roles import Role
from alertd.directory.residents import Resident
from alertd.store.directory import import_residents
from alertd.store.stores import open_reader, open_store
from bench import bench_store, fake_twilio_sms, q, residents_of, subscribed
from bench.console import PASSWORD, sign_in
from tests.broker import Broker, free_port
from tests.fake_twilio import Failure, FakeTwilio
from tests.helpers import start_daemon
from tests.mqtt_tools import Publisher, until
from tests.test_console import start_web

TOKEN = "bench-token"
SECURITY = "+8613900000001"
TELEMETRY_DEVICES = 2000
PLAYBOOKS = Path(__file__).parent.parent / "playbooks"


def storm(port: int, rate: int, seconds: float, stop: multiprocessing.synchronize.Event) -> int:
    """Routine telemetry (plugs reporting power) at `rate` messages/s, paced, QoS 1."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-storm")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    start, sent = time.perf_counter(), 0
    while not stop.is_set() and time.perf_counter() - start < seconds:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the storm
        i = sent % TELEMETRY_DEVICES
        body = {"state": "ON", "power": 100 + sent % 40, "voltage": 230, "linkquality": sent % 255}
        client.publish(f"zigbee2mqtt/plug_{i}", json.dumps(body), qos=1)
        sent += 1
    client.disconnect()
    client.loop_stop()
    return sent


def setup(
    root: Path,
    fake: FakeTwilio,
    broker: Broker,
    residents: int,
    sites: int = 1,
    url: str | None = None,
) -> tuple[Path, int]:
    """`sites` > 1: that many estates (`sites:`), the telemetry, the fires and their
    residents spread over them; security (head office's) covers them all."""

    def at(n: int) -> str:
        return f"s{n % sites:02d}" if sites > 1 else ""

    rows = ["device_id,profile,topic,site,building,floor,unit"]
    rows += [
        f"plug-{i},zigbee2mqtt,zigbee2mqtt/plug_{i},{at(i)},{60 + i % 20},1,{i}"
        for i in range(TELEMETRY_DEVICES)
    ]
    rows += [f"smoke-{b},zigbee2mqtt,zigbee2mqtt/smoke_{b},{at(b)},{b},3,{b}03" for b in range(51)]
    (root / "devices.csv").write_text("\n".join(rows) + "\n")
    (root / "staff.yaml").write_text(
        f"people:\n  Wang: {{phone: '{SECURITY}', roles: [security, supervisor]}}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
    )
    store = open_store(root / "alertd.db", url)
    people = residents_of(residents, "0", at(0) or "HV")
    people += [
        Resident(str(b), "3", f"{b}03", f"F{b}", f"+86137{b:08d}", "zh", False, site=at(b) or "HV")
        for b in range(1, 51)
    ]
    import_residents(store.conn, people, datetime.now(UTC))
    add_user(store.conn, "boss", Role.SUPERVISOR, "Wang", PASSWORD, datetime.now(UTC))
    store.close()
    port = free_port()
    estates = "".join(f"  s{n:02d}: {{name: Estate {n}}}\n" for n in range(sites))
    (root / "alertd.yaml").write_text(
        "site: {name: HV, timezone: Asia/Shanghai}\n"
        + (f"sites:\n{estates}" if sites > 1 else "")
        + f"mqtt: {{port: {broker.port}, client_id: bench-lifesafety}}\n"
        + (f"storage: {{url: '{url}'}}\n" if url else "storage: {path: alertd.db}\n")
        + f"devices: devices.csv\nplaybooks: {PLAYBOOKS}\n"
        "staff: staff.yaml\n"
        "delivery: {sms_per_s: 200, calls_per_s: 1, concurrency: 20}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: {TOKEN}, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
        f"http: {{host: 127.0.0.1, port: {port}, public_url: 'http://127.0.0.1:{port}'}}\n"
        "log_level: INFO\n"
    )
    return root / "alertd.yaml", port


def desks_process(
    url: str,
    sessions: int,
    stop: multiprocessing.synchronize.Event,
    updates: Any,
    ready: multiprocessing.synchronize.Event,
) -> None:
    """The browsers: a process of their own, niced, since on site they run on the desks'
    machines, not on alertd's."""
    os.nice(19)

    async def run() -> None:
        stopped = asyncio.Event()

        async def watch_stop() -> None:
            await asyncio.to_thread(stop.wait)
            stopped.set()

        watcher = asyncio.create_task(watch_stop())
        updates.value = await console_sessions(url, sessions, stopped, ready)
        await watcher

    asyncio.run(run())


async def console_sessions(
    url: str, sessions: int, stop: asyncio.Event, ready: multiprocessing.synchronize.Event
) -> int:
    """Desks with the board open; returns the board updates they received. `ready` is
    set once every desk is signed in (20 argon2 checks take seconds on a niced process:
    the storm must not start and end before the desks are there)."""
    clients = [await sign_in(url, PASSWORD) for _ in range(sessions)]
    ready.set()
    updates = 0

    async def desk(http: aiohttp.ClientSession) -> None:
        nonlocal updates

        shown: list[str] = []
        changed = asyncio.Event()

        async def draw() -> None:
            """As the board's script: its two most urgent buildings, at most every 2 s."""
            while True:
                await changed.wait()
                changed.clear()
                for number in shown[:2]:
                    async with http.get(f"{url}/incidents/{number}/building") as picture:
                        await picture.read()
                await asyncio.sleep(2)

        async def stream() -> None:
            nonlocal updates, shown
            async with http.get(url + "/board/stream?rows=1") as answer:
                async for line in answer.content:
                    if line.startswith(b"data: "):
                        updates += 1
                        shown = re.findall(r'data-incident=\\"(\d+)\\"', line.decode())
                        changed.set()

        listening, drawing = asyncio.create_task(stream()), asyncio.create_task(draw())
        try:
            while not stop.is_set():
                for path in ("/", "/incidents/1"):
                    async with http.get(url + path) as page:
                        await page.read()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2)
        finally:
            listening.cancel()
            drawing.cancel()
            await asyncio.gather(listening, drawing, return_exceptions=True)

    try:
        await asyncio.gather(*(desk(http) for http in clients))
    finally:
        for http in clients:
            await http.close()
    return updates


async def under_load(quick: bool, sessions: int, sites: int = 1, postgres: bool = False) -> None:
    residents = 1000 if quick else 5000
    fires = 10 if quick else 50
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp, bench_store(postgres) as url:
        root = Path(tmp)
        broker = Broker(root / "mosquitto").start()
        # the account allows 200 requests a second, as the SMS lane is configured
        fake = await FakeTwilio(receipts_token=TOKEN, rate_limit=200).start()
        config, http_port = setup(root, fake, broker, residents, sites, url)
        web_port = free_port()
        with config.open("a") as out:
            out.write(f"console: {{port: {web_port}}}\n")
        daemon = start_daemon(config, root / "alertd.log")  # alertd as its own process
        web = start_web(config, root / "web.log") if sessions else None
        context = multiprocessing.get_context("spawn")
        desks_stop = context.Event()
        desks_ready = context.Event()
        updates = context.Value("i", 0)
        desks: multiprocessing.process.BaseProcess | None = None
        stop = context.Event()
        storm_process = context.Process(target=storm, args=(broker.port, 2000, 120, stop))
        try:
            await subscribed(http_port)
            if web is not None:
                web_log = root / "web.log"
                await until(lambda: b"alertd console on" in web_log.read_bytes(), 30)
                desks = context.Process(
                    target=desks_process,
                    args=(
                        f"http://127.0.0.1:{web_port}",
                        sessions,
                        desks_stop,
                        updates,
                        desks_ready,
                    ),
                )
                desks.start()
                if not await asyncio.to_thread(desks_ready.wait, 120):
                    print("the desks could not sign in within 120 s")
            storm_process.start()
            await asyncio.sleep(2)  # the storm is on
            pub = Publisher(broker, "bench-fires")
            fan_start = time.time()
            await asyncio.to_thread(pub.publish, "zigbee2mqtt/smoke_0", '{"smoke": true}')
            resident_sms = lambda: [r for r in fake.sms() if r["form"]["To"].startswith("+86138")]  # noqa: E731
            await until(lambda: len(resident_sms()) >= 200, 60)
            published: dict[str, float] = {}
            for b in range(1, fires + 1):
                published[str(b)] = time.time()
                await asyncio.to_thread(pub.publish, f"zigbee2mqtt/smoke_{b}", '{"smoke": true}')
                await asyncio.sleep(0.2)
            pub.close()
            await until(lambda: len({r["form"]["To"] for r in resident_sms()}) >= residents, 120)
            fan_sent = resident_sms()
            await until(lambda: fake.receipts_posted >= len(fan_sent), 60)
        finally:
            stop.set()  # the storm first: the desks' process is niced, it finishes after
            storm_process.join(30)
            desks_stop.set()
            if desks is not None:
                await asyncio.to_thread(desks.join, 60)
                if desks.is_alive():
                    print("console: the sessions' process did not finish; its count is lost")
                    desks.terminate()
            if web is not None:
                web.send_signal(signal.SIGTERM)
                await asyncio.to_thread(web.wait, 20)
            daemon.send_signal(signal.SIGTERM)
            await asyncio.to_thread(daemon.wait, 30)
            broker.stop()
            await fake.close()
        if sessions:
            print(f"console: {sessions} sessions open throughout, {updates.value:,} board updates")
            for line in (root / "web.log").read_text().splitlines():
                if "ERROR" in line or "Traceback" in line:
                    print(f"  console log: {line}")
        report(root, url, fake, published, fan_sent, fan_start, residents)


def report(
    root: Path,
    url: str | None,
    fake: FakeTwilio,
    published: dict[str, float],
    fan_sent: list[dict[str, object]],
    fan_start: float,
    residents: int,
) -> None:
    store = open_reader(root / "alertd.db", url)
    conn = store.conn
    incidents = {
        str(b): (i, datetime.fromisoformat(o).timestamp())
        for i, b, o in conn.execute("SELECT id, building, opened_at FROM incidents")
    }
    received = {
        d.split("-", 1)[1]: datetime.fromisoformat(r).timestamp()
        for d, r in conn.execute(
            "SELECT device_id, min(received_at) FROM events WHERE kind = 'fire.alarm' "
            "GROUP BY device_id"
        )
    }
    expanded = {
        int(i): datetime.fromisoformat(d).timestamp()
        for i, d in conn.execute(
            "SELECT incident_id, min(due_at) FROM messages WHERE recipient = ? "
            "GROUP BY incident_id",
            (SECURITY,),
        )
    }
    store.close()
    found = re.search(r"'dropped': (\d+)", (root / "alertd.log").read_text())
    dropped = int(found.group(1)) if found else 0
    first_request: dict[int, float] = {}
    for r in fake.requests:  # in arrival order
        body = str(r["form"].get("Body") or r["form"].get("Twiml") or "")
        found = re.search(r"#(\d+)[】\]]", body)
        if r["form"].get("To") == SECURITY and found:
            first_request.setdefault(int(found.group(1)), float(r["wall"]))
    total: list[float] = []
    stages: dict[str, list[float]] = {
        name: []
        for name in (
            "publish -> received",
            "received -> decided",
            "decided -> expanded",
            "expanded -> request",
        )
    }
    lost = 0
    for b, at in published.items():
        if b not in incidents or incidents[b][0] not in first_request:
            lost += 1
            continue
        incident, opened = incidents[b]
        request = first_request[incident]
        total.append((request - at) * 1000)
        stages["publish -> received"].append((received[b] - at) * 1000)
        stages["received -> decided"].append((opened - received[b]) * 1000)
        stages["decided -> expanded"].append((expanded[incident] - opened) * 1000)
        stages["expanded -> request"].append((request - expanded[incident]) * 1000)
    print(
        f"fire alarm publish -> security's first provider request, during 2,000 msg/s "
        f"telemetry and a {residents:,}-resident fan-out (calls_per_s 1): n={len(total)} "
        f"p50={q(total, 50):.1f} ms p99={q(total, 99):.1f} ms max={max(total):.1f} ms, "
        f"lost {lost}"
    )
    for name, values in stages.items():
        print(f"  {name:<22} p50={q(values, 50):7.1f} ms  max={max(values):7.1f} ms")
    per_number = Counter(str(r["form"]["To"]) for r in fan_sent)
    walls = sorted(float(r["wall"]) for r in fan_sent)  # type: ignore[arg-type]
    rate = (len(walls) - 1) / (walls[-1] - walls[0])
    print(
        f"fan-out: {len(per_number):,} of {residents:,} residents at sms_per_s 200, "
        f"concurrency 20, receipts on ({fake.receipts_posted:,} posted): {rate:.1f} SMS/s "
        f"(first to last request), {sum(n - 1 for n in per_number.values())} duplicates, "
        f"{sum(r['answered'] == 429 for r in fake.requests)} answered 429 (the provider "
        f"allows 200/s); "
        f"first request {walls[0] - fan_start:.2f} s after the publish; routine dropped: "
        f"{dropped}"
    )


async def storm_429(quick: bool) -> None:
    """The dispatcher alone, real time: 10 s of 429 (Retry-After 2 s), then service."""

    from alertd.clock import SystemClock
    from alertd.config import DeliveryConfig
    from alertd.directory.staff import load_staff
    from alertd.engine.state import Action, Decision, Incident
    from alertd.events import Location, Severity
    from alertd.outbox.dispatcher import Dispatcher
    from alertd.store import Writer
    from alertd.store import incidents as incidents_db

    count = 500 if quick else 2000
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp:
        root = Path(tmp)
        fake = await FakeTwilio().start()
        writer = Writer(root / "alertd.db")
        store = await writer.open()
        people = [
            Resident("3", "1", f"1{n:04d}", "", f"+86138{n:08d}", "zh", False, site="HV")
            for n in range(count)
        ]
        await writer.call(import_residents, store.conn, people, SystemClock().now())
        (root / "staff.yaml").write_text("people: {}\n")
        staff = load_staff(root / "staff.yaml", "CN", SystemClock().now().tzinfo)  # type: ignore[arg-type]
        sinks = fake_twilio_sms(fake.base_url)
        dispatcher = Dispatcher(
            writer, sinks, SystemClock(), DeliveryConfig(concurrency=20, poll_s=0.05), staff
        )  # type: ignore[call-arg]
        now = SystemClock().now()
        incident = Incident(
            1, "fire-alarm", "k", "open", Severity.CRITICAL, Location("HV", "3"), "fire", now, now
        )
        decision = Decision(
            incident, actions=[Action("sms", "building", {"zh": "火警", "en": "fire"})]
        )
        await writer.call(incidents_db.save, store.conn, [decision], now, incidents_db.Done())
        fake.storm = Failure(429, code=20429, retry_after=2)
        task = asyncio.create_task(dispatcher.run())
        dispatcher.outbox_changed()
        t0 = time.perf_counter()
        await asyncio.sleep(10)
        fake.storm = None
        await until(lambda: len({r["form"]["To"] for r in fake.sms()}) >= count, 120)
        dispatcher.stop()
        await task
        storm_requests = [float(r["at"]) for r in fake.requests if r["answered"] == 429]  # type: ignore[arg-type]
        windows = Counter(int((at - t0) // 2) for at in storm_requests)
        per_number = Counter(r["form"]["To"] for r in fake.sms())
        for sink in sinks.values():
            await sink.close()
        await writer.close()
        await fake.close()
    print(
        f"429 storm, 10 s, Retry-After 2 s, concurrency 20: {len(storm_requests)} requests "
        f"answered 429, at most {max(windows.values())} in one 2 s window; then "
        f"{len(per_number):,} of {count:,} texted, {sum(n - 1 for n in per_number.values())} "
        f"duplicates"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--console", type=int, default=20, help="console sessions open")
    parser.add_argument("--sites", type=int, default=1, help="estates the load is spread over")
    parser.add_argument("--postgres", action="store_true", help="alertd on PostgreSQL")
    options = parser.parse_args()
    quick = options.quick
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if options.sites > 1:
        print(f"{options.sites} sites (sites:), the storm, the fires and residents over them")
    asyncio.run(under_load(quick, options.console, options.sites, options.postgres))
    asyncio.run(storm_429(quick))


if __name__ == "__main__":
    main()
