"""Incidents end to end: a real Mosquitto, the shipped playbooks, a real store; staff
commands through the CLI; a restart in the middle of an escalation; replay."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner, Result
from paho.mqtt.enums import CallbackAPIVersion

from alertd.cli import main
from alertd.clock import FakeClock
from alertd.config import Config, load_config
from tests.broker import Broker
from tests.mqtt_tools import Live, Publisher, until
from tests.test_playbooks import SHIPPED

DEVICES = (
    "device_id,profile,topic,site,building,floor,unit,zone\n"
    "smoke-3-12,zigbee2mqtt,zigbee2mqtt/flat_3b/smoke_kitchen,,3,12,1203,kitchen\n"
    "leak-3-12,zigbee2mqtt,zigbee2mqtt/flat_3b/leak_kitchen,,3,12,1203,kitchen\n"
)


def make_config(tmp_path: Path, broker: Broker, name: str) -> Path:
    (tmp_path / "devices.csv").write_text(DEVICES)
    path = tmp_path / "alertd.yaml"
    path.write_text(
        "site: {name: HV, timezone: Asia/Shanghai}\n"
        f"mqtt: {{port: {broker.port}, client_id: {name}}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        f"devices: devices.csv\nplaybooks: {SHIPPED}\ningest: {{tick_s: 0.05}}\n"
        "pa: {ack_topic: 'pa/building-{building}/ack'}\n"
    )
    return path


def rows(cfg: Config, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(cfg.storage.path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


async def cli(path: Path, *args: str) -> Result:
    """The CLI from another thread: it waits for the daemon, which runs on this loop."""
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--config", str(path)])


@pytest.fixture
async def daemon(tmp_path: Path, broker: Broker) -> AsyncIterator[tuple[Live, Path]]:
    path = make_config(tmp_path, broker, f"inc-{tmp_path.name[-12:]}")
    async with Live(load_config(path)) as running:
        yield running, path


async def test_an_alarm_its_incident_and_its_first_send_share_one_commit(
    daemon: tuple[Live, Path], broker: Broker
) -> None:
    """Between a smoke detector's message and the first message out, one durable commit:
    the event, the decision (incident, timeline, outbox) and the messages claimed for
    sending are written in one transaction. Three commits in a row made every alarm wait
    three times behind whatever the writer had queued; and an alarm is never stored
    undecided."""
    running, _ = daemon
    writer = running.daemon.writer
    assert writer.store is not None
    conn = writer.store.conn
    statements: list[str] = []
    await writer.call(conn.set_trace_callback, statements.append)  # on the writer's thread
    pub = Publisher(broker, "one-commit-publisher")
    await asyncio.to_thread(pub.publish, "zigbee2mqtt/flat_3b/smoke_kitchen", '{"smoke":true}')
    pub.close()
    await until(
        lambda: any(s.startswith("UPDATE messages SET status = 'sending'") for s in statements)
    )
    await writer.call(conn.set_trace_callback, None)

    def first(prefix: str) -> int:
        return next(n for n, s in enumerate(statements) if s.startswith(prefix))

    event, sending = first("INSERT INTO events"), first("UPDATE messages SET status = 'sending'")
    between = statements[event:sending]
    assert "COMMIT" not in between
    for written in ("INSERT OR REPLACE INTO incidents", "INSERT INTO outbox"):
        assert any(s.startswith(written) for s in between), written
    assert rows(running.config, "SELECT decided FROM events") == [{"decided": 1}]  # stored so


async def test_a_smoke_message_opens_a_fire_incident_with_its_outbox_rows(
    daemon: tuple[Live, Path], broker: Broker
) -> None:
    running, path = daemon
    pub = Publisher(broker, "incident-publisher")
    await asyncio.to_thread(
        pub.publish, "zigbee2mqtt/flat_3b/smoke_kitchen", '{"smoke":true,"battery":90}'
    )
    pub.close()
    await running.seen.until(lambda evs: len(evs) >= 1)
    await running.settled()
    cfg = running.config
    (incident,) = rows(cfg, "SELECT * FROM incidents")
    assert (incident["playbook"], incident["status"], incident["building"], incident["floor"]) == (
        "fire-alarm",
        "open",
        "3",
        "",
    )
    outbox = rows(cfg, "SELECT channel, target, texts FROM outbox ORDER BY id")
    assert [(o["channel"], o["target"]) for o in outbox] == [
        ("call", "oncall:security"),
        ("notify", "oncall:security"),
        ("pa", "building"),
        ("sms", "building"),
    ]
    assert "3号楼火警，请立即走楼梯撤离" in json.loads(outbox[3]["texts"])["zh"]
    types = [t["type"] for t in rows(cfg, "SELECT type FROM timeline ORDER BY id")]
    assert types[:2] == ["opened", "event"]
    assert rows(cfg, "SELECT count(*) AS n FROM timers WHERE state = 'pending'")[0]["n"] == 1
    # staff acknowledge from the command line: the escalation timer is cancelled
    result = await cli(
        path, "incidents", "ack", "1", "--by", "Wang (security)", "--text", "on my way"
    )
    assert result.exit_code == 0, result.output
    assert rows(cfg, "SELECT status FROM incidents")[0]["status"] == "acknowledged"
    assert rows(cfg, "SELECT count(*) AS n FROM timers WHERE state = 'pending'")[0]["n"] == 0
    shown = await cli(path, "incidents", "show", "1")
    assert "| acknowledged | Wang (security) | on my way |" in shown.output
    assert "Messages: 1 sent" in shown.output  # the PA broadcast; no staff or residents here
    outbox = await cli(path, "outbox")
    assert outbox.exit_code == 0
    assert "all messages: 1 sent" in outbox.output
    report = await cli(path, "report", "1")
    assert report.output.startswith(
        "# Incident 1: 火警 3号楼 12层 1203 厨房 / Fire alarm, Bldg 3, 12F, 1203 kitchen"
    )
    assert "- **Response times:** to acknowledge" in report.output


async def test_declare_and_drill_run_the_playbooks(daemon: tuple[Live, Path]) -> None:
    running, path = daemon
    declared = await cli(
        path,
        "declare",
        "fire",
        "--building",
        "5",
        "--floor",
        "12",
        "--by",
        "Front desk",
        "--text",
        "caller reports smoke on 12F",
    )
    assert declared.exit_code == 0, declared.output
    drill = await cli(
        path,
        "drill",
        "water-leak",
        "--building",
        "3",
        "--floor",
        "8",
        "--unit",
        "803",
        "--by",
        "Li (supervisor)",
    )
    assert drill.exit_code == 0, drill.output
    await running.seen.until(lambda evs: len(evs) >= 2)
    await running.settled()
    cfg = running.config
    incidents = rows(cfg, "SELECT playbook, building, drill FROM incidents ORDER BY id")
    assert incidents == [
        {"playbook": "fire-alarm", "building": "5", "drill": 0},
        {"playbook": "water-leak", "building": "3", "drill": 1},
    ]
    texts = [json.loads(r["texts"]) for r in rows(cfg, "SELECT texts FROM outbox WHERE drill = 1")]
    assert texts
    assert all(t["zh"].startswith("【演练】") for t in texts)
    events = rows(cfg, "SELECT source, detail FROM events ORDER BY id")
    assert events[0] == {"source": "manual", "detail": "Front desk: caller reports smoke on 12F"}
    suppressed = rows(
        cfg, "SELECT text FROM timeline WHERE incident_id = 2 AND type = 'suppressed'"
    )
    assert [r["text"] for r in suppressed] == [
        "steps step 2: sms to unit (a drill)",
        "steps step 3: sms to unit_below (a drill)",
    ]
    acked = await cli(path, "incidents", "ack", "2", "--by", "Sun Min")
    assert acked.exit_code == 0, acked.output
    report = await cli(path, "report", "2")
    assert "(DRILL / 演练)" in report.output
    assert "- **Drill score:** acknowledged in 0.0 min - within the 10.0 min target" in (
        report.output
    )


async def test_an_escalation_timer_fires_once_after_a_restart(
    tmp_path: Path, broker: Broker
) -> None:
    path = make_config(tmp_path, broker, "inc-restart")
    cfg = load_config(path)
    clock = FakeClock()
    async with Live(cfg, clock) as first:
        pub = Publisher(broker, "restart-publisher")
        await asyncio.to_thread(
            pub.publish, "zigbee2mqtt/flat_3b/leak_kitchen", '{"water_leak":true}'
        )
        pub.close()
        await first.seen.until(lambda evs: len(evs) >= 1)
        await first.settled()
    clock.advance(601)  # alertd was down while the acknowledgement deadline passed
    async with Live(cfg, clock) as second:
        await second.settled()
        for _ in range(3):
            await second.daemon.incidents.tick()
    escalations = rows(cfg, "SELECT target FROM outbox WHERE step LIKE 'escalation%'")
    assert escalations == [{"target": "role:supervisor"}]
    repeat = rows(cfg, "SELECT due_at FROM timers WHERE state = 'pending'")
    assert len(repeat) == 1  # the next reminder, 600 s later


GOLDEN = [
    "2026-11-27 10:00:00 +08:00 incident 1 notify -> oncall:maintenance",
    "2026-11-27 10:00:00 +08:00 incident 1 sms -> unit",
    "2026-11-27 10:00:00 +08:00 incident 1 sms -> unit_below",
    "2026-11-27 10:00:00 +08:00 incident 2 notify -> oncall:maintenance",
    "2026-11-27 10:00:00 +08:00 incident 2 sms -> building",
    "2026-11-27 10:10:00 +08:00 incident 1 notify -> role:supervisor",
    "2026-11-27 10:15:00 +08:00 incident 2 notify -> role:supervisor",
    "2026-11-27 10:20:00 +08:00 incident 1 notify -> role:supervisor",
    "2026-11-27 10:30:00 +08:00 incident 1 notify -> role:supervisor",
    # power came back at 10:30 and stayed on for the playbook's hold of 60 s
    "2026-11-27 10:31:00 +08:00 incident 2 sms -> notified",
]


def test_replay_prints_every_action_in_simulated_time(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    place = {"site": "HV", "building": "3"}
    lines = [
        {
            "kind": "leak",
            "device_id": "leak-1",
            **place,
            "floor": "12",
            "unit": "1203",
            "occurred_at": "2026-11-27T10:00:00+08:00",
        },
        {
            "kind": "power.loss",
            "device_id": "mains-3",
            **place,
            "occurred_at": "2026-11-27T10:00:00+08:00",
        },
        {
            "kind": "power.loss",
            "state": "restore",
            "device_id": "mains-3",
            **place,
            "occurred_at": "2026-11-27T10:30:00+08:00",
        },
    ]
    events.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    cfg = tmp_path / "a.yaml"
    cfg.write_text(f"site: {{timezone: Asia/Shanghai}}\nplaybooks: {SHIPPED}\n")
    result = CliRunner().invoke(main, ["replay", "--config", str(cfg), str(events)])
    assert result.exit_code == 0, result.output
    summary = [line.split(": ", 1)[0] for line in result.output.splitlines()]
    assert summary[: len(GOLDEN)] == GOLDEN
    assert "预计12:00恢复" in result.output  # the restore ETA in the residents' SMS
    # power came back and resolved itself: the follow-up goes out a day later
    assert "2026-11-28 10:31:00 +08:00 incident 2 sms -> notified" in summary
    # the leak was never acknowledged: the supervisor is reminded every 10 minutes
    assert summary.count("2026-11-27 11:00:00 +08:00 incident 1 notify -> role:supervisor") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "leak"}\n')
    failed = CliRunner().invoke(main, ["replay", "--config", str(cfg), str(bad)])
    assert failed.exit_code == 1
    assert "line 1: 'occurred_at'" in failed.output


async def test_the_fire_playbook_triggers_the_pa_broadcast_over_mqtt(
    daemon: tuple[Live, Path], broker: Broker
) -> None:
    running, _ = daemon
    heard: list[tuple[str, bytes]] = []
    got = threading.Event()
    listener = paho.Client(CallbackAPIVersion.VERSION2, client_id="pa-controller")

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        heard.append((msg.topic, msg.payload))
        got.set()

    listener.on_message = on_message
    listener.connect(broker.host, broker.port)
    listener.subscribe("pa/#", qos=1)
    listener.loop_start()
    try:
        pub = Publisher(broker, "pa-publisher")
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/flat_3b/smoke_kitchen", '{"smoke":true}')
        pub.close()
        assert await asyncio.to_thread(got.wait, 15)
    finally:
        listener.loop_stop()
        listener.disconnect()
    ((topic, payload),) = heard
    assert topic == "pa/building-3/broadcast"
    body = json.loads(payload)
    assert body["building"] == "3"
    assert "3号楼发生火警" in body["text"]
    await running.settled()
    sent = rows(running.config, "SELECT status FROM messages WHERE channel = 'pa'")
    assert sent == [{"status": "sent"}]
    # the controller confirms on its ack topic: the confirmation lands on the incident
    ack = Publisher(broker, "pa-controller-ack")
    await asyncio.to_thread(ack.publish, "pa/building-3/ack", "playing evacuation message")
    ack.close()
    await until(lambda: rows(running.config, "SELECT id FROM timeline WHERE type = 'pa_ack'"), 10)
    (entry,) = rows(
        running.config, "SELECT incident_id, actor, text FROM timeline WHERE type = 'pa_ack'"
    )
    assert entry == {
        "incident_id": 1,
        "actor": "pa controller",
        "text": "building 3: playing evacuation message",
    }


async def test_an_sms_reply_from_staff_acknowledges_and_stops_the_escalation(
    tmp_path: Path, broker: Broker
) -> None:
    from aiohttp import ClientSession
    from twilio.request_validator import RequestValidator

    from tests.broker import free_port
    from tests.fake_twilio import FakeTwilio

    fake = await FakeTwilio().start()
    port = free_port()
    path = make_config(tmp_path, broker, "inc-sms-ack")
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Sun Min: {phone: '+8613900000004', roles: [maintenance]}\n"
    )
    path.write_text(
        path.read_text()
        + (
            f"staff: staff.yaml\nhttp: {{port: {port}, public_url: 'https://alertd.example.com'}}\n"
            f"twilio: {{account_sid: AC{'0' * 32}, auth_token: tok, from_number: '+15005550006', "
            f"api_base_url: '{fake.base_url}'}}\n"
        )
    )
    try:
        async with Live(load_config(path)) as running:
            pub = Publisher(broker, "sms-ack-publisher")
            await asyncio.to_thread(
                pub.publish, "zigbee2mqtt/flat_3b/leak_kitchen", '{"water_leak":true}'
            )
            pub.close()
            await running.seen.until(lambda evs: len(evs) >= 1)
            await running.settled()
            (texted,) = fake.sms()  # maintenance is told (no residents in this test)
            assert texted["form"]["To"] == "+8613900000004"
            form = {"From": "+8613900000004", "Body": "OK", "To": "+15005550006"}
            signature = RequestValidator("tok").compute_signature(
                "https://alertd.example.com/twilio/inbound", form
            )
            async with (
                ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/twilio/inbound",
                    data=form,
                    headers={"X-Twilio-Signature": signature},
                ) as response,
            ):
                assert response.status == 200
            await running.daemon.incidents.tick()  # applies the acknowledgement
            cfg = running.config
            assert rows(cfg, "SELECT status FROM incidents") == [{"status": "acknowledged"}]
            pending = rows(cfg, "SELECT count(*) AS n FROM timers WHERE state = 'pending'")
            assert pending == [{"n": 0}]  # the escalation chain is stopped
            (ack,) = rows(cfg, "SELECT actor, text FROM timeline WHERE type = 'acknowledged'")
            assert ack == {"actor": "Sun Min", "text": "by SMS: OK"}
    finally:
        await fake.close()


async def test_a_timer_whose_decision_cannot_be_stored_fires_once_the_store_works(
    tmp_path: Path,
) -> None:
    """Nobody acknowledged the fire; the escalation falls due while the store refuses
    writes. It is not lost: once the store works it fires, once."""
    from zoneinfo import ZoneInfo

    from alertd.engine.engine import Engine
    from alertd.events import Kind
    from alertd.incidents.service import IncidentService
    from alertd.playbooks.loader import load_playbooks
    from alertd.store import Writer
    from tests.test_playbooks import event

    writer = Writer(tmp_path / "alertd.db")
    store = await writer.open()
    clock = FakeClock()
    engine = Engine(load_playbooks(SHIPPED).enabled, ZoneInfo("Asia/Shanghai"))
    service = IncidentService(writer, engine, clock)
    await service.catch_up(await service.open())
    await service.decide_events([event(Kind.FIRE_ALARM, at=clock.now())])
    clock.advance(121)  # past the fire playbook's wait for an acknowledgement
    await writer.call(store.conn.execute, "PRAGMA query_only = ON")  # writes refused
    with pytest.raises(sqlite3.OperationalError):
        await service.tick()
    await writer.call(store.conn.execute, "PRAGMA query_only = OFF")
    await service.tick()
    await service.tick()
    count = "SELECT count(*) FROM timeline WHERE type = 'escalation'"
    assert await writer.call(lambda: store.conn.execute(count).fetchone()) == (1,)
    await writer.close()


def hand_made_command(cfg: Config, command: str, args: str) -> None:
    """A row in `commands` written past every door's checks (a script, an old console)."""
    conn = sqlite3.connect(cfg.storage.path)
    with conn:
        conn.execute(
            "INSERT INTO commands (created_at, command, incident_id, actor, text, args) "
            "VALUES ('2026-12-04T03:00:00+00:00', ?, 1, 'Wang (security)', '', ?)",
            (command, args),
        )
    conn.close()


