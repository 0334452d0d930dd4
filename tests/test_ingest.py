"""The ingest pipeline on a real SQLite file, in simulated time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.clock import FakeClock
from alertd.config import IngestConfig
from alertd.devices import Device
from alertd.events import Event, Kind, Observation, State
from alertd.ingest.pipeline import Ingest
from alertd.ingest.report import Receipt, Rejected, Report, Value
from alertd.store import SqliteStore, Writer
from alertd.store.batch import Batch
from alertd.store.events import Events
from alertd.store.postgres import PgStore
from integrations.mqtt.client import Incoming
from integrations.mqtt.profiles import Decoded
from integrations.mqtt.router import Router
from integrations.mqtt.source import MqttSource
from tests.helpers import device, profiles

LEAK = device("leak-1", heartbeat_s=60)
MAINS = dataclasses.replace(
    device("mains-1", profile="tasmota", topic="mains_b3"), offline_means=(Kind.POWER_LOSS,)
)


class Pipeline:
    def __init__(
        self,
        path: Path,
        clock: FakeClock,
        devices: list[Device],
        config: IngestConfig,
        url: str | None = None,
    ) -> None:
        """`url`: on PostgreSQL rather than the SQLite file at `path`."""
        self.path, self.clock, self.devices, self.config = path, clock, devices, config
        self.url = url
        self.events: list[Event] = []

    async def open(self, *, run: bool = True) -> Ingest:
        self.writer = Writer(self.path, synchronous="NORMAL", url=self.url)
        await self.writer.open()
        self.ingest = await Ingest.open(self.writer, self.devices, self.clock, self.config)
        self.ingest.listeners.append(self.events.append)
        self.task: asyncio.Task[None] | None = None
        if run:
            self.run()
        return self.ingest

    def run(self) -> None:
        self.task = asyncio.create_task(self.ingest.run())

    async def close(self) -> None:
        if self.task is not None:
            await self.ingest.drained()
            self.task.cancel()
        await self.writer.close()

    async def restart(self) -> Ingest:
        await self.close()
        self.events.clear()
        return await self.open()

    def store(self) -> Events:
        """The pipeline's store, opened again (on its engine)."""
        return PgStore(self.url) if self.url else SqliteStore(self.path)

    def stored(self) -> list[dict[str, object]]:
        store = self.store()
        try:
            return list(store.events())
        finally:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def pipe(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pipeline]:
    """The ingest on each engine in turn."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    p = Pipeline(tmp_path / "alertd.db", FakeClock(), [LEAK, MAINS], IngestConfig(), url)
    await p.open()
    yield p
    await p.close()


def report(
    dev: Device,
    *obs: Observation,
    clock: FakeClock,
    receipt: Receipt | None = None,
    alive: bool = True,
) -> Report:
    return Report("test", dev, obs, clock.now(), alive=alive, raw="{}", receipt=receipt)


def leak(active: bool) -> Observation:
    return Observation(Kind.LEAK, active)


async def test_an_event_is_committed_before_the_source_is_acked(pipe: Pipeline) -> None:
    seen_at_ack: list[int] = []

    def ack() -> None:
        seen_at_ack.append(len(pipe.stored()))

    pipe.ingest.submit(report(LEAK, leak(True), clock=pipe.clock, receipt=Receipt(ack, "k1", "d1")))
    await pipe.ingest.drained()
    assert seen_at_ack == [1]
    (row,) = pipe.stored()
    assert (row["kind"], row["state"], row["severity"], row["building"], row["unit"]) == (
        "leak",
        "active",
        "major",
        "3",
        "1203",
    )


async def test_edge_triggering_and_state_across_a_restart(pipe: Pipeline) -> None:
    for active in (False, True, True, True):
        pipe.ingest.submit(report(LEAK, leak(active), clock=pipe.clock))
    await pipe.ingest.drained()
    assert [(e.kind, e.state) for e in pipe.events] == [(Kind.LEAK, State.ACTIVE)]
    ingest = await pipe.restart()
    ingest.submit(report(LEAK, leak(True), clock=pipe.clock))  # still wet after the restart
    ingest.submit(report(LEAK, leak(False), clock=pipe.clock))
    await ingest.drained()
    assert [(e.kind, e.state, e.id) for e in pipe.events] == [(Kind.LEAK, State.RESTORE, 2)]
    assert [r["id"] for r in pipe.stored()] == [1, 2]


async def test_a_redelivered_message_is_acked_but_not_applied_twice(pipe: Pipeline) -> None:
    acks: list[str] = []

    def receipt(key: str, digest: str, redelivered: bool = False) -> Receipt:
        return Receipt(lambda: acks.append(key), key, digest, redelivered)

    pipe.ingest.submit(report(LEAK, leak(True), clock=pipe.clock, receipt=receipt("m1", "wet")))
    pipe.ingest.submit(report(LEAK, leak(False), clock=pipe.clock, receipt=receipt("m2", "dry")))
    await pipe.ingest.drained()
    ingest = await pipe.restart()  # as after a crash between commit and ack
    ingest.submit(report(LEAK, leak(True), clock=pipe.clock, receipt=receipt("m1", "wet", True)))
    ingest.submit(report(LEAK, leak(False), clock=pipe.clock, receipt=receipt("m2", "dry", True)))
    # a reused packet id with new content is a new message, even when flagged as a duplicate
    ingest.submit(report(LEAK, leak(True), clock=pipe.clock, receipt=receipt("m1", "new", True)))
    await ingest.drained()
    assert sorted(acks) == ["m1", "m1", "m1", "m2", "m2"]  # urgent ones may be acked first
    assert [(r["id"], r["state"]) for r in pipe.stored()] == [
        (1, "active"),
        (2, "restore"),
        (3, "active"),
    ]
    assert ingest.counts["redelivered"] == 2


async def test_heartbeat_silence_and_return(pipe: Pipeline) -> None:
    pipe.ingest.submit(report(LEAK, leak(False), clock=pipe.clock))
    pipe.clock.advance(59)
    pipe.ingest.tick()
    pipe.clock.advance(2)
    pipe.ingest.tick()
    pipe.ingest.tick()
    await pipe.ingest.drained()
    assert [(e.kind, e.state, e.detail) for e in pipe.events] == [
        (Kind.SENSOR_OFFLINE, State.ACTIVE, "no message for 60 s")
    ]
    pipe.ingest.submit(report(LEAK, leak(False), clock=pipe.clock))
    await pipe.ingest.drained()
    assert (pipe.events[-1].kind, pipe.events[-1].state) == (Kind.SENSOR_OFFLINE, State.RESTORE)


async def test_a_mains_monitor_going_offline_is_a_power_loss(pipe: Pipeline) -> None:
    offline = Observation(Kind.SENSOR_OFFLINE, True, detail="Tasmota LWT Offline")
    pipe.ingest.submit(report(MAINS, offline, clock=pipe.clock, alive=False))
    pipe.ingest.submit(report(MAINS, Observation(Kind.SENSOR_OFFLINE, False), clock=pipe.clock))
    await pipe.ingest.drained()
    # the cause first, so that the power incident is open when the offline alarm it
    # explains is decided (inhibition)
    assert [(e.kind, e.state) for e in pipe.events] == [
        (Kind.POWER_LOSS, State.ACTIVE),
        (Kind.SENSOR_OFFLINE, State.ACTIVE),
        (Kind.POWER_LOSS, State.RESTORE),
        (Kind.SENSOR_OFFLINE, State.RESTORE),
    ]


async def test_a_held_condition_fires_on_the_tick(pipe: Pipeline) -> None:
    low = Observation(Kind.POWER_LOSS, True, hold_s=5)
    pipe.ingest.submit(report(MAINS, low, clock=pipe.clock))
    pipe.clock.advance(5)
    pipe.ingest.tick()
    await pipe.ingest.drained()
    assert [(e.kind, e.state, e.source) for e in pipe.events] == [
        (Kind.POWER_LOSS, State.ACTIVE, "hold")
    ]


async def test_fire_is_committed_before_queued_telemetry(tmp_path: Path) -> None:
    devices = [device(f"d{i}") for i in range(1000)]
    p = Pipeline(tmp_path / "a.db", FakeClock(), devices, IngestConfig(batch_max=100))
    ingest = await p.open(run=False)
    for dev in devices:
        ingest.submit(report(dev, Observation(Kind.DEVICE_BATTERY_LOW, True), clock=p.clock))
    ingest.submit(report(devices[0], Observation(Kind.FIRE_ALARM, True), clock=p.clock))
    p.run()
    await ingest.drained()
    await p.close()
    assert p.events[0].kind is Kind.FIRE_ALARM
    assert len(p.events) == 1001
    assert ingest.counts["commits"] == 10  # batches of at most 100 routine reports


async def test_last_seen_times_go_in_commits_of_at_most_a_batch(tmp_path: Path) -> None:
    """The tick saves every device heard since the last one; 2,000 of them in one commit
    held the writer for 80 ms, and an alarm queued behind it waited that long."""
    devices = [device(f"d{i}") for i in range(1000)]
    p = Pipeline(tmp_path / "a.db", FakeClock(), devices, IngestConfig(batch_max=100))
    ingest = await p.open()
    for dev in devices:
        ingest.submit(report(dev, clock=p.clock))  # alive, nothing to report
    await ingest.drained()
    before = ingest.counts["commits"]
    ingest.tick()
    ingest.submit(report(devices[0], Observation(Kind.FIRE_ALARM, True), clock=p.clock))
    await ingest.drained()
    await p.close()
    assert [e.kind for e in p.events] == [Kind.FIRE_ALARM]
    assert ingest.counts["commits"] - before == 10  # 1,000 devices, 100 a commit
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("SELECT count(*) FROM device_seen").fetchone() == (1000,)
    conn.close()


async def test_an_alarm_commit_carries_few_last_seen_times(tmp_path: Path) -> None:
    """The tick's last-seen times wait in line with the rest of the routine work, and an
    alarm's commit takes some of it along (one commit fewer), but only a little: a whole
    batch of them made the alarm's commit, once a second at 500 alarms/s, 2.5 ms longer."""
    devices = [device(f"d{i}") for i in range(1000)]
    p = Pipeline(tmp_path / "a.db", FakeClock(), devices, IngestConfig())  # batch_max 500
    ingest = await p.open()
    for dev in devices:
        ingest.submit(report(dev, clock=p.clock))  # alive, nothing to report
    await ingest.drained()
    stored_with_the_alarm: list[int] = []
    conn = sqlite3.connect(tmp_path / "a.db")
    ingest.listeners.append(
        lambda e: stored_with_the_alarm.append(
            conn.execute("SELECT count(*) FROM device_seen").fetchone()[0]
        )
    )
    ingest.tick()
    ingest.submit(report(devices[0], Observation(Kind.FIRE_ALARM, True), clock=p.clock))
    await ingest.drained()
    await p.close()
    assert 0 < stored_with_the_alarm[0] <= 100  # about 0.5 ms of work
    assert conn.execute("SELECT count(*) FROM device_seen").fetchone() == (1000,)
    conn.close()


