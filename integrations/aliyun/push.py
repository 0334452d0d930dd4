"""Aliyun's pushes to alertd (the console's "HTTP batch push" mode): delivery reports
(SmsReport) and residents' and staff's replies (SmsUp), turned into alertd's values and
handed to alertd/outbox/inbound.py.

Aliyun does not sign its pushes: the URLs carry a secret token (`aliyun.push_token`,
from the environment), compared in constant time; a request without it gets 403 and
changes nothing. A push is answered 200 only once it is committed: Aliyun pushes again
(after 1, 5 and 10 minutes) what it did not see taken, and a receipt applied twice is
harmless. An entry alertd cannot read is kept in the dead letters, the others taken.
Aliyun cannot send a free-text answer (every text needs a registered template): replies
are recorded and acted on, not answered."""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from alertd.outbox.inbound import Inbound, Receipt
from integrations.forgeries import Forgeries

log = logging.getLogger(__name__)

#: a push holds many reports; Aliyun merges them, a few hundred bytes each
MAX_BODY = 1024 * 1024
#: receipt codes about the number itself (the carrier's "no such number")
NUMBER_CODES = {
    "MN:0001": "no such number (空号)",
    "MOBILE_NUMBER_ILLEGAL": "invalid number",
    "MN:0017": "number out of service (停机)",
}
TAKEN = {"code": 0, "msg": "接收成功"}


def e164(phone: str) -> str:
    """Aliyun's number (a mainland number without +86) as alertd stores numbers."""
    digits = phone.strip().lstrip("+")
    return f"+86{digits}" if len(digits) == 11 and digits.startswith("1") else f"+{digits}"


def receipt(item: object) -> Receipt:
    """One SmsReport entry; ValueError naming what it lacks."""
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in ("phone_number", "out_id", "success") if item.get(k) in (None, "")]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    phone, out_id = str(item["phone_number"]), str(item["out_id"])
    code, said = str(item.get("err_code") or ""), str(item.get("err_msg") or "")
    delivered = item["success"] is True
    return Receipt(
        f"aliyun:{out_id}:{phone}",
        "delivered" if delivered else "failed",
        f"Aliyun {code}" + (f" ({said})" if said else ""),
        "" if delivered or code not in NUMBER_CODES else f"{NUMBER_CODES[code]} (Aliyun {code})",
        "aliyun",
    )


async def _bounded(request: web.Request) -> bytes:
    """The push's body, up to MAX_BODY. Read from the stream, not `request.read()`: the
    daemon's server caps bodies at what Twilio sends (16 KB), and Aliyun merges many
    reports into one push (a 413 would lose them after Aliyun's three tries)."""
    if (request.content_length or 0) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length or 0)
    body = b""
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(MAX_BODY, len(body))
    return body


class AliyunPush:
    def __init__(self, inbound: Inbound, token: str) -> None:
        self._inbound = inbound
        self._token = token.encode()
        self._forged = Forgeries("push token")

    def app(self, app: web.Application) -> web.Application:
        app.router.add_post("/aliyun/{token}/report", self._report)
        app.router.add_post("/aliyun/{token}/reply", self._reply)
        return app

    async def _entries(self, request: web.Request) -> list[object]:
        if not hmac.compare_digest(request.match_info["token"].encode(), self._token):
            self._forged.refuse(request)
        body = await _bounded(request)
        try:
            entries = json.loads(body)
        except ValueError as exc:
            entries = None
            reason = f"not JSON: {exc}"
        else:
            reason = "not a JSON array of entries"
        if not isinstance(entries, list):
            await self._inbound.refused("aliyun", request.path_qs.split("/")[-1], reason, body)
            raise web.HTTPBadRequest(text=reason)
        return entries

    async def _report(self, request: web.Request) -> web.Response:
        receipts = []
        for i, item in enumerate(await self._entries(request)):
            try:
                receipts.append(receipt(item))
            except ValueError as exc:
                await self._refused("report", i, str(exc), item)
        await self._inbound.receipts(receipts)
        return web.json_response(TAKEN)

    async def _reply(self, request: web.Request) -> web.Response:
        for i, item in enumerate(await self._entries(request)):
            if not isinstance(item, dict) or not item.get("phone_number"):
                await self._refused("reply", i, "not an object with a phone_number", item)
                continue
            phone = e164(str(item["phone_number"]))
            answer = await self._inbound.text(phone, str(item.get("content") or ""), "Aliyun")
            if answer:
                log.debug("not answered (Aliyun sends registered templates only): %s", answer)
        return web.json_response(TAKEN)

    async def _refused(self, what: str, index: int, reason: str, item: object) -> None:
        payload = json.dumps(item, ensure_ascii=False, default=str).encode()
        await self._inbound.refused("aliyun", f"{what} entry {index}", reason, payload)