async def test_a_command_the_daemon_cannot_apply_fails_once_and_alerting_goes_on(
    tmp_path: Path, broker: Broker
) -> None:
    """An ETA of 10,000,000,000 minutes overflowed the calendar inside the ticker and
    stopped the daemon; left pending, the command stopped it again at every start. Now
    each such command is failed with its reason, once, on the timeline too, and the
    daemon keeps alerting, after a restart as well."""
    path = make_config(tmp_path, broker, "inc-poison")
    cfg = load_config(path)
    pub = Publisher(broker, "poison-publisher")
    async with Live(cfg) as running:
        await asyncio.to_thread(
            pub.publish, "zigbee2mqtt/flat_3b/leak_kitchen", '{"water_leak":true}'
        )
        await running.seen.until(lambda evs: len(evs) >= 1)
        await running.settled()
        hand_made_command(cfg, "eta", '{"minutes": 10000000000}')
        hand_made_command(cfg, "eta", '{"minutes": NaN}')
        hand_made_command(cfg, "note", "[1, 2]")  # raises inside the daemon
        hand_made_command(cfg, "ack", "{}")
        await until(lambda: not rows(cfg, "SELECT id FROM commands WHERE state = 'pending'"))
        done = rows(cfg, "SELECT command, state, result FROM commands ORDER BY id")
        assert [(d["command"], d["state"]) for d in done] == [
            ("eta", "failed"),
            ("eta", "failed"),
            ("note", "failed"),
            ("ack", "done"),
        ]
        assert "minutes: from 1 to 43200" in done[0]["result"]
        assert "minutes: from 1 to 43200" in done[1]["result"]
        assert "could not be applied: TypeError" in done[2]["result"]
        failed = rows(cfg, "SELECT text FROM timeline WHERE type = 'command_failed'")
        assert [f["text"][:18] for f in failed] == ["command 3 failed: "]
        # and the daemon still alerts: a fire opens its incident
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/flat_3b/smoke_kitchen", '{"smoke":true}')
        await running.seen.until(lambda evs: len(evs) >= 2)
        await running.settled()
        assert not running.daemon.failed
    async with Live(cfg) as again:  # a restart applies nothing twice, and runs on
        await again.daemon.incidents.tick()
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/flat_3b/smoke_kitchen", '{"smoke":false}')
        await again.seen.until(lambda evs: len(evs) >= 1)
        await again.settled()
        assert not again.daemon.failed
    pub.close()
    assert [r["state"] for r in rows(cfg, "SELECT state FROM commands ORDER BY id")] == [
        "failed",
        "failed",
        "failed",
        "done",
    ]
    assert len(rows(cfg, "SELECT id FROM timeline WHERE type = 'command_failed'")) == 1
    assert [r["playbook"] for r in rows(cfg, "SELECT playbook FROM incidents")] == [
        "water-leak",
        "fire-alarm",
    ]


@pytest.mark.parametrize("minutes", ["10000000000", "nan", "inf", "-30", "0"])
async def test_an_eta_out_of_bounds_is_refused_at_the_door(
    daemon: tuple[Live, Path], minutes: str
) -> None:
    """The CLI refuses it before anything is written; nothing reaches the daemon."""
    running, path = daemon
    result = await cli(path, "incidents", "eta", "1", "--in", minutes, "--by", "Wang (security)")
    assert result.exit_code == 2, result.output
    assert "minutes: from 1 to 43200" in result.output or "minutes: a number" in result.output
    assert rows(running.config, "SELECT id FROM commands") == []