async def test_a_tick_stores_the_values_it_saw_though_a_report_changes_them_before_the_commit(
    tmp_path: Path,
) -> None:
    """The tick hands the devices' latest values to the writer thread, which encodes them
    (thousands of devices encoded on the event loop held it 8-20 ms every second). A report
    arriving before that commit must not change what the tick handed over: it is stored
    by the next tick."""
    dev = device("plug-1")
    p = Pipeline(tmp_path / "a.db", FakeClock(), [dev], IngestConfig())
    ingest = await p.open()

    def reading(values: dict[str, Value]) -> Report:
        return Report("test", dev, (), p.clock.now(), values=values, raw="{}")

    ingest.submit(reading({"power": 12.5, "voltage": 230}))
    ingest.tick()
    ingest.submit(reading({"power": 900.0}))  # before the tick's commit is written
    await ingest.drained()
    stored = SqliteStore(tmp_path / "a.db")
    assert stored.device_values()["plug-1"]["values"] == {"power": 12.5, "voltage": 230}
    ingest.tick()
    await ingest.drained()
    assert stored.device_values()["plug-1"]["values"] == {"power": 900.0, "voltage": 230}
    stored.close()
    await p.close()


async def test_routine_overflow_is_dropped_and_counted_fire_never(tmp_path: Path) -> None:
    devices = [device(f"d{i}") for i in range(300)]
    p = Pipeline(tmp_path / "a.db", FakeClock(), devices, IngestConfig(queue_limit=100))
    ingest = await p.open(run=False)
    acked: list[int] = []
    for i, dev in enumerate(devices):
        routine = Observation(Kind.DEVICE_BATTERY_LOW, True)
        ingest.submit(
            report(dev, routine, clock=p.clock, receipt=Receipt(lambda i=i: acked.append(i)))
        )
    for dev in devices:
        ingest.submit(report(dev, Observation(Kind.FIRE_ALARM, True), clock=p.clock))
    assert ingest.counts["dropped"] == 200
    assert sorted(acked) == list(range(100, 300))  # dropped ones are acked, not redelivered
    p.run()
    await ingest.drained()
    await p.close()
    kinds = [e.kind for e in p.events]
    assert kinds.count(Kind.FIRE_ALARM) == 300
    assert kinds.count(Kind.DEVICE_BATTERY_LOW) == 100


