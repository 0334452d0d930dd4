"""The whole path, as a peer is measured: `python -m bench.e2e [--quick] [--postgres]`.

What a user's configuration does: 60,000 devices in the devices file; each MQTT message
comes from a fresh device and is a leak that opens its own incident, whose playbook has
one webhook step (Slack format) to a local HTTP sink (aiohttp) that timestamps arrival.
alertd runs as its own process with every setting at its default but durability on
(synchronous=FULL) and log_level WARNING (and an `http:` port, to know when it is
subscribed): delivery's concurrency 20, one core (`cpu: one`), a real Mosquitto with its
default settings. Paced at 100 and 500 messages/s for 10 s each, then offered 2,000/s:
publish -> webhook arrival p50/p99, incidents/s taken at 2,000/s offered, lost, RSS, and
alertd's CPU per incident in each phase (what 2 cores make scarce).

Each phase is run first by a bare relay (MQTT in -> HTTP POST out, 50 at a time, nothing
stored: the kind of reference the issue measured) on the same broker, sink and publisher,
seconds before alertd: the machine is shared and its speed varies, and the relay says
what the broker, sink and publisher did at the time, a floor under alertd's figures (it
needs a fraction of alertd's CPU, so a machine busy enough to slow alertd may leave it
untouched). This relay is faster than the issue's (p99 0.8-2.8 ms here at 100 and 500/s,
where the issue's took 3.3-4.4 ms). Each phase also shows its p50 second by second: a
steady state, or a stall and its recovery.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import signal
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path

from aiohttp import web

from alertd.store.stores import open_reader
from bench import bench_store, q, rss_mib, storage_line, store_flags, subscribed
from tests.broker import Broker, free_port
from tests.helpers import start_daemon

#: devices in the devices file, as a user's site of that size has them
DEVICES = 60_000
#: the relay's topics (alertd subscribes to its devices' zigbee2mqtt/... only)
RELAY = "relay"
PLAYBOOK = """\
name: e2e-leak
match: {kinds: [leak]}
correlate: {by: device}
steps:
  - webhook: sink
    template: hook
templates:
  hook: {zh: "{{ incident }} {{ title }}", en: "{{ incident }} {{ title }}"}
"""


def publish(port: int, first: int, count: int, rate: float, out: Path, prefix: str) -> None:
    """Devices first .. first+count-1 each say "leak" once on `prefix`/leak_<n>, paced;
    their publish times (wall clock) go to `out`."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-{first}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    times = {}
    start = time.perf_counter()
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the offered load
        device = first + n
        times[device] = time.time()
        client.publish(f"{prefix}/leak_{device}", '{"water_leak": true}', qos=1)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    out.write_text(json.dumps(times))


def relay(port: int, url: str, ready: ProcessEvent) -> None:
    """The reference: each message on relay/# becomes a POST to the sink, at most 50 at a
    time (alertd's webhook concurrency here), nothing stored. Runs until terminated."""
    import aiohttp
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    async def main() -> None:
        loop = asyncio.get_running_loop()
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50))
        tasks: set[asyncio.Task[None]] = set()

        async def post(topic: str) -> None:
            async with session.post(url, json={"text": f"{topic} leak"}) as response:
                await response.read()

        def start(topic: str) -> None:
            task = asyncio.create_task(post(topic))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="e2e-relay")
        client.on_message = lambda _c, _u, m: loop.call_soon_threadsafe(start, m.topic)
        client.on_subscribe = lambda *_: ready.set()
        client.connect("127.0.0.1", port)
        client.subscribe(f"{RELAY}/#", qos=1)
        client.loop_start()
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass
class Phase:
    who: str
    rate: int
    #: device number -> publish time
    published: dict[int, float]
    #: device number -> publish -> webhook, seconds, of those that arrived
    latencies: dict[int, float]
    #: the process's CPU time (user and system) during the phase, seconds (alertd's)
    cpu_s: float = 0.0

    @property
    def first(self) -> float:
        """When the first message was offered: the publisher's interpreter starting
        (0.6-0.8 s measured here) is not the relay's or alertd's time."""
        return min(self.published.values())

    @property
    def taken(self) -> float:
        """Arrivals a second, from the first message offered to the last arrival."""
        if not self.latencies:
            return 0.0
        last = max(self.published[d] + s for d, s in self.latencies.items())
        return len(self.latencies) / (last - self.first)

    def by_second(self) -> str:
        """p50 of each second's messages: a steady state, or a stall and its recovery."""
        seconds: dict[int, list[float]] = {}
        for device, latency in self.latencies.items():
            seconds.setdefault(int(self.published[device] - self.first), []).append(latency * 1000)
        return " ".join(f"{q(v, 50):.1f}" for _, v in sorted(seconds.items())) + " ms"

    def line(self) -> str:
        ms = [x * 1000 for x in self.latencies.values()]
        offered = len(self.published)
        cpu = ""
        if self.cpu_s and ms:
            span = len(ms) / self.taken
            cpu = (
                f"; CPU {self.cpu_s / len(ms) * 1e6:,.0f} us per incident "
                f"({self.cpu_s / span:.0%} of a core)"
            )
        return (
            f"{self.rate:>5}/s offered, {self.who:<6}: {len(ms):,} of {offered:,} reached "
            f"the webhook (lost {offered - len(ms)}), {self.taken:,.0f}/s; publish -> "
            f"webhook p50={q(ms, 50):.1f} ms p99={q(ms, 99):.1f} ms{cpu}"
        )


