"""Urgent first, end to end in delivery: independent lanes, staff alerts ahead of fan-outs,
no starvation, a provider's account-wide answers pause or stop a lane and never mark a
person. The real twilio SDK against the fake Twilio, a real SQLite file, simulated time
for pauses and probes; orders are compared, never durations."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import logging
import sqlite3
import ssl
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from alertd.cli import main
from alertd.clock import FakeClock
from alertd.config import DeliveryConfig, SmtpConfig
from alertd.directory.residents import Resident
from alertd.engine.engine import Engine
from alertd.events import Severity
from alertd.incidents.service import IncidentService
from alertd.outbox.dispatcher import Dispatcher, Fold
from alertd.outbox.email import EmailSink
from alertd.outbox.lanes import URGENT_SLOTS, Lane
from alertd.outbox.sink import Message, Result
from alertd.playbooks.loader import load_playbooks
from alertd.store import messages as db
from alertd.store.batch import Batch, StateRow
from alertd.store.directory import import_residents
from alertd.store.sql import iso, transaction
from tests.broker import free_port
from tests.fake_twilio import Failure
from tests.mqtt_tools import until
from tests.test_delivery import TEXTS, Rig, first_thousand, phone
from tests.test_delivery import rig as rig
from tests.test_playbooks import event

WANG = "+8613900000001"  # security, in the rig's staff file


def own_dispatcher(rig: Rig, **delivery: float) -> Dispatcher:
    """A dispatcher of the rig's sinks and staff, with delivery settings of its own."""
    config = DeliveryConfig(**delivery)  # type: ignore[arg-type]
    return Dispatcher(rig.writer, rig.dispatcher.sinks, rig.clock, config, rig.dispatcher.staff)


async def traced(rig: Rig) -> list[str]:
    """The statements the writer runs from now until `untraced` (traced on its thread,
    where its connection lives)."""
    assert rig.writer.store is not None
    statements: list[str] = []
    await rig.writer.call(rig.writer.store.conn.set_trace_callback, statements.append)
    return statements


async def until_sent(rig: Rig, count: int) -> None:
    await until(
        lambda: rig.rows("SELECT count(*) FROM messages WHERE status = 'sent'")[0][0] == count
    )


async def untraced(rig: Rig) -> None:
    assert rig.writer.store is not None
    await rig.writer.call(rig.writer.store.conn.set_trace_callback, None)


async def test_bad_credentials_stop_the_lane_flag_nobody_and_messages_go_once_fixed(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.fake.storm = Failure(401, code=20003)
    await rig.add_action(1, "sms", "building")
    with caplog.at_level(logging.ERROR):
        await rig.dispatcher.step()
        rig.clock.advance(61)  # one probe a minute while the account is refused
        await rig.dispatcher.step()
    refused = len(rig.fake.requests)
    assert refused <= 50 + 1  # what was in flight, then one probe
    assert rig.rows("SELECT count(*) FROM residents WHERE undeliverable IS NOT NULL") == [(0,)]
    assert rig.rows("SELECT count(*) FROM messages WHERE status = 'failed'") == [(0,)]
    stopped = [r for r in caplog.records if "lane stopped" in r.getMessage()]
    assert len(stopped) == 1  # loudly, once
    assert "authentication failed" in stopped[0].getMessage()
    assert rig.rows("SELECT state, reason FROM delivery_lanes") == [
        ("stopped", "authentication failed (check the account SID and auth token) (Twilio 20003)")
    ]
    rig.fake.storm = None  # the token is fixed
    rig.clock.advance(61)
    await rig.settle()
    assert len({r["form"]["To"] for r in rig.fake.sms()}) == 1000
    assert rig.rows("SELECT max(attempts) FROM messages") == [(1,)]
    assert rig.rows("SELECT state FROM delivery_lanes") == [("ok",)]


async def test_only_number_codes_flag_a_number(rig: Rig) -> None:
    rig.fake.always[phone(3)] = Failure(400, 21211)  # invalid number: flagged
    rig.fake.always[phone(4)] = Failure(400, 21408)  # region not enabled: not the number
    await rig.add_action(1, "sms", "building")
    await rig.settle()
    flagged = dict(
        rig.rows("SELECT phone, undeliverable FROM residents WHERE undeliverable IS NOT NULL")
    )
    assert flagged == {phone(3): "invalid number (Twilio 21211)"}


async def test_a_call_waiting_for_its_rate_never_holds_an_sms(rig: Rig) -> None:
    dispatcher = own_dispatcher(rig, calls_per_s=1, concurrency=20, poll_s=30)
    for incident in range(1, 6):  # five calls to make, one a second
        await rig.add_action(incident, "call", "role:security")
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(rig.fake.requests) >= 1)
        await rig.add_action(6, "notify", "oncall:security")
        dispatcher.outbox_changed()  # as the incident service does after its commit
        await until(lambda: any(r["kind"] == "Messages" for r in rig.fake.requests))
        kinds = [r["kind"] for r in rig.fake.requests]
    finally:
        dispatcher.stop()
        await task
    # the SMS went out while the calls waited for their 1 a second
    assert kinds.index("Messages") <= 2
    assert kinds.count("Calls") < 5


