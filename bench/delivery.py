"""Delivery benchmark: `python -m bench.delivery` (part of `make bench`).

Against the local fake Twilio (unthrottled), with the real twilio SDK:
1. 10,000 resident SMS: from the incident's actions being stored to the last request
   accepted.
2. `sms_per_s: 200` against a provider that allows 200 requests a second (the fake
   answers 429 with Retry-After 1 s beyond it, as Twilio does): the achieved rate, the
   429s, and the busiest second at the provider.
3. From an outbox action stored to the first staff SMS request (p50/p99 over 200 runs).
4. End to end, in the daemon: from a leak event committed to the request that texts the
   on-call technician (a real Mosquitto, the shipped playbooks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.clock import SystemClock
from alertd.config import DeliveryConfig
from alertd.directory.staff import load_staff
from alertd.engine.state import Action, Decision, Incident
from alertd.events import Location, Severity
from alertd.outbox.dispatcher import Dispatcher
from alertd.store import Writer
from alertd.store import incidents as incidents_db
from alertd.store.directory import import_residents
from bench import fake_twilio_sms, q, quick_flag, residents_of
from tests.fake_twilio import FakeTwilio

TEXTS = {"zh": "您好，3号楼发生火警，请立即撤离。", "en": "Fire alarm in building 3: leave now."}


async def action(writer: Writer, incident_id: int, channel: str, target: str) -> None:
    now = SystemClock().now()
    incident = Incident(
        incident_id,
        "fire-alarm",
        f"building:HV/3/{incident_id}",
        "open",
        Severity.CRITICAL,
        Location("HV", "3"),
        "fire",
        now,
        now,
    )
    assert writer.store is not None
    await writer.call(
        incidents_db.save,
        writer.store.conn,
        [Decision(incident, actions=[Action(channel, target, TEXTS, True)])],
        now,
        incidents_db.Done(),
    )


async def run(quick: bool) -> None:
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "ERROR"))
    count = 2000 if quick else 10_000
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp:
        root = Path(tmp)
        fake = await FakeTwilio().start()
        writer = Writer(root / "alertd.db", synchronous="FULL")
        store = await writer.open()
        residents = residents_of(count, "3")
        await writer.call(import_residents, store.conn, residents, SystemClock().now())
        (root / "staff.yaml").write_text(
            "people:\n  Wang: {phone: '+8613900000001', roles: [security]}\n"
        )
        staff = load_staff(root / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
        sinks = fake_twilio_sms(fake.base_url)

        async def fan_out(config: DeliveryConfig, incident_id: int) -> float:
            dispatcher = Dispatcher(writer, sinks, SystemClock(), config, staff)
            before = len(fake.sms())
            t0 = time.perf_counter()
            await action(writer, incident_id, "sms", "building")
            await dispatcher.step()
            elapsed = time.perf_counter() - t0
            assert len(fake.sms()) - before == count, "not every resident was texted"
            return elapsed

        elapsed = await fan_out(DeliveryConfig(concurrency=100), 1)  # type: ignore[call-arg]
        print(
            f"fan-out: {count:,} resident SMS in {elapsed:.2f} s "
            f"({count / elapsed:,.0f}/s), each accepted once"
        )
        rate = 200.0
        limited = DeliveryConfig(concurrency=100, sms_per_s=rate)  # type: ignore[call-arg]
        fake.rate_limit = int(rate)
        first = len(fake.requests)
        elapsed = await fan_out(limited, 2)
        fake.rate_limit = None
        answered = fake.requests[first:]
        refused = sum(r["answered"] == 429 for r in answered)
        print(
            f"sms_per_s {rate:.0f} against a provider allowing {rate:.0f}/s (429 beyond): "
            f"achieved {count / elapsed:,.1f}/s ({count / elapsed / rate:.1%} of the limit), "
            f"{refused} answered 429, busiest second at the provider "
            f"{busiest_second([float(r['at']) for r in answered])} requests"
        )

        dispatcher = Dispatcher(writer, sinks, SystemClock(), DeliveryConfig(), staff)  # type: ignore[call-arg]
        latencies = []
        for n in range(20 if quick else 200):
            before = len(fake.requests)
            t0 = time.perf_counter()
            await action(writer, 100 + n, "notify", "role:security")
            await dispatcher.step()  # sent, and its outcome recorded
            assert len(fake.requests) == before + 1
            latencies.append(fake.requests[-1]["at"] - t0)
        print(
            f"action stored -> staff SMS request: p50={q(latencies, 50) * 1000:.1f} ms "
            f"p99={q(latencies, 99) * 1000:.1f} ms"
        )
        for sink in sinks.values():
            await sink.close()
        await writer.close()
        await fake.close()
        await end_to_end(root, 20 if quick else 200)


def busiest_second(times: list[float]) -> int:
    """The most of `times` (seconds) in any one-second window."""
    times = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def end_to_end(root: Path, count: int) -> None:
    from alertd.config import load_config
    from alertd.daemon import Daemon
    from tests.broker import Broker
    from tests.mqtt_tools import Publisher

    fake = await FakeTwilio().start()  # a fresh one: its request log is polled below
    broker = Broker(root / "mosquitto").start()
    folder = root / "e2e"
    folder.mkdir()
    (folder / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\n"
        + "".join(
            f"leak-{n},zigbee2mqtt,zigbee2mqtt/leak_{n},3,{n % 30},{n % 30}{n:04d}\n"
            for n in range(count)
        )
    )
    (folder / "staff.yaml").write_text(
        "people:\n  Sun: {phone: '+8613900000004', roles: [maintenance]}\n"
        "oncall:\n  maintenance:\n    - {who: Sun, start: '00:00', end: '00:00'}\n"
    )
    playbooks = Path(__file__).parent.parent / "playbooks"
    (folder / "alertd.yaml").write_text(
        f"mqtt: {{port: {broker.port}, client_id: bench-e2e}}\n"
        f"storage: {{path: alertd.db}}\ndevices: devices.csv\nplaybooks: {playbooks}\n"
        "staff: staff.yaml\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: x, from_number: '+15005550006', "
        f"api_base_url: '{fake.base_url}'}}\n"
    )
    daemon = Daemon(load_config(folder / "alertd.yaml"))
    committed: dict[str, float] = {}
    await daemon.start()
    daemon.ingest.listeners.append(lambda e: committed.setdefault(e.device_id, time.perf_counter()))
    await asyncio.wait_for(daemon.mqtt.connected.wait(), 10)
    pub = Publisher(broker, "bench-e2e-publisher")

    def staff_sms() -> list[dict[str, object]]:
        return [r for r in fake.sms() if r["form"]["To"] == "+8613900000004"]

    latencies = []
    try:
        for n in range(count):
            before = len(staff_sms())
            await asyncio.to_thread(pub.publish, f"zigbee2mqtt/leak_{n}", '{"water_leak":true}')
            async with asyncio.timeout(10):
                while len(staff_sms()) <= before:  # noqa: ASYNC110 - the fake's request log
                    await asyncio.sleep(0.001)
            sent_at = float(staff_sms()[before]["at"])  # type: ignore[arg-type]
            latencies.append(sent_at - committed[f"leak-{n}"])
    finally:
        pub.close()
        await daemon.close()
        broker.stop()
        await fake.close()
    print(
        f"leak event committed -> the on-call technician's SMS request (the daemon, end to "
        f"end): n={len(latencies)} p50={q(latencies, 50) * 1000:.1f} ms "
        f"p99={q(latencies, 99) * 1000:.1f} ms"
    )


def main() -> None:
    asyncio.run(run(quick_flag(__doc__)))


if __name__ == "__main__":
    main()