async def run(quick: bool, postgres: bool) -> None:
    seconds = 3 if quick else 10
    phases = [(100, seconds), (500, seconds), (2000, seconds)]
    total = sum(rate * s for rate, s in phases)
    with tempfile.TemporaryDirectory(prefix="alertd-bench-") as tmp, bench_store(postgres) as url:
        root = Path(tmp)
        broker = Broker(root / "mosquitto").start()
        arrivals: dict[int, float] = {}

        async def hook(request: web.Request) -> web.Response:
            at = time.time()
            body = await request.json()
            device = int(str(body["text"]).split("leak_", 1)[1].split()[0].strip(",)"))
            arrivals.setdefault(device, at)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port, http_port = free_port(), free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        (root / "playbooks").mkdir()
        (root / "playbooks" / "leak.yaml").write_text(PLAYBOOK)
        rows = ["device_id,profile,topic,building,floor,unit,zone"]
        rows += [
            f"leak_{i},zigbee2mqtt,zigbee2mqtt/leak_{i},1,1,{i},leak_{i}"
            for i in range(max(DEVICES, total))
        ]
        (root / "devices.csv").write_text("\n".join(rows) + "\n")
        (root / "alertd.yaml").write_text(
            f"mqtt: {{port: {broker.port}, client_id: bench-e2e}}\n"
            + storage_line(url)
            + "devices: devices.csv\nplaybooks: playbooks\n"
            f"webhooks: {{sink: {{url: 'http://127.0.0.1:{port}/hook', format: slack}}}}\n"
            f"http: {{port: {http_port}}}\n"
            "log_level: WARNING\n"
        )
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        reference = context.Process(
            target=relay, args=(broker.port, f"http://127.0.0.1:{port}/hook", ready)
        )
        reference.start()
        daemon = start_daemon(root / "alertd.yaml", root / "alertd.log")
        results: list[Phase] = []
        peak_rss = 0.0

        async def offer(who: str, prefix: str, first: int, rate: int, secs: int) -> Phase:
            """`rate` messages/s for `secs` on `prefix`/leak_<first...>; waits for them."""
            nonlocal peak_rss
            times_file = root / f"times-{who}-{rate}.json"
            args = (broker.port, first, rate * secs, rate, times_file, prefix)
            p = context.Process(target=publish, args=args)
            cpu_before = cpu_seconds(daemon.pid)
            started = time.time()
            p.start()
            while p.is_alive():
                await asyncio.sleep(0.2)
                peak_rss = max(peak_rss, rss_mib(daemon.pid))
            published = {int(k): v for k, v in json.loads(times_file.read_text()).items()}
            deadline = time.time() + 30
            while time.time() < deadline and not all(d in arrivals for d in published):
                await asyncio.sleep(0.1)
                peak_rss = max(peak_rss, rss_mib(daemon.pid))
            got = {d: arrivals[d] - t for d, t in published.items() if d in arrivals}
            used = cpu_seconds(daemon.pid) - cpu_before if who == "alertd" else 0.0
            phase = Phase(who, rate, published, got, used)
            print(f"  {phase.line()} (publisher started in {phase.first - started:.2f} s)")
            print(f"    p50 second by second: {phase.by_second()}", flush=True)
            return phase

        try:
            await subscribed(http_port)
            if not await asyncio.to_thread(ready.wait, 10):
                raise RuntimeError("the relay did not subscribe")
            first = 0
            for rate, secs in phases:
                results.append(await offer("relay", RELAY, total + first, rate, secs))
                results.append(await offer("alertd", "zigbee2mqtt", first, rate, secs))
                first += rate * secs
        finally:
            reference.terminate()
            reference.join(10)
            daemon.send_signal(signal.SIGTERM)
            await asyncio.to_thread(daemon.wait, 60)
            await runner.cleanup()
            broker.stop()
        times = stage_times(root / "alertd.db", url)
    print("publish -> webhook arrival, incidents (alertd) or POSTs (relay) a second:")
    for phase in results:
        print(phase.line())
        if phase.who == "alertd":
            for name, (p50, p99) in stages(times, phase.published, arrivals).items():
                print(f"        {name:<22} p50={p50:7.1f} ms  p99={p99:7.1f} ms")
    print(f"alertd RSS peak {peak_rss:.0f} MiB")


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time so far (/proc/PID/stat), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_times(db: Path, url: str | None) -> dict[int, tuple[float, float, float]]:
    """Device number -> (received, decided, expanded), from the store's own timestamps:
    the event's received_at, its incident's opened_at, its webhook message's due_at."""
    store = open_reader(db, url)
    rows = store.conn.execute(
        "SELECT e.device_id, e.received_at, min(i.opened_at), min(m.due_at) FROM events e "
        "JOIN timeline t ON t.event_id = e.id JOIN incidents i ON i.id = t.incident_id "
        "JOIN messages m ON m.incident_id = i.id GROUP BY e.id"
    ).fetchall()
    store.close()
    at = datetime.fromisoformat
    return {
        int(d.split("_", 1)[1]): (at(r).timestamp(), at(o).timestamp(), at(m).timestamp())
        for d, r, o, m in rows
    }


def stages(
    times: dict[int, tuple[float, float, float]],
    published: dict[int, float],
    arrivals: dict[int, float],
) -> dict[str, tuple[float, float]]:
    """p50 and p99 of each stage, in ms, over the devices that went all the way."""
    spans: dict[str, list[float]] = {
        "publish -> received": [],
        "received -> decided": [],
        "decided -> expanded": [],
        "expanded -> webhook": [],
    }
    for device, at in published.items():
        if device not in times or device not in arrivals:
            continue
        marks = [at, *times[device], arrivals[device]]
        for name, start, end in zip(spans, marks, marks[1:], strict=False):
            spans[name].append((end - start) * 1000)
    return {name: (q(v, 50), q(v, 99)) for name, v in spans.items() if v}


def main() -> None:
    asyncio.run(run(*store_flags(__doc__)))


if __name__ == "__main__":
    main()
