"""Test helpers around a real broker: a publishing client and daemon configurations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from alertd.clock import FakeClock
from alertd.config import Config, load_config
from alertd.daemon import Daemon
from alertd.events import Event
from alertd.store import SqliteStore
from tests.broker import Broker


class Publisher:
    """A plain paho client in its own thread; publishes QoS 1 and waits for PUBACK."""

    def __init__(self, broker: Broker, client_id: str = "test-publisher") -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def publish_all(self, messages: list[tuple[str, str]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_config(
    tmp_path: Path,
    broker: Broker,
    devices_csv: str,
    *,
    extra: str = "",
    client_id: str = "alertd-test",
) -> Path:
    (tmp_path / "devices.csv").write_text(devices_csv)
    path = tmp_path / "alertd.yaml"
    path.write_text(
        f"site: {{name: Test Site, timezone: Asia/Shanghai}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: {client_id}, keepalive_s: 5,"
        f" reconnect_max_s: 0.5}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        "devices: devices.csv\n"
        "ingest: {tick_s: 0.1}\n" + extra
    )
    return path


def config(tmp_path: Path, broker: Broker, devices_csv: str, **kw: str) -> Config:
    return load_config(write_config(tmp_path, broker, devices_csv, **kw))


class Collector:
    """Committed events, and a way to wait for a condition on them (no sleeping)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, predicate: Callable[[list[Event]], bool], within: float = 20) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()


def publish(broker: Broker, topic: str, payload: str) -> None:
    """One QoS 1 message, as a device would send it, from a client of its own."""
    pub = Publisher(broker, f"pub-{topic.rsplit('/', 1)[-1]}")
    try:
        pub.publish(topic, payload)
    finally:
        pub.close()


class Live:
    """A daemon running in the test's event loop, with its committed events collected."""

    def __init__(self, config: Config, clock: FakeClock | None = None) -> None:
        self.config = config
        self.daemon = Daemon(config, clock=clock) if clock else Daemon(config)
        self.seen = Collector()

    async def start(self) -> Live:
        await self.daemon.start()
        self.daemon.ingest.listeners.append(self.seen)
        await asyncio.wait_for(self.daemon.mqtt.connected.wait(), 10)
        return self

    async def stop(self) -> None:
        await self.daemon.close()

    async def __aenter__(self) -> Live:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def settled(self) -> None:
        """Everything received so far is committed and decided."""
        await self.daemon.ingest.drained()
        await self.daemon.dispatcher.step()  # and what the decisions put in the outbox is sent

    def dead_letters(self) -> list[dict[str, Any]]:
        store = SqliteStore(self.config.storage.path)
        try:
            return store.dead_letters()
        finally:
            store.close()


async def until(predicate: Callable[[], object], within: float = 20) -> None:
    """Wait for state that another process, thread or connection owns (a file, a fake
    server's request log, a reconnection count): nothing to await there, so poll it."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