async def test_bad_input_is_kept_as_a_dead_letter(pipe: Pipeline) -> None:
    pipe.ingest.submit(
        Rejected("mqtt", "malformed JSON", pipe.clock.now(), "zigbee2mqtt/x", b"{oops")
    )
    partly = dataclasses.replace(
        report(LEAK, leak(True), clock=pipe.clock),
        problems=("battery_low must be true or false, got 'x'",),
    )
    pipe.ingest.submit(partly)
    await pipe.ingest.drained()
    store = pipe.store()
    letters = {d["reason"]: d for d in store.dead_letters()}
    rejected = letters["malformed JSON"]
    assert (rejected["topic"], bytes(rejected["payload"])) == ("zigbee2mqtt/x", b"{oops")
    assert letters["battery_low must be true or false, got 'x'"]["device_id"] == "leak-1"
    assert store.counters()["dead_letters"] == 2
    store.close()
    assert [e.kind for e in pipe.events] == [Kind.LEAK]  # the readable part was used


# -- the MQTT source never lets bad input escape ---------------------------------------

ALL = [
    device("z", topic="zigbee2mqtt/flat_3b/leak"),
    device("t", profile="tasmota", topic="tasmota_1"),
    device("s1", profile="shelly_gen1", topic="shellies/shellyflood-1"),
    device("s2", profile="shelly_gen2", topic="plus-1"),
    device(
        "h",
        profile="homeassistant",
        topic="ha/leak",
        kind="moisture",
        availability_topic="ha/leak/avail",
    ),
    device("u", profile="ups", topic="nut/ups1"),
]
UPS = {
    "ups": {
        "rules": [
            {"topic": "{topic}/ups.status", "kind": "power.loss", "tokens": ["OB"]},
            {"topic": "{topic}/json", "field": "a.b", "kind": "leak", "below": 3},
        ]
    }
}
TOPICS = [
    "zigbee2mqtt/flat_3b/leak",
    "zigbee2mqtt/flat_3b/leak/availability",
    "zigbee2mqtt/bridge/state",
    "zigbee2mqtt/other",
    "tele/tasmota_1/LWT",
    "tele/tasmota_1/SENSOR",
    "stat/tasmota_1/POWER",
    "stat/tasmota_1/RESULT",
    "shellies/shellyflood-1/sensor/flood",
    "shellies/shellyflood-1/online",
    "plus-1/status/switch:0",
    "plus-1/events/rpc",
    "plus-1/online",
    "ha/leak",
    "ha/leak/avail",
    "nut/ups1/ups.status",
    "nut/ups1/json",
    "random/topic",
]
payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"true",
            b"ON",
            b"Offline",
            b"null",
            b"[]",
            b'{"state":1}',
            b'{"water_leak":1}',
            b'{"ENERGY":"x"}',
            b'{"a":{"b":"NaN"}}',
            b'{"method":"NotifyStatus","params":[]}',
            b"\xff\xfe",
            b"1e999",
        ]
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "water_leak",
                        "smoke",
                        "ENERGY",
                        "Voltage",
                        "a",
                        "b",
                        "params",
                        "flood:0",
                        "alarm",
                        "state",
                        "ts",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=8,
    ).map(lambda v: __import__("json").dumps(v).encode()),
)


