"""Delivery with the real twilio SDK against a local fake Twilio, a real SQLite file and
simulated time for retries (no sleeps)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from pydantic import SecretStr

from alertd.clock import FakeClock
from alertd.config import DeliveryConfig, TwilioConfig
from alertd.directory.residents import Resident
from alertd.directory.staff import load_staff
from alertd.engine.state import Action, Decision, Incident
from alertd.events import Location, Severity
from alertd.outbox.dispatcher import Dispatcher
from alertd.store import Writer
from alertd.store import incidents as incidents_db
from alertd.store.directory import import_residents
from alertd.store.postgres import PgConn, PgStore
from integrations.twilio.sink import TwilioSink
from tests.fake_twilio import HANG, Failure, FakeTwilio
from tests.helpers import serve_locally

SID = "AC" + "0" * 32
TEXTS = {
    "zh": "【火警 #1】3号楼发生火警，请立即前往，回复 OK 1 确认。",
    "en": "[FIRE #1] Fire alarm in building 3: go now; reply OK 1.",
}


def phone(n: int) -> str:
    return f"+86138{n:08d}"


def first_thousand() -> list[Resident]:
    """Building 3: every 5th resident reads English, every 10th is vulnerable."""
    return [
        Resident(
            "3",
            str(n // 100),
            f"{n // 100}{n % 100:02d}",
            f"R{n}",
            phone(n),
            "en" if n % 5 == 0 else "zh",
            n % 10 == 0,
            site="HV",  # the incidents' site
        )
        for n in range(1000)
    ]


@dataclass
class Rig:
    writer: Writer
    clock: FakeClock
    fake: FakeTwilio
    dispatcher: Dispatcher

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """A reader of its own, on the rig's engine."""
        assert self.writer.store is not None
        if isinstance(self.writer.store, PgStore):
            with psycopg.connect(self.writer.store.url) as pg:
                return list(PgConn(pg).execute(sql, args).fetchall())
        conn = sqlite3.connect(self.writer.store.path)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()

    async def add_action(
        self,
        incident_id: int,
        channel: str,
        target: str,
        vulnerable_first: bool = True,
        severity: Severity = Severity.CRITICAL,
    ) -> None:
        incident = Incident(
            incident_id,
            "fire-alarm",
            "building:HV/3",
            "open",
            severity,
            Location("HV", "3", "1", "103"),
            "fire",
            self.clock.now(),
            self.clock.now(),
            units=("103",),
        )
        decision = Decision(incident, actions=[Action(channel, target, TEXTS, vulnerable_first)])
        assert self.writer.store is not None
        await self.writer.call(
            incidents_db.save,
            self.writer.store.conn,
            [decision],
            self.clock.now(),
            incidents_db.Done(),
        )

    async def settle(self, rounds: int = 50, step_s: float = 400) -> None:
        """Send, and move simulated time on so that retries fall due, until quiet."""
        for _ in range(rounds):
            await self.dispatcher.step()
            pending = self.rows("SELECT count(*) FROM messages WHERE status = 'pending'")[0][0]
            if not pending:
                return
            self.clock.advance(step_s)