async def test_staff_of_a_fire_go_before_a_fan_out_already_under_way(rig: Rig) -> None:
    rig.fake.delay_s = 0.02  # Twilio's answer time: what is in flight stays in flight a while
    await rig.add_action(1, "sms", "building", severity=Severity.MAJOR)  # a leak's 1,000
    dispatcher = rig.dispatcher
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(rig.fake.sms()) >= 100)
        at = len(rig.fake.requests)
        await rig.add_action(2, "notify", "oncall:security", severity=Severity.CRITICAL)
        dispatcher.outbox_changed()
        await until(lambda: any(r["form"]["To"] == WANG for r in rig.fake.requests))
        wang = next(i for i, r in enumerate(rig.fake.requests) if r["form"]["To"] == WANG)
    finally:
        dispatcher.stop()
        await task
    # only what was already in flight (50), or claimed meanwhile (a batch), went first
    assert wang - at <= 50 + 12


LEAK_TO_SECURITY = """\
name: leak
match: {kinds: [leak]}
correlate: {by: building}
steps:
  - notify: {oncall: security}
    template: staff
templates:
  staff:
    zh: "漏水 #{{ incident }} {{ location }} {{ building }}"
    en: "leak #{{ incident }} {{ location }} {{ building }}"
"""


async def test_a_decision_sends_from_its_own_commit_and_folds_never_overrun_a_lane(
    rig: Rig, tmp_path: Path
) -> None:
    """The incident decision's commit also writes its messages and claims what the lanes
    can start: the alert goes out with no dispatcher round in between (here none runs).
    Each such claim reserves the lane's room first, so decisions in quick succession
    never start more than the lane's concurrency between them."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "leak.yaml").write_text(LEAK_TO_SECURITY)
    playbooks = load_playbooks(tmp_path / "playbooks")
    assert not playbooks.problems
    engine = Engine(playbooks.enabled, ZoneInfo("Asia/Shanghai"))
    service = IncidentService(rig.writer, engine, rig.clock, rig.dispatcher.staff)
    service.delivery = rig.dispatcher
    await service.open()
    lane = rig.dispatcher.lanes["sms"]
    lane.concurrency = 2  # and URGENT_SLOTS more for staff alerts of life-safety incidents
    rig.fake.gate = asyncio.Event()  # the provider holds every request until set

    buildings = [str(b) for b in range(4, 10)]
    for building in buildings:  # six decisions, six commits
        at = rig.clock.now()
        await service.decide_events([event(building=building, device=f"leak-{building}", at=at)])
    await until(lambda: len(rig.fake.requests) == 2 + URGENT_SLOTS)
    assert lane.busy == 2 + URGENT_SLOTS
    statuses = Counter(s for (s,) in rig.rows("SELECT status FROM messages"))
    assert statuses == {"sending": 2 + URGENT_SLOTS, "pending": 6 - 2 - URGENT_SLOTS}

    rig.fake.gate.set()
    await rig.dispatcher.step()
    bodies = sorted(str(r["form"]["Body"]) for r in rig.fake.requests)
    assert [b[-1] for b in bodies] == buildings  # each once
    assert rig.rows("SELECT count(*) FROM messages WHERE status = 'sent'") == [(6,)]
    assert lane.busy == 0


async def test_a_commit_of_a_hundred_alarms_is_as_few_statements_as_one(
    rig: Rig, tmp_path: Path
) -> None:
    """The writer thread lets go of the GIL for every SQLite statement it runs and must
    then wait for the event loop's thread to hand it back, up to the switch interval
    (5 ms) while the loop is busy. Written row by row, a storm's commit waited that long
    for every row, and the claims and the next alarm waited behind it: one commit of a
    hundred alarms (events, states, incidents, timeline, outbox, messages, claims) runs
    no more statements than one of a single alarm, and so does recording their sends."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "leak.yaml").write_text(LEAK_TO_SECURITY)
    engine = Engine(load_playbooks(tmp_path / "playbooks").enabled, ZoneInfo("Asia/Shanghai"))
    service = IncidentService(rig.writer, engine, rig.clock, rig.dispatcher.staff)
    service.delivery = rig.dispatcher
    await service.catch_up(await service.open())
    rig.dispatcher.lanes["sms"].concurrency = 200
    assert rig.writer.store is not None
    conn = rig.writer.store.conn
    statements = await traced(rig)

    async def commit(first: int, count: int) -> int:
        at = rig.clock.now()
        alarms = [
            dataclasses.replace(event(building=str(first + n), device=f"leak-{n}", at=at), id=n)
            for n in range(first, first + count)
        ]
        states = [StateRow(a.device_id, a.kind, True, at, a.id, a.id) for a in alarms]
        before = len(statements)
        await service.commit(Batch(events=alarms, states=states), urgent=True)
        return len(statements) - before

    async def record(ids: list[int]) -> int:
        sent = [
            db.Outcome(Message(i, "sms", WANG, "", "zh"), Result("sent", provider_id=f"SM{i}"))
            for i in ids
        ]
        before = len(statements)
        await rig.writer.call(lambda: db.write_outcomes(conn, sent, rig.clock.now()))
        return len(statements) - before

    try:
        one = await commit(1, 1)
        hundred = await commit(100, 100)
        assert hundred <= one
        claimed = [i for (i,) in rig.rows("SELECT id FROM messages WHERE status = 'sending'")]
        assert len(claimed) == 101  # each alarm's alert claimed in its commit
        assert await record(claimed[1:]) <= await record(claimed[:1])
    finally:
        await untraced(rig)
    assert rig.rows("SELECT count(*) FROM messages WHERE status = 'sent'") == [(101,)]
    assert rig.rows("SELECT count(*) FROM incidents") == [(101,)]
    await rig.dispatcher.step()  # the sends the commits started are recorded


