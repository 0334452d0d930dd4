"""Ingest benchmark: `make bench` or `python -m bench.ingest [--quick] [--postgres]`.

Runs alertd's daemon in this process (durability on: synchronous=FULL, QoS 1, manual
acks after commit) against a real Mosquitto, with 2,000 devices, and publishers in
separate processes. Reports:

1. sustained ingest of mixed traffic (leak sensors, smoke detectors, plugs, Tasmota
   and Shelly energy monitors) in messages/s, with loss counted;
2. p50/p99 latency from publish to event committed at a paced 500 messages/s;
3. resident memory (RSS) with 2,000 devices after the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from alertd.config import load_config
from alertd.daemon import Daemon
from alertd.events import Event
from bench import bench_store, q, rss_mib, storage_line, store_flags
from tests.broker import Broker

DEVICES = 2000
KINDS = ("leak", "smoke", "plug", "tasmota", "shelly")


def devices_csv() -> str:
    rows = ["device_id,profile,topic,building,floor,unit,zone,heartbeat_s"]
    for i in range(DEVICES):
        kind = KINDS[i % len(KINDS)]
        profile, topic = {
            "leak": ("zigbee2mqtt", f"zigbee2mqtt/leak_{i}"),
            "smoke": ("zigbee2mqtt", f"zigbee2mqtt/smoke_{i}"),
            "plug": ("zigbee2mqtt", f"zigbee2mqtt/plug_{i}"),
            "tasmota": ("tasmota", f"tasmota_{i}"),
            "shelly": ("shelly_gen2", f"shellyplus1pm-{i}"),
        }[kind]
        rows.append(f"dev-{i},{profile},{topic},{i // 200},{i // 10 % 20},{i},z,3600")
    return "\n".join(rows) + "\n"


def message(i: int, n: int, stamp: float | None = None) -> tuple[str, str]:
    """Device i's n-th report. Leak sensors alternate (every report an event); the rest
    repeat their state with changing telemetry, as real devices do."""
    kind = KINDS[i % len(KINDS)]
    extra = {"t": stamp} if stamp is not None else {}
    if kind == "leak":
        body = {"water_leak": n % 2 == 1, "battery": 97, "linkquality": 80 + n % 50, **extra}
        return f"zigbee2mqtt/leak_{i}", json.dumps(body)
    if kind == "smoke":
        return f"zigbee2mqtt/smoke_{i}", json.dumps(
            {"smoke": False, "battery_low": False, "tamper": False, "linkquality": n % 255}
        )
    if kind == "plug":
        return f"zigbee2mqtt/plug_{i}", json.dumps(
            {"state": "ON", "power": 100 + n % 40, "voltage": 229 + n % 3, "current": 0.5}
        )
    if kind == "tasmota":
        return f"tele/tasmota_{i}/SENSOR", json.dumps(
            {
                "Time": "2026-11-27T12:00:00",
                "ENERGY": {"Voltage": 230, "Power": n % 500, "Current": 1.2, "Total": 12.5},
            }
        )
    return f"shellyplus1pm-{i}/status/switch:0", json.dumps(
        {"id": 0, "output": True, "apower": n % 300, "voltage": 230.1, "current": 0.4}
    )


def publish(port: int, worker: int, workers: int, rounds: int) -> float:
    """Publish QoS 1 from its own process; returns messages/s achieved by the publisher."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    mine = [i for i in range(DEVICES) if i % workers == worker]
    messages = [message(i, n) for n in range(rounds) for i in mine]  # built before timing
    infos = []
    start = time.perf_counter()
    sent = 0
    for topic, payload in messages:
        infos.append(client.publish(topic, payload, qos=1))
        sent += 1
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return sent / elapsed


