"""Twilio's requests to alertd: delivery receipts, inbound SMS and the voice keypad.

Every request's X-Twilio-Signature is checked (with the SDK's validator) against the
configured public URL; a forged or unsigned request gets 403 and changes nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn
from xml.sax.saxutils import escape

from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.clock import Clock
from alertd.console.audit import Actor
from alertd.directory.phones import mask
from alertd.directory.staff import Staff
from alertd.engine.wording import place
from alertd.events import Location
from alertd.incidents.commands import submit
from alertd.outbox.replies import classify
from alertd.outbox.totals import Totals
from alertd.store import Writer
from alertd.store import directory as directory_db
from alertd.store import incidents as incidents_db
from alertd.store import messages as db
from alertd.store.group import GroupCommit
from alertd.store.sql import unsynced

log = logging.getLogger(__name__)

#: Twilio's callbacks are form posts of a few KB at most
MAX_BODY = 16 * 1024
#: a base64 HMAC-SHA1 is 28 characters (SHA-256 ones, 44)
MAX_SIGNATURE = 64
#: forged requests are logged at most once in this many seconds, with a count
FORGED_LOG_S = 60.0

ANSWERS = {
    "stop": "您已退订本物业的短信通知。回复 START 可重新订阅。You have unsubscribed; reply START "
    "to subscribe again.",
    "start": "您已重新订阅本物业的安全通知。You are subscribed to safety notices again.",
    "help": "物业服务中心安全通知：回复 1 表示安全，2 表示需要帮助，STOP 退订。Safety notices from "
    "your property service centre: reply 1 if safe, 2 if you need help, STOP to opt out.",
    "safe": "收到，谢谢您告知。Thank you, noted that you are safe.",
    "ack": "已确认，谢谢。Acknowledged, thank you.",
}


class Callbacks:
    def __init__(
        self,
        writer: Writer,
        auth_token: str,
        public_url: str,
        staff: Staff | None,
        clock: Clock,
        totals: Totals | None = None,
    ) -> None:
        self._writer = writer
        self._validator = RequestValidator(auth_token)
        self._public = public_url.rstrip("/")
        self._staff = staff
        self._clock = clock
        self._forgeries = 0
        self.totals = totals or Totals()

        def apply(receipts: Sequence[db.Receipt]) -> None:
            """On the writer thread: receipts committed, then counted (on the writer's
            connection of the moment: PostgreSQL's is made again after it broke)."""
            applied = unsynced(db.apply_receipts)(writer.store.conn, receipts, clock.now())
            self.totals.receipts.update((c, final) for c, final in applied if final)

        self._receipts: GroupCommit[db.Receipt] = GroupCommit(writer, apply)
        self._forged_logged = -FORGED_LOG_S

    def app(self, app: web.Application | None = None) -> web.Application:
        """Its routes, on `app` (the daemon's server) or an application of their own."""
        app = app or web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/twilio/status", self._status)
        app.router.add_post("/twilio/inbound", self._inbound)
        app.router.add_post("/twilio/voice", self._voice)
        return app

    async def _form(self, request: web.Request) -> dict[str, str]:
        """The signed form, or 403. The header is checked before the body is read, and
        bodies are capped at what Twilio sends: forged floods cost neither memory nor
        log lines."""
        signature = request.headers.get("X-Twilio-Signature", "")
        if not 0 < len(signature) <= MAX_SIGNATURE:
            self._forged(request)
        if (request.content_length or 0) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY, actual_size=request.content_length or 0
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not self._validator.validate(self._public + request.path_qs, form, signature):
            self._forged(request)
        return form

    def _forged(self, request: web.Request) -> NoReturn:
        self._forgeries += 1
        now = asyncio.get_running_loop().time()
        if now - self._forged_logged >= FORGED_LOG_S:
            log.warning(
                "rejected %d request(s) with a missing or wrong signature in the last %g s "
                "(latest: %s from %s)",
                self._forgeries,
                FORGED_LOG_S,
                request.path,
                request.remote,
            )
            self._forgeries, self._forged_logged = 0, now
        raise web.HTTPForbidden(text="invalid signature")

    async def _status(self, request: web.Request) -> web.Response:
        """A delivery receipt, answered once it is committed with the others that came
        meanwhile (one transaction for many)."""
        form = await self._form(request)
        code = form.get("ErrorCode")
        receipt = db.Receipt(
            form.get("MessageSid", ""),
            form.get("MessageStatus", ""),
            int(code) if code and code.isdigit() else None,
        )
        await self._receipts.add(receipt)
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        phone, body = form.get("From", ""), form.get("Body", "")
        staff = self._staff_name(phone)
        reply = classify(body, from_staff=staff is not None)
        store = self._writer.store
        assert store is not None
        conn, now = store.conn, self._now()
        if reply.intent in ("stop", "start"):
            await self._writer.call(directory_db.set_opt_out, conn, phone, reply.intent == "stop")
            await self._writer.call(
                db.note_reply, conn, phone, "reply", f"{mask(phone)}: {reply.intent.upper()}", now
            )
        elif reply.intent == "ack" and staff is not None:
            return _twiml(await self._acknowledge(staff, phone, reply.incident, body))
        elif reply.intent in ("need_help", "other") and staff is None:
            return _twiml(await self._help(phone, body, reply.intent))
        elif reply.intent in ("safe", "need_help", "other"):
            who = staff or mask(phone)
            await self._writer.call(
                db.note_reply,
                conn,
                phone,
                "check_in" if reply.intent != "other" else "reply",
                f"{who}: {reply.intent.replace('_', ' ')} ({body.strip()})",
                now,
            )
        answer = ANSWERS.get(reply.intent)
        return _twiml(answer) if answer else _twiml(None)

    async def _acknowledge(self, staff: str, phone: str, number: int | None, body: str) -> str:
        """`OK 12` acknowledges incident 12; a bare `OK` the one open incident this person
        was told about, or gets the list back when there are several. Every answer names
        the incident."""
        store = self._writer.store
        assert store is not None
        if number is None:
            told = await self._writer.call(db.incidents_told, store.conn, phone)
            waiting = [t for t in told if t[1] == "open"] or told
            if not waiting:
                return "没有需要确认的事件。Nothing to acknowledge."
            if len(waiting) > 1:
                listed = "; ".join(f"#{i} {title}" for i, _, title in waiting[:5])
                return (
                    f"您有 {len(waiting)} 个事件，请回复 OK 加编号，如 OK {waiting[0][0]}。"
                    f"You have {len(waiting)} incidents; reply OK and the number, e.g. "
                    f"OK {waiting[0][0]}: {listed}"
                )
            number = waiting[0][0]
        summary = await self._writer.call(db.incident_summary, store.conn, number)
        if summary is None:
            return f"没有事件 #{number}。There is no incident #{number}."
        status, title, site = summary
        if self._staff is not None and not self._staff.covers(staff, site):
            return f"事件 #{number} 不属于您负责的小区。Incident #{number} is not at your site."
        if status in ("resolved", "closed"):
            return f"事件 #{number} 已结束（{status}），无需确认。Incident #{number} is {status}."
        await self._ack(number, Actor(staff, "sms", mask(phone)), f"by SMS: {body.strip()}")
        return f"已确认事件 #{number}：{title}。Incident #{number} acknowledged."

    async def _ack(self, incident: int, actor: Actor, how: str) -> None:
        """A staff member's acknowledgement, handed to the daemon and audited."""
        store = self._writer.store
        assert store is not None
        await self._writer.call(submit, store.conn, "ack", incident, actor, how, self._now())

    async def _help(self, phone: str, body: str, intent: str) -> str:
        """A resident asks for help (2, or any words): a person is told at once, with the
        flat, the name and the vulnerable note; the timeline says which flat asked."""
        store = self._writer.store
        assert store is not None
        conn, now = store.conn, self._now()
        resident = await self._writer.call(directory_db.by_phone, conn, phone)
        incident = await self._writer.call(db.latest_incident_for, conn, phone)
        if resident is None and incident is None:
            log.warning("a message from %s, who is neither staff nor a resident", mask(phone))
            return ANSWERS["help"]
        r = resident or {}
        where = place(
            Location("", r.get("building", ""), r.get("floor", ""), r.get("unit", "")), "en"
        )
        await self._writer.call(
            db.note_reply,
            conn,
            phone,
            "check_in" if intent == "need_help" else "reply",
            f"{where or mask(phone)}: {intent.replace('_', ' ')} ({body.strip()})",
            now,
        )
        await self._writer.call(
            incidents_db.add_command,
            conn,
            "help",
            incident,
            "resident",
            body.strip(),
            resident or {"phone": phone},
            now,
        )
        log.warning("resident %s (%s) asked for help", mask(phone), where or "unknown flat")
        about = f"（事件 #{incident}）" if incident else ""
        about_en = f" (incident #{incident})" if incident else ""
        return (
            f"已收到{about}，正在通知值班人员立即联系您。"
            f"We have your message{about_en}; duty staff are being told to contact you now."
        )

    async def _voice(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        phone = form.get("To", "")
        staff = self._staff_name(phone)
        if form.get("Digits") == "1" and staff is not None:
            store = self._writer.store
            assert store is not None
            number = request.query.get("incident", "")
            incident = (
                int(number)
                if number.isdigit()
                else await self._writer.call(db.latest_incident_for, store.conn, phone)
            )
            if incident is not None:
                await self._ack(incident, Actor(staff, "call", mask(phone)), "by phone (pressed 1)")
                assert self._staff is not None
                english = self._staff.people[staff].language == "en"
                said = (
                    f"Incident {incident} acknowledged." if english else f"已确认事件 {incident}。"
                )
                voice = "en-US" if english else "cmn-CN"
                return web.Response(
                    text=f'<Response><Say language="{voice}">{escape(said)}</Say></Response>',
                    content_type="text/xml",
                )
        return web.Response(text="<Response/>", content_type="text/xml")

    def _staff_name(self, phone: str) -> str | None:
        if self._staff is None:
            return None
        return next((n for n, p in self._staff.people.items() if p.phone == phone), None)

    def _now(self) -> datetime:
        return self._clock.now()


def _twiml(message: str | None) -> web.Response:
    body = f"<Message>{escape(message)}</Message>" if message else ""
    return web.Response(text=f"<Response>{body}</Response>", content_type="text/xml")
