"""Twilio's callbacks over real HTTP, signed with the real SDK's validator; forged
requests are refused and change nothing."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.clock import FakeClock
from alertd.directory.residents import Resident
from alertd.directory.staff import load_staff
from alertd.outbox.inbound import Inbound
from alertd.outbox.replies import classify
from alertd.store import Writer
from alertd.store.directory import import_residents
from alertd.store.sql import transaction
from integrations.twilio.callbacks import Callbacks
from tests.broker import free_port

TOKEN = "callback-secret"
RESIDENT = "+8613800001203"
STAFF = "+8613900000001"


def incident_row(number: int, title: str, status: str = "open") -> tuple[str, tuple[object, ...]]:
    return (
        "INSERT INTO incidents (id, playbook, key, status, severity, site, building, floor, "
        "unit, zone, title, opened_at, last_event_at, active, units, run, drill) VALUES "
        "(?, 'fire-alarm', 'k', ?, 'critical', 'HV', '3', '', '', '', ?, '', '', '[]', '[]', "
        "'{}', 0)",
        (number, status, title),
    )


@dataclass
class Server:
    url: str
    public: str
    db: Path

    async def post(
        self, path: str, form: dict[str, str], *, sign: bool = True, token: str = TOKEN
    ) -> tuple[int, str]:
        headers = {}
        if sign:
            signature = RequestValidator(token).compute_signature(self.public + path, form)
            headers["X-Twilio-Signature"] = signature
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=form, headers=headers) as response,
        ):
            return response.status, await response.text()

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            found = list(conn.execute(sql, args).fetchall())
            conn.commit()  # a test's own writes (another writer, as Twilio's state would be)
            return found
        finally:
            conn.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    writer = Writer(tmp_path / "alertd.db", synchronous="NORMAL")
    store = await writer.open()
    clock = FakeClock()
    residents = [Resident("3", "12", "1203", "Li Hua", RESIDENT, "zh", True, "lives alone")]
    await writer.call(import_residents, store.conn, residents, clock.now())
    await writer.call(
        lambda: store.conn.executescript(
            "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
            "recipient_ref, language, body, priority, status, due_at, provider_id, updated_at) "
            f"VALUES (1, 7, 'sms', '{RESIDENT}', 'resident', '1', 'zh', 'x', 1, 'sent', '', "
            f"'SM1', ''), (2, 7, 'sms', '{STAFF}', 'staff', 'Wang', 'zh', 'x', 0, 'sent', "
            "'', 'SM2', '');"
        )
    )
    for number, title in ((7, "火警 3号楼 / Fire alarm, Bldg 3"), (8, "漏水 5号楼 / Water leak")):
        await writer.call(store.conn.execute, *incident_row(number, title))
    (tmp_path / "staff.yaml").write_text(
        f"people:\n  Wang: {{phone: '{STAFF}', roles: [security]}}\n"
    )
    staff = load_staff(tmp_path / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
    port = free_port()
    public = "https://alertd.example.com"
    inbound = Inbound(writer, staff, clock)
    runner = web.AppRunner(Callbacks(inbound, TOKEN, public).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Server(f"http://127.0.0.1:{port}", public, tmp_path / "alertd.db")
    await runner.cleanup()
    await writer.close()


async def test_delivery_receipts_update_the_message_and_failures_reach_the_timeline(
    server: Server,
) -> None:
    status, _ = await server.post(
        "/twilio/status", {"MessageSid": "SM1", "MessageStatus": "delivered"}
    )
    assert status == 204
    assert server.rows("SELECT status FROM messages WHERE provider_id = 'SM1'") == [("delivered",)]
    await server.post(
        "/twilio/status",
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "21614"},
    )
    assert server.rows("SELECT status, reason FROM messages WHERE provider_id = 'SM1'") == [
        ("failed", "Twilio undelivered (error 21614)")
    ]
    assert server.rows("SELECT undeliverable FROM residents") == [
        ("not a mobile number (Twilio 21614)",)
    ]
    entries = server.rows("SELECT incident_id, type, text FROM timeline ORDER BY id")
    assert entries == [
        (7, "delivery", "message 1 delivered"),
        (7, "delivery", "message 1 not delivered: Twilio undelivered (error 21614)"),
    ]


async def test_a_forged_or_unsigned_callback_is_refused_and_changes_nothing(
    server: Server,
) -> None:
    forged = await server.post(
        "/twilio/status", {"MessageSid": "SM1", "MessageStatus": "failed"}, token="not-the-token"
    )
    unsigned = await server.post("/twilio/inbound", {"From": RESIDENT, "Body": "STOP"}, sign=False)
    assert forged[0] == unsigned[0] == 403
    assert server.rows("SELECT status FROM messages WHERE provider_id = 'SM1'") == [("sent",)]
    assert server.rows("SELECT opted_out FROM residents") == [(0,)]


async def test_stop_and_start_from_a_resident(server: Server) -> None:
    status, twiml = await server.post("/twilio/inbound", {"From": RESIDENT, "Body": " stop "})
    assert status == 200
    assert "您已退订" in twiml
    assert twiml.startswith("<Response><Message>")
    assert server.rows("SELECT opted_out FROM residents") == [(1,)]
    await server.post("/twilio/inbound", {"From": RESIDENT, "Body": "START"})
    assert server.rows("SELECT opted_out FROM residents") == [(0,)]


async def test_a_resident_asking_for_help_reaches_a_person(server: Server) -> None:
    status, twiml = await server.post("/twilio/inbound", {"From": RESIDENT, "Body": "2"})
    assert status == 200
    assert "事件 #7" in twiml
    assert "duty staff are being told" in twiml
    (entry,) = server.rows("SELECT incident_id, type, text FROM timeline")
    assert entry == (7, "check_in", "Bldg 3, 12F, 1203: need help (2)")
    # the daemon turns the command into a staff notification (tests/test_duty_desk.py)
    ((command, incident, args),) = server.rows("SELECT command, incident_id, args FROM commands")
    assert (command, incident) == ("help", 7)
    assert '"unit": "1203"' in str(args)
    assert '"notes": "lives alone"' in str(args)
    # free words from a resident are a person to answer too
    await server.post("/twilio/inbound", {"From": RESIDENT, "Body": "water in the lift"})
    assert [r[0] for r in server.rows("SELECT command FROM commands")] == ["help", "help"]


async def test_acknowledgements_land_on_the_incident_they_name(server: Server) -> None:
    # the staff member was told about incident 7 only: a bare OK is for 7
    _, twiml = await server.post("/twilio/inbound", {"From": STAFF, "Body": "OK"})
    assert "已确认事件 #7" in twiml
    assert "Incident #7 acknowledged" in twiml
    # told about two open incidents: a bare OK is answered with the list, no guess
    server.rows(
        "INSERT INTO messages (outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, due_at, updated_at) VALUES "
        "(3, 8, 'sms', ?, 'staff', 'Wang', 'zh', 'x', 0, 'sent', '', '')",
        STAFF,
    )
    _, listed = await server.post("/twilio/inbound", {"From": STAFF, "Body": "ok"})
    assert "You have 2 incidents" in listed
    assert "#8 漏水" in listed
    assert "#7 火警" in listed
    _, named = await server.post("/twilio/inbound", {"From": STAFF, "Body": "OK 8"})
    assert "Incident #8 acknowledged" in named
    assert server.rows("SELECT command, incident_id, actor FROM commands") == [
        ("ack", 7, "Wang"),
        ("ack", 8, "Wang"),
    ]
    _, unknown = await server.post("/twilio/inbound", {"From": STAFF, "Body": "OK 99"})
    assert "There is no incident #99" in unknown


async def test_an_acknowledgement_of_a_resolved_incident_is_refused(server: Server) -> None:
    server.rows("UPDATE incidents SET status = 'resolved' WHERE id = 7")
    _, twiml = await server.post("/twilio/inbound", {"From": STAFF, "Body": "OK 7"})
    assert "Incident #7 is resolved" in twiml
    assert server.rows("SELECT id FROM commands") == []


async def test_the_voice_keypad_acknowledges_the_incident_the_call_was_about(
    server: Server,
) -> None:
    status, twiml = await server.post("/twilio/voice?incident=8", {"To": STAFF, "Digits": "1"})
    assert status == 200
    assert "已确认事件 8" in twiml
    assert 'language="cmn-CN"' in twiml
    assert server.rows("SELECT command, incident_id FROM commands") == [("ack", 8)]


@pytest.mark.parametrize(
    ("body", "staff", "intent"),
    [
        ("STOP", False, "stop"),
        ("退订", False, "stop"),
        ("unsubscribe", True, "stop"),
        ("start", False, "start"),
        ("HELP", False, "help"),
        ("1", False, "safe"),
        ("平安", False, "safe"),
        ("2", False, "need_help"),
        ("ok", True, "ack"),
        ("OK 12", True, "ack"),
        ("ok", False, "other"),
        ("收到", True, "ack"),
        ("water everywhere", False, "other"),
    ],
)
def test_reply_words(body: str, staff: bool, intent: str) -> None:
    reply = classify(body, from_staff=staff)
    assert reply.intent == intent
    if body == "OK 12":
        assert reply.incident == 12


async def test_a_forged_flood_is_refused_unread_and_logged_once_a_minute(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    megabyte = {"Body": "x" * 1_000_000, "From": RESIDENT}

    async def post(form: dict[str, str], headers: dict[str, str]) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(server.url + "/twilio/inbound", data=form, headers=headers) as response,
        ):
            return response.status

    with caplog.at_level(logging.WARNING):
        unsigned = [await post(megabyte, {}) for _ in range(20)]
        huge_signature = await post({"Body": "2"}, {"X-Twilio-Signature": "A" * 5000})
        wrong = await post({"Body": "STOP", "From": RESIDENT}, {"X-Twilio-Signature": "A" * 28})
    assert set(unsigned) == {403}
    assert (huge_signature, wrong) == (403, 403)
    logged = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(logged) == 1  # then counted, not logged, for a minute
    assert logged[0].startswith("rejected 1 request(s)")
    # a signed body larger than anything Twilio sends is refused too
    oversized = {"From": RESIDENT, "Body": "y" * 40_000}
    status, _ = await server.post("/twilio/inbound", oversized)
    assert status == 413
    assert server.rows("SELECT opted_out FROM residents") == [(0,)]  # nothing changed


async def test_receipts_come_together_and_an_early_one_waits_for_its_send(server: Server) -> None:
    from alertd.outbox.sink import Message, Result
    from alertd.store import messages as messages_db

    # many receipts at once (a fan-out's): all applied
    await asyncio.gather(
        *(
            server.post("/twilio/status", {"MessageSid": sid, "MessageStatus": "delivered"})
            for sid in ("SM1", "SM2")
            for _ in range(20)
        )
    )
    assert server.rows("SELECT status FROM messages ORDER BY id") == [("delivered",)] * 2
    # Twilio can answer the receipt before alertd has recorded the send
    await server.post("/twilio/status", {"MessageSid": "SM9", "MessageStatus": "delivered"})
    server.rows(
        "INSERT INTO messages (id, outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, due_at, updated_at) VALUES "
        "(9, 9, 7, 'sms', '+8613800000009', 'resident', '9', 'zh', 'x', 1, 'sending', '', '')"
    )
    conn = sqlite3.connect(server.db, isolation_level=None)
    try:
        sent = messages_db.Outcome(
            Message(9, "sms", "+8613800000009", "x", "zh"), Result("sent", provider_id="SM9")
        )
        with transaction(conn):
            messages_db.write_outcomes(conn, [sent], FakeClock().now())
    finally:
        conn.close()
    assert server.rows("SELECT status FROM messages WHERE id = 9") == [("delivered",)]


def test_a_receipt_is_applied_though_another_process_writes_meanwhile(tmp_path: Path) -> None:
    """The console and commands write to the store from processes of their own. A receipt
    read its message and then wrote it: begun deferred, its transaction could not become
    a write once the other process had committed in between, and failed at once
    ("database is locked", whatever the busy timeout). Writes take the lock first now:
    the other process waits (here it cannot: no timeout), the receipt is applied."""
    from alertd.store import SqliteStore
    from alertd.store import messages as messages_db

    store = SqliteStore(tmp_path / "alertd.db")
    store.conn.execute(
        "INSERT INTO messages (id, outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, provider_id, due_at, updated_at) "
        "VALUES (1, 1, 1, 'sms', '+8613800000001', 'resident', '1', 'zh', 'x', 1, 'sent', "
        "'SM1', '', '')"
    )
    console = sqlite3.connect(tmp_path / "alertd.db", timeout=0, isolation_level=None)
    console_waited = []

    def meanwhile(statement: str) -> None:
        if statement.startswith("UPDATE messages SET status"):
            try:  # another process writes after the receipt's read, before its write
                console.execute("INSERT INTO counters VALUES ('console', 1)")
            except sqlite3.OperationalError:
                console_waited.append(statement)

    store.conn.set_trace_callback(meanwhile)
    receipt = messages_db.Receipt("SM1", "delivered")
    assert messages_db.apply_receipts(store.conn, [receipt], FakeClock().now()) == [
        ("sms", "delivered")
    ]
    store.conn.set_trace_callback(None)
    assert console_waited
    row = store.conn.execute("SELECT status FROM messages WHERE id = 1").fetchone()
    assert row == ("delivered",)
    console.close()
    store.close()