def _collecting_source() -> tuple[MqttSource, list[Report | Rejected]]:
    out: list[Report | Rejected] = []
    router = Router(ALL, profiles(UPS))
    source = MqttSource(
        router,
        out.append,
        lambda mid, conn: None,
        FakeClock(),
        client_id="t",
        max_payload_bytes=1024,
    )
    return source, out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=payloads, retain=st.booleans())
def test_no_payload_makes_the_source_raise(topic: str, payload: bytes, retain: bool) -> None:
    source, out = _collecting_source()
    source.handle(Incoming(topic, payload, 1, retain, False, 1, 1))
    assert out or source.ignored == 1
    for item in out:
        if isinstance(item, Rejected):
            assert item.reason
            assert item.topic == topic


def test_oversized_and_unknown_messages_are_rejected_with_a_reason() -> None:
    source, out = _collecting_source()
    source.handle(
        Incoming("zigbee2mqtt/flat_3b/leak", b"{" + b" " * 2000 + b"}", 1, False, False, 1, 1)
    )
    source.handle(Incoming("zigbee2mqtt/new_device", b"{}", 1, False, False, 2, 1))
    reasons = [r.reason for r in out if isinstance(r, Rejected)]
    assert reasons == [
        "payload of 2002 bytes is over mqtt.max_payload_bytes (1024)",
        "unknown device: no row of the devices file owns this topic",
    ]