async def test_two_claims_written_at_once_never_hold_more_than_a_lane(rig: Rig) -> None:
    """A decision's claim and a dispatcher round's can be queued on the writer at the same
    time: the first prepared holds the lane's room, the second gets what is left (here
    nothing), and each message is started once."""
    lane = rig.dispatcher.lanes["sms"]
    lane.concurrency = 2
    for incident in range(1, 7):  # six fire alerts to security, one outbox row each
        await rig.add_action(incident, "notify", "role:security")
    rig.fake.gate = asyncio.Event()
    first, second = rig.dispatcher.fold(), rig.dispatcher.fold()
    assert first.wants["sms"] == (2, URGENT_SLOTS)
    assert "sms" not in second.wants  # the room is held by the first
    assert lane.busy == 2 + URGENT_SLOTS

    def write(fold: Fold) -> list[Message]:
        assert rig.writer.store is not None
        with transaction(rig.writer.store.conn):
            return fold.write(rig.writer.store.conn)

    taken = [await rig.writer.call(write, fold) for fold in (second, first)]
    for fold, claimed in zip((second, first), taken, strict=True):
        fold.done(claimed)
    assert [len(claimed) for claimed in taken] == [0, 2 + URGENT_SLOTS]
    assert lane.busy == 2 + URGENT_SLOTS
    await until(lambda: len(rig.fake.requests) == 2 + URGENT_SLOTS)

    rig.fake.gate.set()
    await rig.dispatcher.step()
    assert Counter(str(r["form"]["Body"]) for r in rig.fake.requests) == {TEXTS["zh"]: 6}
    assert rig.rows("SELECT count(*) FROM messages WHERE status = 'sent'") == [(6,)]
    assert lane.busy == 0