async def run(quick: bool, postgres: bool) -> None:
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "ERROR"))
    rounds = 10 if quick else 40
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp, bench_store(postgres) as url:
        root = Path(tmp)
        broker = Broker(root / "mosquitto").start()
        try:
            (root / "devices.csv").write_text(devices_csv())
            (root / "alertd.yaml").write_text(
                f"mqtt: {{port: {broker.port}, client_id: bench}}\n"
                + storage_line(url)
                + "devices: devices.csv\nlog_level: ERROR\n"
            )
            daemon = Daemon(load_config(root / "alertd.yaml"))
            await daemon.start()
            await asyncio.wait_for(daemon.mqtt.connected.wait(), 10)
            ingest = daemon.ingest
            latencies: list[float] = []
            ingest.listeners.append(lambda e: _latency(e, latencies))
            ctx = mp.get_context("spawn")
            loop = asyncio.get_running_loop()

            async def reports_reach(target: int) -> None:
                # polls a counter; 10 ms is plenty for a benchmark harness
                while ingest.counts["reports"] < target:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                await ingest.drained()

            # warm-up: every device reports once
            with ctx.Pool(1) as pool:
                await loop.run_in_executor(None, pool.apply, publish, (broker.port, 0, 1, 1))
            await reports_reach(DEVICES)

            # 1. sustained throughput, two publisher processes
            total = DEVICES * rounds
            before = ingest.counts["reports"]
            t0, cpu0 = time.perf_counter(), time.process_time()
            with ctx.Pool(2) as pool:
                pending = [pool.apply_async(publish, (broker.port, w, 2, rounds)) for w in range(2)]
                await reports_reach(before + total)
                t1, cpu1 = time.perf_counter(), time.process_time()
                pub_rates = [p.get() for p in pending]
            lost = total - (ingest.counts["reports"] - before)
            print(
                f"throughput: {total} mixed messages in {t1 - t0:.2f} s = "
                f"{total / (t1 - t0):,.0f} msg/s committed (publishers offered "
                f"{sum(pub_rates):,.0f} msg/s); lost {lost}, dropped "
                f"{ingest.counts['dropped']}, dead letters {ingest.counts['dead_letters']}"
            )
            print(
                f"alertd CPU: {(cpu1 - cpu0) / total * 1e6:.0f} us per message "
                f"({(cpu1 - cpu0) / (t1 - t0):.0%} of one core) while broker and publishers "
                "share the same 2 cores"
            )

            # 2. latency at a paced 500 msg/s (leak sensors only: each report is an event)
            latencies.clear()
            seconds = 4 if quick else 20
            before = ingest.counts["reports"]
            with ctx.Pool(1) as pool:
                await loop.run_in_executor(
                    None, pool.apply, _paced, (broker.port, 500, seconds, rounds)
                )
            await reports_reach(before + 500 * seconds)
            print(
                f"latency at 500 msg/s, publish -> event committed: n={len(latencies)} "
                f"p50={q(latencies, 50) * 1000:.1f} ms p99={q(latencies, 99) * 1000:.1f} ms "
                f"max={max(latencies) * 1000:.1f} ms"
            )
            print(
                f"memory: RSS {rss_mib():.0f} MiB with {DEVICES} devices "
                f"(daemon, store and this harness in one process)"
            )
            await daemon.close()
        finally:
            broker.stop()


def _paced(port: int, rate: int, seconds: int, start_round: int) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paced")
    client.connect("127.0.0.1", port)
    client.loop_start()
    leaks = [i for i in range(DEVICES) if KINDS[i % len(KINDS)] == "leak"]
    infos = []
    start = time.perf_counter()
    for k in range(rate * seconds):
        pause = start + k / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        i = leaks[k % len(leaks)]
        topic, payload = message(i, start_round + k // len(leaks), time.time())
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def _latency(event: Event, out: list[float]) -> None:
    stamp = json.loads(event.raw).get("t") if event.raw.startswith("{") else None
    if isinstance(stamp, float):
        out.append(time.time() - stamp)


def main() -> None:
    asyncio.run(run(*store_flags(__doc__)))


if __name__ == "__main__":
    main()