def test_a_profile_bug_rejects_the_message_instead_of_losing_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from integrations.mqtt.profiles import Profile

    class Broken(Profile):
        name = "broken"

        def decode(self, device: Device, base: str, suffix: str, payload: bytes) -> Decoded:
            raise ZeroDivisionError("a bug")

    out: list[Report | Rejected] = []
    dev = device("b", profile="broken", topic="broken/1")
    source = MqttSource(
        Router([dev], {"broken": Broken()}),
        out.append,
        lambda m, c: None,
        FakeClock(),
        client_id="t",
        max_payload_bytes=1024,
    )
    source.handle(Incoming("broken/1", b"{}", 1, False, False, 1, 1))
    (rejected,) = out
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "broken: could not read it (ZeroDivisionError); kept for inspection"
    assert rejected.receipt is not None  # acknowledged once the dead letter is stored
    assert "profile broken failed" in caplog.text


def test_a_message_read_by_several_devices_is_acked_once_all_parts_are_stored() -> None:
    acks: list[str] = []
    parts = Receipt(lambda: acks.append("acked"), "mqtt:c:7", "d", redelivered=True).split(3)
    assert [p.key for p in parts] == ["mqtt:c:7/0", "mqtt:c:7/1", "mqtt:c:7/2"]
    assert all(p.digest == "d" and p.redelivered for p in parts)
    parts[2].ack()
    parts[0].ack()
    assert acks == []
    parts[1].ack()
    assert acks == ["acked"]