async def test_a_freed_slot_claims_only_when_its_lane_has_messages_waiting(rig: Rig) -> None:
    """Each claim notes whether it left due messages in its lane. A slot freed in a lane
    with none waiting starts no claim: at a steady load each message goes out from its
    decision's own commit, and a claim for every freed slot was a commit that found
    nothing, taking the writer from the next alarm. A slot freed where messages wait
    takes the next one, with no poll to help (here the poll is an hour)."""
    dispatcher = own_dispatcher(rig, concurrency=10, poll_s=3600)
    statements = await traced(rig)

    def claims() -> int:
        return sum("ORDER BY priority, id LIMIT" in s and "'sms'" in s for s in statements)

    rig.fake.gate = asyncio.Event()
    for incident in range(1, 4):  # three alerts, room for ten: the first claim takes all
        await rig.add_action(incident, "notify", "role:security")
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: len(rig.fake.requests) == 3)
        assert claims() == 1
        rig.fake.gate.set()
        await until_sent(rig, 3)
        await until(lambda: dispatcher.lanes["sms"].busy == 0)
        assert claims() == 1  # three slots freed, nothing waiting: no claim

        dispatcher.lanes["sms"].concurrency = 1  # one at a time (and the urgent slots)
        rig.fake.gate.clear()
        for incident in range(4, 12):  # eight more
            await rig.add_action(incident, "notify", "role:security")
        dispatcher.outbox_changed()
        await until(lambda: len(rig.fake.requests) == 3 + 1 + URGENT_SLOTS)
        rig.fake.gate.set()  # each freed slot takes the next waiting alert
        await until_sent(rig, 11)
    finally:
        dispatcher.stop()
        await task
        await untraced(rig)
    assert Counter(str(r["form"]["Body"]) for r in rig.fake.requests) == {TEXTS["zh"]: 11}


async def test_a_slot_takes_its_next_message_in_the_commit_that_records_its_last(
    rig: Rig,
) -> None:
    """A slot is free once its send is recorded, and the commit that records it claims
    the next message into it: a slot waits for one commit between two sends, not two
    (under a telemetry storm every commit waits behind ingest's, and a lane's throughput
    is its slots over that wait)."""
    dispatcher = own_dispatcher(rig, concurrency=1, poll_s=3600)
    statements = await traced(rig)
    for incident in range(1, 9):  # eight routine alerts (no urgent slots), one slot
        await rig.add_action(incident, "notify", "role:security", severity=Severity.MINOR)
    statements.clear()
    task = asyncio.create_task(dispatcher.run())
    try:
        await until_sent(rig, 8)
    finally:
        dispatcher.stop()
        await task
        await untraced(rig)
    assert len(rig.fake.requests) == 8
    commits = statements.count("COMMIT")
    assert commits <= 8 + 1  # the first claim, then one commit a send (it was two)


async def test_a_retry_falling_due_goes_out_though_wake_ups_never_stop(rig: Rig) -> None:
    """A freed slot claims only on lanes known to have messages waiting; a retry is not
    known until its time comes. Every lane is looked at every poll_s however busy the
    dispatcher is: here a fan-out's stream of wake-ups never lets it fall idle, and the
    security guard's SMS that failed once still goes out when its retry falls due."""
    dispatcher = own_dispatcher(rig, concurrency=10, poll_s=0.05)
    rig.fake.plan.append(Failure(500))  # the first request fails: retried later
    await rig.add_action(1, "notify", "role:security")
    task = asyncio.create_task(dispatcher.run())
    busy = True

    async def wake_ups() -> None:  # another incident's work, never done
        while busy:
            dispatcher.wake.set()
            await asyncio.sleep(0)

    waking = asyncio.create_task(wake_ups())
    try:
        await until(lambda: len(rig.fake.requests) == 1)
        await until(lambda: rig.rows("SELECT status FROM messages")[0][0] == "pending")
        rig.clock.advance(60)  # the retry is due (the first waits under a second)
        await until(lambda: len(rig.fake.requests) == 2)
    finally:
        busy = False
        await waking
        dispatcher.stop()
        await task
    assert rig.rows("SELECT status FROM messages") == [("sent",)]


def claim(
    conn: sqlite3.Connection, now: dt.datetime, wants: dict[str, tuple[int, int]], starve_s: float
) -> list[Message]:
    """A round's claim in a transaction of its own, when the sweep of expired messages is
    due: the sweep, then the take (as the dispatcher's fold does)."""
    with transaction(conn):
        db.expire(conn, now)
        return db.take_due(conn, now, wants, starve_s)


