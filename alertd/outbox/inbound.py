"""What comes back from the SMS and voice providers, whoever they are: delivery receipts,
texts people send, a keypad press. Each provider's integration only turns its wire format
into these values (integrations/*/); this is the one place that records them, takes staff
acknowledgements, answers STOP and HELP, and counts residents' check-ins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
from alertd.store.batch import DeadLetter
from alertd.store.events import keep_dead_letter
from alertd.store.group import GroupCommit
from alertd.store.messages import Receipt
from alertd.store.sql import unsynced

log = logging.getLogger(__name__)

ANSWERS = {
    "stop": "您已退订本物业的短信通知。回复 START 可重新订阅。You have unsubscribed; reply START "
    "to subscribe again.",
    "start": "您已重新订阅本物业的安全通知。You are subscribed to safety notices again.",
    "help": "物业服务中心安全通知：回复 1 表示安全，2 表示需要帮助，STOP 退订。Safety notices from "
    "your property service centre: reply 1 if safe, 2 if you need help, STOP to opt out.",
    "safe": "收到，谢谢您告知。Thank you, noted that you are safe.",
    "ack": "已确认，谢谢。Acknowledged, thank you.",
}

__all__ = ["ANSWERS", "Inbound", "Receipt", "Spoken"]


@dataclass(frozen=True, slots=True)
class Spoken:
    """What a call says back after a key press, in the person's language."""

    text: str
    language: str


class Inbound:
    def __init__(
        self, writer: Writer, staff: Staff | None, clock: Clock, totals: Totals | None = None
    ) -> None:
        self._writer = writer
        #: replaced when the staff file is reloaded
        self.staff = staff
        self._clock = clock
        self.totals = totals or Totals()

        def apply(receipts: Sequence[Receipt]) -> None:
            """On the writer thread: receipts committed, then counted (on the writer's
            connection of the moment: PostgreSQL's is made again after it broke)."""
            applied = unsynced(db.apply_receipts)(writer.store.conn, receipts, clock.now())
            self.totals.receipts.update((c, final) for c, final in applied if final)

        self._receipts: GroupCommit[Receipt] = GroupCommit(writer, apply)

    async def receipt(self, receipt: Receipt) -> None:
        """Returns once it is committed, with the others that came meanwhile (one
        transaction for many: they come by the thousand during a fan-out)."""
        await self._receipts.add(receipt)

    async def receipts(self, receipts: Iterable[Receipt]) -> None:
        """A provider's batch of receipts, committed together (with any others)."""
        await asyncio.gather(*(self._receipts.add(r) for r in receipts))

    async def refused(self, source: str, where: str, reason: str, payload: bytes) -> None:
        """What a provider sent that alertd cannot read: said, and kept for inspection
        (`alertd dead-letters`); the rest of its push is taken."""
        log.warning("refused from %s at %s: %s", source, where, reason)
        letter = DeadLetter(self._clock.now(), source, reason, topic=where, payload=payload)
        await self._writer.call(keep_dead_letter, self._conn(), letter)

    async def text(self, phone: str, body: str, provider: str) -> str | None:
        """A text from `phone` (E.164): recorded and acted on. Returns the answer to
        send back, where the provider can send one."""
        staff = self.staff_name(phone)
        reply = classify(body, from_staff=staff is not None)
        conn, now = self._conn(), self._clock.now()
        if reply.intent in ("stop", "start"):
            await self._writer.call(directory_db.set_opt_out, conn, phone, reply.intent == "stop")
            await self._writer.call(
                db.note_reply,
                conn,
                phone,
                "reply",
                f"{mask(phone)}: {reply.intent.upper()} (by {provider})",
                now,
            )
        elif reply.intent == "ack" and staff is not None:
            return await self._acknowledge(staff, phone, reply.incident, body)
        elif reply.intent in ("need_help", "other") and staff is None:
            return await self._help(phone, body, reply.intent)
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
        return ANSWERS.get(reply.intent)

    async def pressed(self, phone: str, incident: int | None) -> Spoken | None:
        """A staff member called at `phone` pressed 1: the incident (the call's, or the
        latest this person was told about) is acknowledged."""
        staff = self.staff_name(phone)
        if staff is None or self.staff is None:
            return None
        if incident is None:
            incident = await self._writer.call(db.latest_incident_for, self._conn(), phone)
        if incident is None:
            return None
        await self._ack(incident, Actor(staff, "call", mask(phone)), "by phone (pressed 1)")
        if self.staff.people[staff].language == "en":
            return Spoken(f"Incident {incident} acknowledged.", "en")
        return Spoken(f"已确认事件 {incident}。", "zh")

    async def _acknowledge(self, staff: str, phone: str, number: int | None, body: str) -> str:
        """`OK 12` acknowledges incident 12; a bare `OK` the one open incident this person
        was told about, or gets the list back when there are several. Every answer names
        the incident."""
        conn = self._conn()
        if number is None:
            told = await self._writer.call(db.incidents_told, conn, phone)
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
        summary = await self._writer.call(db.incident_summary, conn, number)
        if summary is None:
            return f"没有事件 #{number}。There is no incident #{number}."
        status, title, site = summary
        if self.staff is not None and not self.staff.covers(staff, site):
            return f"事件 #{number} 不属于您负责的小区。Incident #{number} is not at your site."
        if status in ("resolved", "closed"):
            return f"事件 #{number} 已结束（{status}），无需确认。Incident #{number} is {status}."
        await self._ack(number, Actor(staff, "sms", mask(phone)), f"by SMS: {body.strip()}")
        return f"已确认事件 #{number}：{title}。Incident #{number} acknowledged."

    async def _ack(self, incident: int, actor: Actor, how: str) -> None:
        """A staff member's acknowledgement, handed to the daemon and audited."""
        await self._writer.call(
            submit, self._conn(), "ack", incident, actor, how, self._clock.now()
        )

    async def _help(self, phone: str, body: str, intent: str) -> str:
        """A resident asks for help (2, or any words): a person is told at once, with the
        flat, the name and the vulnerable note; the timeline says which flat asked."""
        conn, now = self._conn(), self._clock.now()
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

    def staff_name(self, phone: str) -> str | None:
        if self.staff is None:
            return None
        return next((n for n, p in self.staff.people.items() if p.phone == phone), None)

    def _conn(self) -> Any:
        """The writer's connection of the moment (PostgreSQL's is made again after it
        broke): read at each call, never kept."""
        store = self._writer.store
        assert store is not None
        return store.conn
