"""The daemon against a real Mosquitto: real formats in, durable events out."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from alertd.config import Config
from alertd.events import Kind, State
from alertd.store import SqliteStore
from tests.broker import Broker
from tests.conftest import fixture_messages
from tests.mqtt_tools import Live, Publisher, config, until
from tests.proxy import FreezableProxy

HEADER = "device_id,profile,topic,site,building,floor,unit,zone,heartbeat_s,kind\n"
Z2M = (
    HEADER
    + "leak-boiler,zigbee2mqtt,zigbee2mqtt/basement/water_leak_boiler,,1,B1,,boiler,,\n"
    + "smoke-3b,zigbee2mqtt,zigbee2mqtt/flat_3b/smoke_kitchen,,3,12,1203,kitchen,,\n"
    + "pump,zigbee2mqtt,zigbee2mqtt/plant_room/plug_sump_pump,,1,B1,,plant room,,\n"
)


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Callable[[Config], Any]]:
    started: list[Live] = []

    async def start(cfg: Config) -> Live:
        r = await Live(cfg).start()
        started.append(r)
        return r

    yield start
    for r in started:
        await r.stop()


async def publish(broker: Broker, messages: list[tuple[str, str]]) -> None:
    pub = Publisher(broker)
    try:
        await asyncio.to_thread(pub.publish_all, messages)
    finally:
        pub.close()


def stored(cfg: Config) -> list[dict[str, Any]]:
    store = SqliteStore(cfg.storage.path)
    try:
        return list(store.events())
    finally:
        store.close()


async def test_zigbee2mqtt_fixture_stream_becomes_edge_triggered_events(
    tmp_path: Path, broker: Broker, run: Callable[[Config], Any]
) -> None:
    cfg = config(tmp_path, broker, Z2M)
    r = await run(cfg)
    messages = [(m["topic"], m["payload"]) for m in fixture_messages("zigbee2mqtt.json")]
    await publish(broker, messages)
    expected = [
        ("leak-boiler", Kind.LEAK, State.ACTIVE),
        ("leak-boiler", Kind.LEAK, State.RESTORE),
        ("leak-boiler", Kind.SENSOR_OFFLINE, State.ACTIVE),
        ("leak-boiler", Kind.SENSOR_OFFLINE, State.RESTORE),
        ("smoke-3b", Kind.FIRE_ALARM, State.ACTIVE),
        ("smoke-3b", Kind.FIRE_ALARM, State.RESTORE),
        ("smoke-3b", Kind.DEVICE_TAMPER, State.ACTIVE),
        ("smoke-3b", Kind.FIRE_ALARM, State.ACTIVE),  # the test button
        ("smoke-3b", Kind.DEVICE_TAMPER, State.RESTORE),
        ("pump", Kind.SENSOR_OFFLINE, State.ACTIVE),
    ]
    await r.seen.until(lambda evs: len(evs) >= len(expected))
    got = sorted((e.device_id, e.kind, e.state, e.id) for e in r.seen.events)
    assert [g[:3] for g in sorted(got, key=lambda g: g[3])] == expected
    # an unknown device (the IEEE-address topic) is a dead letter; bridge chatter is not
    await r.stop()
    store = SqliteStore(cfg.storage.path)
    letters = store.dead_letters()
    store.close()
    assert [(d["topic"], d["reason"]) for d in letters] == [
        (
            "zigbee2mqtt/0x00158d0001a2b3c4",
            "unknown device: no row of the devices file owns this topic",
        )
    ]
    rows = stored(cfg)
    assert [r_["id"] for r_ in rows] == list(range(1, len(expected) + 1))
    fire = next(row for row in rows if row["kind"] == "fire.alarm")
    assert (fire["site"], fire["building"], fire["floor"], fire["unit"], fire["zone"]) == (
        "Test Site",
        "3",
        "12",
        "1203",
        "kitchen",
    )
    assert json.loads(fire["raw"])["smoke"] is True


def leak_messages(devices: int, rounds: int, start: int = 0) -> list[tuple[str, str]]:
    """Alternating wet/dry reports: every message is a change, so every one is an event."""
    return [
        (
            f"zigbee2mqtt/flat_{d}/leak",
            json.dumps({"water_leak": (n % 2 == 0), "seq": n, "battery": 90, "linkquality": 100}),
        )
        for n in range(start, start + rounds)
        for d in range(devices)
    ]


def leak_devices(n: int) -> str:
    return HEADER + "".join(
        f"leak-{d},zigbee2mqtt,zigbee2mqtt/flat_{d}/leak,,1,{d // 10},{d},bath,,\n"
        for d in range(n)
    )


async def test_messages_published_while_alertd_is_down_are_delivered_on_return(
    tmp_path: Path, broker: Broker, run: Callable[[Config], Any]
) -> None:
    cfg = config(tmp_path, broker, leak_devices(50), client_id="alertd-away")
    first = await run(cfg)
    await first.stop()
    await publish(broker, leak_messages(50, 4))
    second = await run(cfg)
    await second.seen.until(lambda evs: len(evs) >= 200)
    assert len({(e.device_id, json.loads(e.raw)["seq"]) for e in second.seen.events}) == 200


async def test_a_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, own_broker: Broker, run: Callable[[Config], Any]
) -> None:
    cfg = config(tmp_path, own_broker, leak_devices(100), client_id="alertd-restart")
    r = await run(cfg)
    await publish(own_broker, leak_messages(100, 5))
    own_broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages
    own_broker.start()
    await publish(own_broker, leak_messages(100, 5, start=5))
    await r.seen.until(lambda evs: len(evs) >= 1000, within=30)
    await r.stop()
    keys = [(row["device_id"], json.loads(row["raw"])["seq"]) for row in stored(cfg)]
    assert len(keys) == len(set(keys)) == 1000
    assert r.daemon.mqtt.connects >= 2


async def test_a_broker_crash_is_survived(
    tmp_path: Path, own_broker: Broker, run: Callable[[Config], Any]
) -> None:
    """SIGKILL: the broker may lose what it had not saved, but alertd reconnects, keeps
    what it committed, and takes what comes after."""
    cfg = config(tmp_path, own_broker, leak_devices(50), client_id="alertd-broker-crash")
    r = await run(cfg)
    await publish(own_broker, leak_messages(50, 2))
    await r.seen.until(lambda evs: len(evs) >= 100)
    own_broker.stop(signal.SIGKILL)
    own_broker.start()
    await asyncio.wait_for(_reconnected(r), 30)
    await publish(own_broker, leak_messages(50, 2, start=2))
    await r.seen.until(lambda evs: len(evs) >= 200)
    await r.stop()
    keys = [(row["device_id"], json.loads(row["raw"])["seq"]) for row in stored(cfg)]
    assert len(keys) == len(set(keys)) == 200


async def _reconnected(r: Live) -> None:
    await until(lambda: r.daemon.mqtt.connects >= 2 and r.daemon.mqtt.connected.is_set(), 30)


async def test_a_half_open_connection_is_noticed_and_replaced(
    tmp_path: Path, broker: Broker, run: Callable[[Config], Any]
) -> None:
    proxy = await FreezableProxy(broker.port).start()
    try:
        cfg = config(tmp_path, broker, leak_devices(1), client_id="alertd-half-open")
        cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"port": proxy.port})})
        r = await run(cfg)
        proxy.freeze()  # the network drops everything; no FIN, no RST
        await publish(broker, leak_messages(1, 1))
        # noticed after about 1.5-2x keepalive (5 s), then the queued message arrives
        await r.seen.until(lambda evs: len(evs) == 1, within=30)
        assert r.daemon.mqtt.connects == 2
    finally:
        await proxy.close()


async def test_a_clean_stop_commits_what_it_took_and_the_rest_waits_in_the_broker(
    tmp_path: Path, broker: Broker, run: Callable[[Config], Any], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, broker, leak_devices(20), client_id="alertd-clean-stop")
    first = await run(cfg)
    await publish(broker, leak_messages(20, 10))
    await first.stop()  # immediately: some messages are queued, some not yet received
    assert "gave up" not in caplog.text
    second = await run(cfg)
    await second.seen.until(lambda evs: len(first.seen.events) + len(evs) >= 200)
    keys = [(row["device_id"], json.loads(row["raw"])["seq"]) for row in stored(cfg)]
    assert len(keys) == len(set(keys)) == 200


async def test_packets_read_together_all_reach_alertd_though_the_socket_stays_quiet() -> None:
    """alertd reads the broker's socket 64 KiB at a time (paho alone asked for each
    packet's bytes in three or four system calls) and hands paho one packet a call: those
    of one read beyond the first few must still be handed over, though the socket, now
    empty, never becomes readable again. Forty PUBLISH packets in one write, then
    silence: all forty arrive, in order."""
    import socket

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from integrations.mqtt.client import PACKETS_PER_TURN, ChunkedClient

    def publish(n: int) -> bytes:  # MQTT 5 PUBLISH, QoS 0, no properties
        topic, payload = b"zigbee2mqtt/leak", b'{"seq": %d}' % n
        body = len(topic).to_bytes(2, "big") + topic + b"\x00" + payload
        return bytes([0x30, len(body)]) + body

    ours, broker_side = socket.socketpair()
    ours.setblocking(False)
    client = ChunkedClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client._sock = ours  # connected, as paho's connect leaves it
    got: list[bytes] = []
    client.on_message = lambda c, u, msg: got.append(msg.payload)
    count = PACKETS_PER_TURN * 2 + 8
    broker_side.sendall(b"".join(publish(n) for n in range(count)))
    loop = asyncio.get_running_loop()
    loop.add_reader(ours, client.on_readable)
    try:
        await until(lambda: len(got) == count)
    finally:
        loop.remove_reader(ours)
        ours.close()
        broker_side.close()
    assert got == [b'{"seq": %d}' % n for n in range(count)]


async def test_every_publish_reaches_alertd_whole_with_or_without_properties() -> None:
    """PUBLISH packets without MQTT 5 properties are read by alertd itself (paho's own
    reading built a properties object, a message with a lock and a log line for each);
    the others go through paho. Either way each arrives with its topic, payload, QoS,
    retain and duplicate flags and packet id, in order."""
    import socket

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from integrations.mqtt.client import ChunkedClient

    def packet(
        topic: str, payload: bytes, qos: int, retain: bool, dup: bool, mid: int, properties: bytes
    ) -> bytes:
        name = topic.encode()
        body = len(name).to_bytes(2, "big") + name
        body += mid.to_bytes(2, "big") if qos else b""
        body += bytes([len(properties)]) + properties + payload
        flags = (qos << 1) | int(retain) | (int(dup) << 3)
        return bytes([0x30 | flags, len(body)]) + body

    expiry = b"\x02" + (60).to_bytes(4, "big")  # message expiry interval: 60 s
    sent = [
        ("zigbee2mqtt/leak_1", b'{"water_leak":true}', 1, False, False, 7, b""),
        ("zigbee2mqtt/leak_2", b'{"water_leak":false}', 1, False, True, 8, expiry),
        ("zigbee2mqtt/leak_2", b'{"water_leak":false}', 1, False, True, 9, b""),
        ("tele/mains_b3/LWT", b"Offline", 0, True, False, 0, b""),
        ("tele/mains_b3/LWT", b"Online", 0, True, False, 0, expiry),
        ("zigbee2mqtt/\u6f0f\u6c34", b"", 1, False, False, 65535, b""),
    ]
    ours, broker_side = socket.socketpair()
    ours.setblocking(False)
    client = ChunkedClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    client._sock = ours  # connected, as paho's connect leaves it
    got: list[tuple[object, ...]] = []
    paths: list[str] = []  # who read each: alertd, or paho
    client.on_publish_read = lambda *read: (got.append(read), paths.append("alertd"))
    client.on_message = lambda c, u, m: (
        got.append((m.topic, m.payload, m.qos, m.retain, m.dup, m.mid)),
        paths.append("paho"),
    )
    broker_side.sendall(b"".join(packet(*p) for p in sent))
    loop = asyncio.get_running_loop()
    loop.add_reader(ours, client.on_readable)
    try:
        await until(lambda: len(got) == len(sent))
    finally:
        loop.remove_reader(ours)
        ours.close()
        broker_side.close()
    assert got == [p[:6] for p in sent]
    assert paths == ["paho" if p[6] else "alertd" for p in sent]  # properties: paho's
    assert client._out_packet == deque()  # acks are alertd's to send, once stored


def test_acknowledgements_queued_together_go_in_one_write() -> None:
    """A commit acknowledges every message it stored (hundreds under a storm): paho wrote
    each PUBACK with a system call of its own. They go in one write, in order."""
    import socket
    import struct

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from integrations.mqtt.client import ChunkedClient

    ours, broker_side = socket.socketpair()
    client = ChunkedClient(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    client._sock = ours  # connected, as paho's connect leaves it
    client.on_socket_register_write = lambda c, u, sock: None  # the loop writes later
    writes: list[int] = []
    send = client._sock_send

    def counted(buf: bytes | bytearray) -> int:
        writes.append(len(buf))
        return send(buf)

    client._sock_send = counted  # type: ignore[method-assign]
    for mid in range(1, 41):
        client.ack(mid, 1)
    client.loop_write()
    received = broker_side.recv(4096)
    ours.close()
    broker_side.close()
    assert writes == [40 * 4]
    assert received == b"".join(struct.pack("!BBH", 0x40, 2, mid) for mid in range(1, 41))