def test_a_waiting_message_is_not_starved_by_later_urgent_ones(tmp_path: Path) -> None:
    from alertd.store import SqliteStore

    store = SqliteStore(tmp_path / "alertd.db")
    now = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    rows = [(1, 19, now - timedelta(seconds=200))]  # a resident, waiting 200 s
    rows += [(n, 0, now - timedelta(seconds=1)) for n in range(2, 12)]  # fresh staff alerts
    store.conn.executemany(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, due_at, updated_at) "
        "VALUES (?, 1, 'sms', ?, 'x', 'x', 'zh', 'x', ?, ?, '')",
        [(n, f"+86138{n:08d}", p, iso(at)) for n, p, at in rows],
    )
    (first,) = claim(store.conn, now, {"sms": (1, 0)}, starve_s=10)
    assert first.recipient == "+8613800000001"  # 200 s at one level per 10 s: it is its turn
    fresh = claim(store.conn, now, {"sms": (3, 0)}, starve_s=1000)
    assert [m.recipient for m in fresh] == ["+8613800000002", "+8613800000003", "+8613800000004"]


def test_a_message_past_its_expiry_is_never_taken_and_a_backlog_is_not_sorted(
    tmp_path: Path,
) -> None:
    """Expiry is marked now and then, not on every claim: meanwhile an expired message
    is still never taken. Each claim reads along a lane's index, however long the
    backlog (a sort of every pending row made claims slower as the backlog grew)."""
    from alertd.store import SqliteStore

    store = SqliteStore(tmp_path / "alertd.db")
    now = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    rows = [(1, 0, now - timedelta(seconds=1))]  # staff, most urgent, but expired
    rows += [(n, 19, now + timedelta(minutes=5)) for n in range(2, 5)]
    store.conn.executemany(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, due_at, expires_at, updated_at) "
        "VALUES (?, 1, 'sms', ?, 'x', 'x', 'zh', 'x', ?, ?, ?, '')",
        [(n, f"+86138{n:08d}", p, iso(now - timedelta(seconds=5)), iso(e)) for n, p, e in rows],
    )
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)  # with the values filled in
    taken = claim(store.conn, now, {"sms": (2, 2)}, starve_s=10)
    store.conn.set_trace_callback(None)
    assert [m.recipient for m in taken] == ["+8613800000002", "+8613800000003"]
    (select,) = [sql for sql in statements if sql.startswith("SELECT")]  # one for all lanes
    plan = " ".join(row[-1] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {select}"))
    assert "USING INDEX messages_lane " in plan, plan  # the most urgent
    assert "USING INDEX messages_lane_age " in plan, plan  # the longest waiting
    assert "SCAN messages" not in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    assert db.expire(store.conn, now) == 0  # the claim swept message 1 already

    # message 4 expires in 5 minutes; at 6 minutes a claim without the sweep leaves it
    later = now + timedelta(minutes=6)
    with store.conn:
        assert db.take_due(store.conn, later, {"sms": (9, 2)}, starve_s=10) == []
    assert db.due_count(store.conn, later, ["sms"]) == 0
    assert db.expire(store.conn, later) == 1


def test_the_directory_shows_flags_and_a_new_phone_or_a_command_heals_them(tmp_path: Path) -> None:
    from alertd.store import SqliteStore

    (tmp_path / "a.yaml").write_text("storage: {path: alertd.db}\n")
    store = SqliteStore(tmp_path / "alertd.db")
    now = dt.datetime.now(dt.UTC)
    residents = first_thousand()[:3]
    import_residents(store.conn, residents, now)
    store.conn.execute(
        "UPDATE residents SET undeliverable = 'invalid number (Twilio 21211)' WHERE phone = ?",
        (phone(1),),
    )
    store.conn.execute(
        "UPDATE residents SET undeliverable = 'gave up' WHERE phone = ?", (phone(2),)
    )
    store.conn.execute("UPDATE residents SET opted_out = 1 WHERE phone = ?", (phone(0),))
    runner = CliRunner()
    cfg = ["--config", str(tmp_path / "a.yaml")]
    listed = runner.invoke(main, ["residents", "list", "--flagged", *cfg])
    assert listed.exit_code == 0, listed.output
    assert "opted out (replied STOP)" in listed.output
    assert "undeliverable: invalid number (Twilio 21211)" in listed.output
    assert phone(1) not in listed.output  # masked
    # the resident of flat 1 gave a new phone: re-imported, the new number is texted
    moved = Resident(
        residents[1].building,
        residents[1].floor,
        residents[1].unit,
        residents[1].name,
        "+8613812345678",
        "zh",
        False,
    )
    import_residents(store.conn, [residents[0], moved, residents[2]], now)
    again = runner.invoke(main, ["residents", "list", "--flagged", "--show-phones", *cfg])
    assert "+8613812345678" not in again.output
    assert phone(2) in again.output
    cleared = runner.invoke(main, ["residents", "clear", phone(2), *cfg])
    assert cleared.exit_code == 0, cleared.output
    after = runner.invoke(main, ["residents", "list", "--flagged", "--show-phones", *cfg])
    assert phone(2) not in after.output
    assert phone(0) in after.output  # a STOP is the resident's to undo
    nothing = runner.invoke(main, ["residents", "clear", phone(2), *cfg])
    assert nothing.exit_code == 1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_starttls_checks_the_servers_certificate(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    received: list[object] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        message = Message(1, "email", "li.wei@example.com", "【火警 #1】3号楼", "zh")
        smtp = {"host": "127.0.0.1", "port": port, "from_address": "alertd@example.com"}
        untrusted = await EmailSink(SmtpConfig(**smtp)).send(message)  # type: ignore[arg-type]
        trusted = await EmailSink(SmtpConfig(**smtp, ca_file=str(cert))).send(message)  # type: ignore[arg-type]
    finally:
        controller.stop()
    assert untrusted.outcome == "unavailable"
    assert "certificate not trusted" in untrusted.reason
    assert trusted.outcome == "sent"
    assert len(received) == 1


async def test_no_second_holds_more_starts_than_the_rate_though_the_loop_wakes_late() -> None:
    """A busy event loop wakes the pacer late; it made the lost time up in bursts (205
    requests in one second at 200/s), and the provider answered 429."""
    lane = Lane("sms", 500, 100.0, FakeClock())
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def one() -> None:
        assert await lane.wait_turn(5)
        starts.append(loop.time())

    async def hog() -> None:  # the loop busy with other work: late wake-ups
        while len(starts) < 300:
            time.sleep(0.03)  # noqa: ASYNC251 - blocking the loop is the point
            await asyncio.sleep(0.07)

    await asyncio.gather(hog(), *(one() for _ in range(300)))
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 100


def test_after_a_429_the_lane_settles_below_the_rate_that_was_refused() -> None:
    """It climbed back to the very rate the provider refused and tripped again every 2 s."""
    clock = FakeClock()
    lane = Lane("sms", 20, 200.0, clock)
    lane.throttle(1.0)
    assert lane.rate == 100
    for _ in range(500):
        lane.succeeded()
    assert lane.rate == pytest.approx(190)  # just below the refused 200, and stays there
    clock.advance(2)
    lane.throttle(1.0)  # refused again at 190, after the pause
    for _ in range(500):
        lane.succeeded()
    assert lane.rate == pytest.approx(180.5)
    clock.advance(61)  # a quiet minute: a step higher, not straight back
    for _ in range(500):
        lane.succeeded()
    assert lane.rate == pytest.approx(190.5)


async def test_a_fan_out_from_idle_leaves_room_for_its_first_requests_arriving_late() -> None:
    """A lane idle for a while opens new connections: its first requests reach the
    provider later than those after them, and at 200/s a provider counting arrivals saw
    201 in the fan-out's first second (a 429 that paused staff alerts too). Counted as
    arriving `COLD_S` late, the first `concurrency` leave room for that; the fan-out
    still runs at nearly the full rate."""
    from alertd.outbox.lanes import COLD_S

    lane = Lane("sms", 20, 200.0, FakeClock())
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def one() -> None:
        assert await lane.wait_turn(5)
        starts.append(loop.time())

    await asyncio.gather(*(one() for _ in range(420)))
    arrivals = sorted(t + (COLD_S if n < 20 else 0.0) for n, t in enumerate(starts))
    busiest = max(sum(1 for t in arrivals if s <= t < s + 1.0) for s in arrivals)
    assert busiest <= 200
    first = starts[199] - starts[0]  # the room costs the first second a few starts ...
    assert first < 1.0
    steady = (len(starts) - 201) / (starts[-1] - starts[200])  # ... and nothing after
    assert steady >= 190
