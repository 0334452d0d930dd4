"""Twilio's requests to alertd: delivery receipts, inbound SMS and the voice keypad.

Every request's X-Twilio-Signature is checked (with the SDK's validator) against the
configured public URL; a forged or unsigned request gets 403 and changes nothing."""

from __future__ import annotations

import logging
from datetime import datetime
from xml.sax.saxutils import escape

from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.clock import Clock
from alertd.directory.phones import mask
from alertd.directory.staff import Staff
from alertd.outbox.replies import classify
from alertd.store import Writer
from alertd.store import incidents as incidents_db
from alertd.store import messages as db

log = logging.getLogger(__name__)

ANSWERS = {
    "stop": "您已退订本物业的短信通知。回复 START 可重新订阅。You have unsubscribed; reply START "
    "to subscribe again.",
    "start": "您已重新订阅本物业的安全通知。You are subscribed to safety notices again.",
    "help": "物业服务中心安全通知：回复 1 表示安全，2 表示需要帮助，STOP 退订。Safety notices from "
    "your property service centre: reply 1 if safe, 2 if you need help, STOP to opt out.",
    "safe": "收到，谢谢您告知。Thank you, noted that you are safe.",
    "need_help": "已收到，工作人员将尽快联系您。We have your message; staff will contact you now.",
    "ack": "已确认，谢谢。Acknowledged, thank you.",
}


class Callbacks:
    def __init__(
        self, writer: Writer, auth_token: str, public_url: str, staff: Staff | None, clock: Clock
    ) -> None:
        self._writer = writer
        self._validator = RequestValidator(auth_token)
        self._public = public_url.rstrip("/")
        self._staff = staff
        self._clock = clock

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/twilio/status", self._status)
        app.router.add_post("/twilio/inbound", self._inbound)
        app.router.add_post("/twilio/voice", self._voice)
        return app

    async def _form(self, request: web.Request) -> dict[str, str]:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = self._public + request.path_qs
        if not signature or not self._validator.validate(url, form, signature):
            log.warning("rejected a request to %s with a missing or wrong signature", request.path)
            raise web.HTTPForbidden(text="invalid signature")
        return form

    async def _status(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        code = form.get("ErrorCode")
        store = self._writer.store
        assert store is not None
        await self._writer.call(
            db.apply_status,
            store.conn,
            form.get("MessageSid", ""),
            form.get("MessageStatus", ""),
            int(code) if code else None,
            self._now(),
        )
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
            await self._writer.call(db.set_opt_out, conn, phone, reply.intent == "stop")
            await self._writer.call(
                db.note_reply, conn, phone, "reply", f"{mask(phone)}: {reply.intent.upper()}", now
            )
        elif reply.intent == "ack" and staff is not None:
            incident = reply.incident or await self._writer.call(
                db.latest_incident_for, conn, phone
            )
            if incident is None:
                return _twiml("没有需要确认的事件。Nothing to acknowledge.")
            await self._writer.call(
                incidents_db.add_command, conn, "ack", incident, staff, f"by SMS: {body}", {}, now
            )
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
            if reply.intent == "need_help":
                log.warning("resident %s needs help", mask(phone))
        answer = ANSWERS.get(reply.intent)
        return _twiml(answer) if answer else _twiml(None)

    async def _voice(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        phone = form.get("To", "")
        staff = self._staff_name(phone)
        if form.get("Digits") == "1" and staff is not None:
            store = self._writer.store
            assert store is not None
            incident = await self._writer.call(db.latest_incident_for, store.conn, phone)
            if incident is not None:
                await self._writer.call(
                    incidents_db.add_command,
                    store.conn,
                    "ack",
                    incident,
                    staff,
                    "by phone (pressed 1)",
                    {},
                    self._now(),
                )
                return web.Response(
                    text="<Response><Say>OK</Say></Response>", content_type="text/xml"
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
