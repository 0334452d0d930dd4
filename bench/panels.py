"""Fire panel benchmark: `python -m bench.panels [--quick]` (part of `make bench`).

1. From the last byte of a fire alarm line written to a pseudo-terminal to the event
   committed (AlarmDecoder `!LRR` Contact ID lines; every line a new zone in alarm).
2. A SIA DC-09 receiver under 100 concurrent TCP connections sending 1,000 frames/s in
   total (ADM-CID alarms and restores, each frame waiting for its ACK as panels do), from
   a separate process: frames/s ACKed and the ACK latency.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path

from alertd.config import load_config
from alertd.daemon import Daemon
from alertd.events import Event
from bench import q, quick_flag
from integrations.panels import sia_dc09
from integrations.panels.simulate import open_pty_link
from tests.broker import Broker, free_port

CONNECTIONS = 100


async def serial_latency(daemon: Daemon, fd: int, count: int) -> None:
    sent: dict[str, float] = {}
    committed: dict[str, float] = {}
    done = asyncio.Event()

    def on_event(event: Event) -> None:
        committed[event.device_id] = time.perf_counter()
        if len(committed) >= count:
            done.set()

    daemon.ingest.listeners.append(on_event)

    def write() -> None:
        for i in range(1, count + 1):
            line = f"!LRR:{i:03d},1,CID_1111,ff\r\n".encode()
            os.write(fd, line)
            sent[f"facp:{i:03d}"] = time.perf_counter()  # the last byte is on the wire
            time.sleep(0.02)

    writer = threading.Thread(target=write)
    writer.start()
    await asyncio.wait_for(done.wait(), 60)
    writer.join()
    daemon.ingest.listeners.remove(on_event)
    lat = [committed[d] - sent[d] for d in sent]
    print(
        f"serial panel: last byte of a fire alarm line -> event committed: n={len(lat)} "
        f"p50={q(lat, 50) * 1000:.2f} ms p99={q(lat, 99) * 1000:.2f} ms "
        f"max={max(lat) * 1000:.2f} ms"
    )


def dc09_clients(port: int, seconds: int, result: mp.Queue) -> None:  # type: ignore[type-arg]
    """100 panels, each sending 10 frames/s and waiting for each ACK."""

    async def panel(n: int, latencies: list[float], acks: list[int]) -> None:
        account = f"{1000 + n}"
        frames = [
            sia_dc09.message(
                "ADM-CID",
                k % 9999 + 1,
                account,
                f"#{account}|{1 if k % 2 == 0 else 3}110 01 {k % 50:03d}",
            )
            for k in range(seconds * 10)
        ]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.perf_counter()
        for k, frame in enumerate(frames):
            pause = start + k / 10 + n / 1000 - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            t = time.perf_counter()
            writer.write(frame)
            answer = await reader.readuntil(b"\r")
            latencies.append(time.perf_counter() - t)
            acks.append(b'"ACK"' in answer)
        writer.close()

    async def main() -> None:
        latencies: list[float] = []
        acks: list[int] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(panel(n, latencies, acks) for n in range(CONNECTIONS)))
        result.put((len(acks), sum(acks), time.perf_counter() - t0, latencies))

    asyncio.run(main())


async def run(quick: bool) -> None:
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "ERROR"))
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp:
        root = Path(tmp)
        broker = Broker(root / "mosquitto").start()
        fd = open_pty_link(root / "panel")
        port = free_port()
        try:
            (root / "devices.csv").write_text("device_id,profile,topic\n")
            (root / "alertd.yaml").write_text(
                f"mqtt: {{port: {broker.port}, client_id: bench-panels}}\n"
                "storage: {path: alertd.db, synchronous: FULL}\ndevices: devices.csv\n"
                f"panels: {{facp: {{protocol: alarmdecoder, port: {root / 'panel'}}}}}\n"
                f"receivers: {{central: {{host: 127.0.0.1, port: {port}, udp: false}}}}\n"
            )
            daemon = Daemon(load_config(root / "alertd.yaml"))
            await daemon.start()
            await asyncio.wait_for(daemon.panels.links[0].connected.wait(), 10)
            await serial_latency(daemon, fd, 100 if quick else 500)

            seconds = 3 if quick else 10
            ctx = mp.get_context("spawn")
            result: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
            proc = ctx.Process(target=dc09_clients, args=(port, seconds, result))
            proc.start()
            sent, acked, elapsed, lat = await asyncio.get_running_loop().run_in_executor(
                None, result.get
            )
            proc.join()
            print(
                f"DC-09 receiver: {CONNECTIONS} TCP connections, {sent} frames in "
                f"{elapsed:.1f} s = {sent / elapsed:,.0f} frames/s offered, {acked} ACKed; "
                f"ACK latency p50={q(lat, 50) * 1000:.1f} ms p99={q(lat, 99) * 1000:.1f} ms"
            )
            print(
                f"events committed: {daemon.ingest.counts['events']}, "
                f"dead letters: {daemon.ingest.counts['dead_letters']}"
            )
            await daemon.close()
        finally:
            os.close(fd)
            broker.stop()


def main() -> None:
    asyncio.run(run(quick_flag(__doc__)))


if __name__ == "__main__":
    main()