async def test_a_storm_of_alarms_logs_a_line_each_up_to_a_limit_then_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each life-safety event gets its own log line, up to ALARM_LINES_PER_S in a second;
    the rest of that second are counted in one line once it is over (every event is in
    the store). Thousands of lines a second were 3-6 % of the work under a storm."""
    from alertd.ingest.pipeline import ALARM_LINES_PER_S

    devices = [device(f"smoke-{i}") for i in range(ALARM_LINES_PER_S + 15)]
    p = Pipeline(tmp_path / "a.db", FakeClock(), devices, IngestConfig())
    ingest = await p.open()
    with caplog.at_level(logging.WARNING, logger="alertd.ingest.pipeline"):
        for dev in devices:
            ingest.submit(report(dev, Observation(Kind.FIRE_ALARM, True), clock=p.clock))
        await ingest.drained()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == ALARM_LINES_PER_S
        assert all(line.startswith("fire.alarm at ") for line in lines)
        p.clock.advance(1)
        ingest.tick()  # the next second: the count for the last one
        assert caplog.records[-1].getMessage() == (
            "... and 15 more life-safety events in that second (`alertd events`)"
        )
        caplog.clear()
        ingest.submit(report(devices[0], Observation(Kind.FIRE_ALARM, False), clock=p.clock))
        ingest.submit(report(devices[1], Observation(Kind.LEAK, True), clock=p.clock))
        await ingest.drained()
        assert [r.getMessage().split(" at ")[0] for r in caplog.records] == ["leak"]
    await p.close()
    assert len(p.events) == len(devices) + 2


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(), min_size=6, max_size=6), number=st.integers(0, 2**62))
def test_any_text_is_stored_exactly_as_it_came(texts: list[str], number: int) -> None:
    """A batch's rows reach SQLite as one multi-row statement per table: what a device or
    panel sent, in any script, with quotes, backslashes, NUL or other control characters,
    is read back as it came."""
    import tempfile

    from alertd.events import Location, severity_of
    from alertd.store.sql import parse_iso

    raw, detail, device_id, building, unit, zone = texts
    at = parse_iso("2026-11-29T03:00:00.000001+00:00")
    event = Event(
        number,
        Kind.LEAK,
        State.ACTIVE,
        severity_of(Kind.LEAK, State.ACTIVE),
        device_id,
        Location("HV", building, "12", unit, zone),
        at,
        at,
        "mqtt",
        raw=raw,
        detail=detail,
        tags={"note": raw},
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "alertd.db")
        try:
            store.commit(Batch(events=[event]))
            row = store.conn.execute(
                "SELECT id, raw, detail, device_id, building, unit, zone, tags FROM events"
            ).fetchone()
        finally:
            store.close()
    assert row[:7] == (number, raw, detail, device_id, building, unit, zone)
    assert json.loads(row[7]) == {"note": raw}  # encoded before: its NUL is an escape


def test_a_storm_of_bad_messages_is_kept_in_a_few_statements_byte_for_byte(
    tmp_path: Path,
) -> None:
    """Malformed messages are kept as dead letters with their bytes as they came. Written
    row by row, each row was a statement, and each statement a wait for the GIL beside a
    busy event loop (see `values`): a storm of bad input made every commit, the alarms'
    included, wait that long. 1,200 of them go in a few statements, every byte kept."""
    from alertd.store.batch import DeadLetter
    from alertd.store.sql import parse_iso

    at = parse_iso("2026-11-29T03:00:00+00:00")
    letters = [
        DeadLetter(
            at, "mqtt", f"bad #{n}", f"zigbee2mqtt/leak_{n}", f"leak_{n}", bytes([n % 256]) * n
        )
        for n in range(1200)
    ]
    store = SqliteStore(tmp_path / "alertd.db")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    store.commit(Batch(dead_letters=letters))
    store.conn.set_trace_callback(None)
    rows = store.conn.execute(
        "SELECT reason, topic, device_id, payload, size FROM dead_letters ORDER BY id"
    ).fetchall()
    store.close()
    assert sum(s.startswith("INSERT INTO dead_letters") for s in statements) <= 5
    assert rows == [
        (d.reason, d.topic, d.device_id, d.payload[:4096], len(d.payload)) for d in letters
    ]


def test_batches_of_every_size_share_a_few_prepared_statements(tmp_path: Path) -> None:
    """The writer's connection keeps every distinct statement it prepared, a few hundred
    KB for a batch of a hundred rows: one statement per batch size took the daemon's
    memory up by 10 MiB and more in a storm. Batches of 1 to 100 events share eight, and
    every event is stored once."""
    from alertd.events import Location, severity_of
    from alertd.store.sql import parse_iso

    at = parse_iso("2026-11-29T03:00:00+00:00")
    store = SqliteStore(tmp_path / "alertd.db")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    ids = iter(range(1, 10_000))
    for size in range(1, 101):
        events = [
            Event(
                next(ids),
                Kind.LEAK,
                State.ACTIVE,
                severity_of(Kind.LEAK, State.ACTIVE),
                f"leak_{size}",
                Location("HV", "3", "12", "1203"),
                at,
                at,
                "mqtt",
            )
            for _ in range(size)
        ]
        store.commit(Batch(events=events))
    store.conn.set_trace_callback(None)
    stored = [row[0] for row in store.conn.execute("SELECT id FROM events ORDER BY id")]
    store.close()
    # the trace shows each statement with its values bound: its shape is its row count
    shapes = {s.count("),(") for s in statements if s.startswith("INSERT INTO events")}
    assert len(shapes) <= 8  # room for 1, 2, 4 ... 128 rows
    assert stored == list(range(1, 1 + 100 * 101 // 2))


def test_a_device_twice_in_one_batch_or_out_of_order_keeps_its_newest_state(
    tmp_path: Path,
) -> None:
    """A batch is one statement a table: a device that alarms and clears within one batch
    (a flapping detector), or whose older state is written after its newer one (a retry),
    keeps the newest; a message key stored twice is kept once."""
    from alertd.store.batch import StateRow
    from alertd.store.sql import parse_iso

    at = parse_iso("2026-11-29T03:00:00+00:00")
    store = SqliteStore(tmp_path / "alertd.db")
    store.commit(
        Batch(
            states=[
                StateRow("leak_1", Kind.LEAK, True, at, 1, 1),
                StateRow("leak_1", Kind.LEAK, False, at, 2, 2),  # cleared in the same batch
                StateRow("leak_2", Kind.LEAK, False, at, 4, 4),
                StateRow("leak_2", Kind.LEAK, True, at, 3, 3),  # older, after the newer
            ],
            receipts={"mqtt:a:7": "d1"},
        )
    )
    store.commit(
        Batch(
            states=[StateRow("leak_1", Kind.LEAK, True, at, 1, 1)],  # the first, again
            receipts={"mqtt:a:7": "d2", "mqtt:a:8": "d3"},
        )
    )
    states = store.states()
    receipts = store.conn.execute("SELECT key, digest FROM receipts ORDER BY key").fetchall()
    store.close()
    assert states[("leak_1", Kind.LEAK)] is False
    assert states[("leak_2", Kind.LEAK)] is False
    assert receipts == [("mqtt:a:7", "d2"), ("mqtt:a:8", "d3")]
