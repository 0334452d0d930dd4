"""Failover on PostgreSQL: `python -m bench.failover [--quick]`.

Two `alertd run` processes on one PostgreSQL store (a server started here, fsync on),
one active and one standing by, the shipped configuration's lease (`storage.lease_s`,
5 s), a real Mosquitto with its default settings and the fake Twilio. Each try: kill -9
the active instance, publish a fire on a detector of its own at once, and time until
the standby, now active, makes security's SMS request; then start a new standby for
the next try. Reports p50/p99/max over the tries (20; 5 with --quick).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench import q, quick_flag
from tests.broker import Broker
from tests.fake_twilio import FakeTwilio
from tests.helpers import start_daemon, wait_for
from tests.mqtt_tools import publish
from tests.postgres import Cluster
from tests.test_failover import SECURITY, write_site


def _active(proc: subprocess.Popen[bytes], log: Path) -> bool:
    return proc.poll() is None and b"connected to MQTT" in log.read_bytes()


async def run(tries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cluster = Cluster(durable=True).start()
        broker = Broker(root / "mosquitto").start()
        fake = await FakeTwilio().start()
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        took: list[float] = []
        try:
            config = write_site(root, broker, fake, cluster.url(), 5.0)
            rows = ["device_id,profile,topic,building,floor,unit"]
            rows += [f"smoke-{n},zigbee2mqtt,z/smoke_{n},{n},1,0101" for n in range(tries)]
            (root / "devices.csv").write_text("\n".join(rows) + "\n")

            def started(n: int) -> tuple[subprocess.Popen[bytes], Path]:
                log = root / f"alertd-{n}.log"
                procs.append((start_daemon(config, log), log))
                return procs[-1]

            active, log = started(0)
            await asyncio.to_thread(wait_for, lambda: _active(active, log), 60, "the first")
            for n in range(tries):
                standby, standby_log = started(n + 1)
                await asyncio.to_thread(
                    wait_for,
                    lambda log=standby_log: b"standing by" in log.read_bytes(),
                    60,
                    "a standby",
                )
                before = len([r for r in fake.sms() if r["form"]["To"] == SECURITY])
                os.kill(active.pid, signal.SIGKILL)
                active.wait(10)
                killed = time.perf_counter()
                await asyncio.to_thread(publish, broker, f"z/smoke_{n}", '{"smoke": true}')
                sent: list[float] = []
                deadline = time.monotonic() + 60
                while not sent and time.monotonic() < deadline:
                    texts = [r for r in fake.sms() if r["form"]["To"] == SECURITY]
                    sent = [r["at"] for r in texts[before:]]
                    await asyncio.sleep(0.01)
                if not sent:
                    raise TimeoutError(f"try {n}: no SMS to security within 60 s")
                took.append(sent[0] - killed)
                print(f"try {n + 1}: kill -9 -> security's SMS request {took[-1]:.2f} s")
                active, log = standby, standby_log
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(20)
            await fake.close()
            broker.stop()
            cluster.remove()
    print(
        f"failover over {len(took)} tries, lease 5 s: p50={q(took, 50):.2f} s "
        f"p99={q(took, 99):.2f} s max={max(took):.2f} s"
    )


def main() -> None:
    asyncio.run(run(5 if quick_flag(__doc__) else 20))


if __name__ == "__main__":
    main()
