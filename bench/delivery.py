"""Delivery benchmark: `python -m bench.delivery` (part of `make bench`).

Against the local fake Twilio (unthrottled), with the real twilio SDK:
1. 10,000 resident SMS: from the incident's actions being stored to the last request
   accepted.
2. A configured rate limit of R/s: the achieved rate.
3. From an outbox action stored to the first staff SMS request (p50/p99 over 200 runs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from alertd.clock import SystemClock
from alertd.config import DeliveryConfig, TwilioConfig
from alertd.directory.residents import Resident, import_residents
from alertd.directory.staff import load_staff
from alertd.engine.state import Action, Decision, Incident
from alertd.events import Location, Severity
from alertd.outbox.dispatcher import Dispatcher
from alertd.store import Writer
from alertd.store import incidents as incidents_db
from bench import quick_flag
from integrations.twilio.sink import TwilioSink
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
        residents = [
            Resident(
                "3", str(n % 30), f"{n % 30}{n:05d}", f"R{n}", f"+86138{n:08d}", "zh", n % 10 == 0
            )
            for n in range(count)
        ]
        await writer.call(import_residents, store.conn, residents, SystemClock().now())
        (root / "staff.yaml").write_text(
            "people:\n  Wang: {phone: '+8613900000001', roles: [security]}\n"
        )
        staff = load_staff(root / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
        twilio = TwilioConfig(
            account_sid="AC" + "0" * 32,
            auth_token=SecretStr("x"),
            from_number="+15005550006",
            api_base_url=fake.base_url,
        )
        sinks = {"sms": TwilioSink(twilio, "sms")}

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
        elapsed = await fan_out(limited, 2)
        print(
            f"rate limit {rate:.0f}/s: achieved {count / elapsed:,.1f}/s "
            f"({count / elapsed / rate:.1%} of the limit)"
        )

        dispatcher = Dispatcher(writer, sinks, SystemClock(), DeliveryConfig(), staff)  # type: ignore[call-arg]
        latencies = []
        for n in range(20 if quick else 200):
            before = len(fake.requests)
            t0 = time.perf_counter()
            await action(writer, 100 + n, "notify", "role:security")
            await dispatcher.step()
            assert len(fake.requests) == before + 1
            latencies.append(time.perf_counter() - t0)
        q = statistics.quantiles(latencies, n=100)
        print(
            f"action stored -> staff SMS request answered: p50={q[49] * 1000:.1f} ms "
            f"p99={q[98] * 1000:.1f} ms"
        )
        for sink in sinks.values():
            await sink.close()
        await writer.close()
        await fake.close()


def main() -> None:
    asyncio.run(run(quick_flag(__doc__)))


if __name__ == "__main__":
    main()