@pytest.fixture(params=["sqlite", "postgres"])
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """Delivery on each engine in turn."""
    fake = await FakeTwilio().start()
    writer = (
        Writer(tmp_path / "alertd.db", synchronous="NORMAL")
        if request.param == "sqlite"
        else Writer(url=request.getfixturevalue("pg_url"))
    )
    store = await writer.open()
    residents = first_thousand()
    clock = FakeClock()
    await writer.call(import_residents, store.conn, residents, clock.now())
    (tmp_path / "staff.yaml").write_text(
        "people:\n  Wang: {phone: '+8613900000001', roles: [security]}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '23:59'}\n"
    )
    staff = load_staff(tmp_path / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
    twilio = TwilioConfig(
        account_sid=SID,
        auth_token=SecretStr("secret-token"),
        from_number="+15005550006",
        api_base_url=fake.base_url,
    )
    public = "https://alertd.example.com"
    sinks = {"sms": TwilioSink(twilio, "sms", public), "call": TwilioSink(twilio, "call", public)}
    config = DeliveryConfig(concurrency=50, send_timeout_s=2)  # type: ignore[call-arg]
    dispatcher = Dispatcher(writer, sinks, clock, config, staff)
    await dispatcher.start()
    yield Rig(writer, clock, fake, dispatcher)
    await dispatcher.close()
    await writer.close()
    await fake.close()


async def test_a_building_fan_out_texts_every_resident_once_in_their_language(rig: Rig) -> None:
    more = [
        Resident("3", "40", f"40{n:05d}", f"R{n}", phone(n), "zh", False, site="HV")
        for n in range(1000, 10_000)
    ]
    assert rig.writer.store is not None  # a re-import is the whole list: the first 1,000 too
    await rig.writer.call(
        import_residents, rig.writer.store.conn, first_thousand() + more, rig.clock.now()
    )
    await rig.add_action(1, "sms", "building")
    await rig.settle()
    sent = rig.fake.sms()
    assert len(sent) == 10_000
    assert len({r["form"]["To"] for r in sent}) == 10_000
    by_number = {r["form"]["To"]: r["form"]["Body"] for r in sent}
    assert by_number[phone(5)] == TEXTS["en"]
    assert by_number[phone(7)] == TEXTS["zh"]
    assert all(r["auth"].startswith("Basic ") for r in sent)  # the real SDK's own requests
    assert sent[0]["form"]["ValidityPeriod"] == "1800"
    assert sent[0]["form"]["StatusCallback"] == "https://alertd.example.com/twilio/status"
    first_batch = {r["form"]["To"] for r in sent[:100]}
    assert first_batch == {phone(n) for n in range(0, 1000, 10)}  # vulnerable first
    statuses = Counter(s for (s,) in rig.rows("SELECT status FROM messages"))
    assert statuses == {"sent": 10_000}


async def test_a_429_storm_pauses_the_lane_and_nobody_is_lost_or_texted_twice(
    rig: Rig,
) -> None:
    """Ten seconds of 429s with Retry-After 2 s (simulated time): in each Retry-After window
    at most the lane's concurrency reaches Twilio; then every resident once."""
    rig.fake.storm = Failure(429, code=20429, retry_after=2)
    await rig.add_action(1, "sms", "building")
    windows = []
    for _ in range(5):
        before = len(rig.fake.requests)
        await rig.dispatcher.step()
        windows.append(len(rig.fake.requests) - before)
        rig.clock.advance(2)
    rig.fake.storm = None
    await rig.settle(step_s=2)
    assert 0 < max(windows) <= 50  # the lane's concurrency: only what was in flight
    per_number = Counter(r["form"]["To"] for r in rig.fake.sms())
    assert len(per_number) == 1000
    assert max(per_number.values()) == 1
    assert rig.rows("SELECT count(*) FROM messages WHERE status != 'sent'") == [(0,)]
    assert rig.rows("SELECT max(attempts) FROM messages") == [(1,)]  # a pause is not a try
    assert rig.rows("SELECT count(*) FROM residents WHERE undeliverable IS NOT NULL") == [(0,)]


async def test_permanent_errors_are_not_retried_and_are_kept_on_the_directory(rig: Rig) -> None:
    rig.fake.always[phone(3)] = Failure(400, 21211)
    rig.fake.always[phone(4)] = Failure(400, 21610)
    rig.fake.always[phone(6)] = Failure(400, 21614)
    await rig.add_action(1, "sms", "building")
    await rig.settle()
    tried = Counter(r["form"]["To"] for r in rig.fake.requests)
    assert tried[phone(3)] == tried[phone(4)] == tried[phone(6)] == 1
    failed = dict(rig.rows("SELECT recipient, reason FROM messages WHERE status = 'failed'"))
    assert failed == {
        phone(3): "invalid number (Twilio 21211)",
        phone(4): "unsubscribed (STOP) (Twilio 21610)",
        phone(6): "not a mobile number (Twilio 21614)",
    }
    flags = dict(
        rig.rows(
            "SELECT phone, coalesce(undeliverable, CAST(opted_out AS TEXT)) FROM residents "
            "WHERE phone IN (?, ?, ?)",
            phone(3),
            phone(4),
            phone(6),
        )
    )
    assert flags == {
        phone(3): "invalid number (Twilio 21211)",
        phone(4): "1",
        phone(6): "not a mobile number (Twilio 21614)",
    }
    # the next alert leaves them out
    await rig.add_action(2, "sms", "building")
    await rig.settle()
    assert Counter(r["form"]["To"] for r in rig.fake.requests)[phone(3)] == 1


async def test_a_staff_sms_that_fails_falls_back_to_a_voice_call(rig: Rig) -> None:
    rig.fake.always["+8613900000001"] = Failure(400, 21612)
    await rig.add_action(1, "notify", "oncall:security")
    await rig.settle()
    calls = [r for r in rig.fake.requests if r["kind"] == "Calls"]
    assert len(calls) == 1
    assert calls[0]["form"]["To"] == "+8613900000001"
    twiml = calls[0]["form"]["Twiml"]
    assert '<Say language="cmn-CN" loop="2">' in twiml
    assert "请立即前往，按1确认。" in twiml  # what a call says instead of "reply OK 1"
    assert "OK" not in twiml
    # pressing 1 acknowledges the incident the call is about
    assert 'action="https://alertd.example.com/twilio/voice?incident=1"' in twiml


async def test_messages_in_flight_at_a_crash_are_counted_and_sent_again(
    rig: Rig, tmp_path: Path
) -> None:
    await rig.add_action(1, "sms", "floor")
    assert rig.writer.store is not None
    from tests.helpers import expand_now

    await rig.writer.call(
        expand_now, rig.writer.store.conn, None, rig.clock.now(), timedelta(hours=1)
    )
    await rig.writer.call(
        lambda: rig.writer.store.conn.execute(  # type: ignore[union-attr]
            "UPDATE messages SET status = 'sending' WHERE id IN (SELECT id FROM messages LIMIT 3)"
        )
    )
    restarted = Dispatcher(
        rig.writer,
        rig.dispatcher.sinks,
        rig.clock,
        DeliveryConfig(),
        None,
    )  # type: ignore[call-arg]
    await restarted.start()
    assert restarted.counts["inflight_at_start"] == 3
    await restarted.step()
    assert len(rig.fake.sms()) == len(rig.rows("SELECT id FROM messages"))


async def test_an_outcome_the_store_refuses_is_kept_and_written_once_it_can(rig: Rig) -> None:
    """The SMS went out, then the store refused its outcome (a full disk, an I/O error):
    the running daemon must record it once the store recovers, not leave it `sending`
    until a restart sends it again."""
    from tests.mqtt_tools import until

    assert rig.writer.store is not None
    refusals: list[int] = []
    pg = isinstance(rig.writer.store, PgStore)

    def refuse(conn: sqlite3.Connection) -> None:
        if pg:  # the same fault on PostgreSQL, counted by a sequence (not rolled back)
            conn.execute("CREATE SEQUENCE refusals")
            conn.execute(
                "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM nextval('refusals'); RAISE EXCEPTION 'disk I/O error'; END $$"
            )
            conn.execute(
                "CREATE TRIGGER hold BEFORE UPDATE OF status ON messages FOR EACH ROW "
                "WHEN (OLD.status = 'sending') EXECUTE FUNCTION hold()"
            )
            return
        conn.create_function("refuse", 0, lambda: refusals.append(1) or 1)
        conn.execute(
            "CREATE TEMP TRIGGER hold BEFORE UPDATE OF status ON messages "
            "WHEN OLD.status = 'sending' BEGIN SELECT RAISE(ABORT, 'disk I/O error') "
            "WHERE refuse(); END"
        )

    def refused() -> int:
        if pg:
            ((count,),) = rig.rows(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refusals"
            )
            return int(count)  # type: ignore[call-overload]
        return len(refusals)

    await rig.writer.call(refuse, rig.writer.store.conn)
    config = DeliveryConfig(poll_s=0.02, send_timeout_s=2)  # type: ignore[call-arg]
    dispatcher = Dispatcher(rig.writer, rig.dispatcher.sinks, rig.clock, config, None)
    await dispatcher.start()
    running = asyncio.create_task(dispatcher.run())
    try:
        await rig.add_action(1, "sms", "unit")
        dispatcher.outbox_changed()
        await until(lambda: refused() >= 3)  # sent, refused, and tried again
        assert rig.rows("SELECT status FROM messages") == [("sending",)]
        await rig.writer.call(
            rig.writer.store.conn.execute, "DROP TRIGGER hold" + (" ON messages" if pg else "")
        )
        await until(lambda: rig.rows("SELECT status FROM messages") == [("sent",)])
        assert len(rig.fake.sms()) == 1  # written, not sent again
    finally:
        dispatcher.stop()
        await running


async def test_an_expired_safety_message_is_dropped_not_sent_late(rig: Rig) -> None:
    await rig.add_action(1, "sms", "unit")
    assert rig.writer.store is not None
    from tests.helpers import expand_now

    await rig.writer.call(
        expand_now, rig.writer.store.conn, None, rig.clock.now(), timedelta(seconds=60)
    )
    rig.clock.advance(61)
    await rig.dispatcher.step()
    assert rig.fake.requests == []
    assert rig.rows("SELECT status, reason FROM messages") == [
        ("expired", "expired before it could be sent")
    ]


async def test_a_hanging_request_is_bounded_and_retried(rig: Rig) -> None:
    rig.fake.plan.append(HANG)
    await rig.add_action(1, "sms", "unit")
    await rig.dispatcher.step()
    (reason,) = rig.rows("SELECT reason FROM messages")[0]
    assert reason == "no answer within 2.0 s"
    await rig.settle()
    assert [s for (s,) in rig.rows("SELECT status FROM messages")] == ["sent"]
    assert rig.dispatcher.counts["retryable"] == 1


async def test_webhooks_post_json_and_say_what_went_wrong_without_the_url() -> None:
    from aiohttp import web

    from alertd.config import WebhookConfig
    from alertd.outbox.broadcast import WebhookSink
    from alertd.outbox.sink import Message

    posts: list[object] = []
    # WeCom and DingTalk answer errors inside an HTTP 200: only errcode 0 is delivered
    answers = [
        (200, '{"errcode": 0, "errmsg": "ok"}'),
        (429, ""),
        (400, ""),
        (200, '{"errcode": 93000, "errmsg": "invalid webhook url"}'),
        (200, '{"errcode": 45009, "errmsg": "api freq out of limit"}'),
        (200, "<html>a captive portal</html>"),
    ]

    async def robot(request: web.Request) -> web.Response:
        posts.append(await request.json())
        status, body = answers.pop(0)
        return web.Response(status=status, text=body, headers={"Retry-After": "7"})

    app = web.Application()
    app.router.add_post("/robot/send", robot)
    runner, port = await serve_locally(app)
    url = f"http://127.0.0.1:{port}/robot/send?key=SECRET-KEY"
    sink = WebhookSink({"security": WebhookConfig(url=SecretStr(url))})
    try:
        message = Message(1, "webhook", "webhook:security:3", "3号楼火警", "zh")
        results = [await sink.send(message) for _ in range(6)]
    finally:
        await sink.close()
        await runner.cleanup()
    assert posts[0] == {"msgtype": "text", "text": {"content": "3号楼火警"}}
    assert [r.outcome for r in results] == [
        "sent",
        "throttled",  # the robot's whole lane waits, not just this message
        "permanent",
        "permanent",
        "throttled",
        "retryable",
    ]
    assert results[1].retry_after_s == 7.0
    assert results[3].reason == "webhook security: errcode 93000 invalid webhook url"
    assert all("SECRET" not in r.reason for r in results)


async def test_stop_then_an_alert_leaves_the_resident_out_and_start_brings_them_back(
    rig: Rig,
) -> None:
    from alertd.store import directory as directory_db

    assert rig.writer.store is not None
    conn = rig.writer.store.conn
    await rig.writer.call(directory_db.set_opt_out, conn, phone(103), True)  # STOP
    await rig.add_action(1, "sms", "unit")
    await rig.settle()
    assert [r["form"]["To"] for r in rig.fake.sms()] == []
    await rig.writer.call(directory_db.set_opt_out, conn, phone(103), False)  # START
    await rig.add_action(2, "sms", "unit")
    await rig.settle()
    assert [r["form"]["To"] for r in rig.fake.sms()] == [phone(103)]


def test_the_report_tallies_receipts_and_check_ins() -> None:
    from alertd.incidents.report import markdown

    incident = {
        "id": 7,
        "title": "fire",
        "drill": 0,
        "opened_at": "2026-11-27T02:00:00+00:00",
        "acknowledged_at": None,
        "resolved_at": None,
        "expected_restore_at": None,
        "site": "HV",
        "building": "3",
        "floor": "",
        "unit": "",
        "zone": "",
        "playbook": "fire-alarm",
        "severity": "critical",
        "status": "open",
    }
    at = "2026-11-27T02:05:00+00:00"
    timeline = [
        {"id": 1, "at": at, "type": "delivery", "actor": "twilio", "text": "message 1 delivered"},
        {"id": 2, "at": at, "type": "delivery", "actor": "twilio", "text": "message 2 delivered"},
        {
            "id": 3,
            "at": at,
            "type": "delivery",
            "actor": "twilio",
            "text": "message 3 not delivered: Twilio failed",
        },
        {"id": 4, "at": at, "type": "check_in", "actor": "x", "text": "+86 138****0001: safe (1)"},
        {
            "id": 5,
            "at": at,
            "type": "check_in",
            "actor": "x",
            "text": "+86 138****0002: need help (2)",
        },
    ]
    outbox = [
        {
            "created_at": at, "channel": "sms", "target": "building", "status": "done",
            "texts": '{"zh": "火警"}', "recipients": 3, "delivered": 2, "failed": 1,
        }
    ]  # fmt: skip
    text = markdown(incident, timeline, outbox, ZoneInfo("Asia/Shanghai"))
    assert "- **Delivery receipts:** 2 delivered" in text
    assert "- **Residents texted:** 3, 2 delivered, 1 failed; 1 answered safe, 1 need help" in text
    assert "| sms | building | 3 | 2 | 1 | done | 火警 |" in text
    assert "Message 3 not delivered" in text
    assert "message 1 delivered" not in text


async def test_e_mail_to_staff_through_a_real_smtp_server(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    from alertd.config import SmtpConfig
    from alertd.outbox.email import EmailSink
    from alertd.outbox.expand import staff_for
    from alertd.outbox.sink import Message
    from tests.broker import free_port

    received: list[tuple[str, list[str], bytes]] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))  # type: ignore[attr-defined]
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        (tmp_path / "staff.yaml").write_text(
            "people:\n  Li Wei: {phone: '+8613900000001', roles: [supervisor], "
            "email: li.wei@example.com}\n"
            "  Sun Min: {phone: '+8613900000004', roles: [supervisor]}\n"
        )
        staff = load_staff(tmp_path / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
        (to,) = staff_for(staff, "role:supervisor", FakeClock().now(), "HV", email=True)  # not Sun
        sink = EmailSink(
            SmtpConfig(
                host="127.0.0.1", port=port, from_address="alertd@example.com", starttls=False
            )
        )
        result = await sink.send(Message(1, "email", to.address, "【火警】3号楼\n详情见系统", "zh"))
    finally:
        controller.stop()
    assert result.outcome == "sent"
    (sender, recipients, content) = received[0]
    assert (sender, recipients) == ("alertd@example.com", ["li.wei@example.com"])
    assert b"Subject: =?utf-8?" in content  # the Chinese subject, encoded
    refused = await EmailSink(
        SmtpConfig(host="127.0.0.1", port=free_port(), from_address="a@example.com", starttls=False)
    ).send(Message(2, "email", "x@example.com", "hi", "en"))
    assert refused.outcome == "retryable"  # nobody listening: try again later


async def test_the_pa_payload_follows_the_configured_template() -> None:
    from alertd.config import PaConfig
    from alertd.outbox.broadcast import PaSink
    from alertd.outbox.sink import Message

    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        published.append((topic, payload))

    sink = PaSink(
        PaConfig(topic="bldg/{building}/pa", payload='{{"say": "{text}", "vol": 9}}'), publish
    )
    result = await sink.send(Message(4, "pa", "pa:building:3", 'Leave "now"', "en"))
    assert result.outcome == "sent"
    ((topic, payload),) = published
    assert topic == "bldg/3/pa"
    assert json.loads(payload) == {"say": 'Leave "now"', "vol": 9}  # the text JSON-escaped
