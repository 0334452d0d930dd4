"""Twilio's requests to alertd: delivery receipts, inbound SMS and the voice keypad,
turned into alertd's values and handed to alertd/outbox/inbound.py.

Every request's X-Twilio-Signature is checked (with the SDK's validator) against the
configured public URL; a forged or unsigned request gets 403 and changes nothing."""

from __future__ import annotations

import logging
from xml.sax.saxutils import escape

from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.outbox.inbound import Inbound, Receipt
from integrations.forgeries import Forgeries
from integrations.twilio.codes import NUMBER_CODES

log = logging.getLogger(__name__)

#: Twilio's callbacks are form posts of a few KB at most
MAX_BODY = 16 * 1024
#: a base64 HMAC-SHA1 is 28 characters (SHA-256 ones, 44)
MAX_SIGNATURE = 64
#: Twilio's MessageStatus values that are final, as alertd calls them
FINAL = {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}


def receipt(form: dict[str, str]) -> Receipt:
    """A status callback's form as a receipt: its final status, Twilio's words, and
    what the error code says of the number."""
    status, code = form.get("MessageStatus", ""), form.get("ErrorCode", "")
    number = int(code) if code.isdigit() else None
    return Receipt(
        form.get("MessageSid", ""),
        FINAL.get(status, status),
        f"Twilio {status}" + (f" (error {number})" if number else ""),
        f"{NUMBER_CODES[number]} (Twilio {number})" if number in NUMBER_CODES else "",
        "twilio",
    )


class Callbacks:
    def __init__(self, inbound: Inbound, auth_token: str, public_url: str) -> None:
        self._core = inbound
        self._validator = RequestValidator(auth_token)
        self._public = public_url.rstrip("/")
        self._forged = Forgeries("signature")

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
            self._forged.refuse(request)
        if (request.content_length or 0) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY, actual_size=request.content_length or 0
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not self._validator.validate(self._public + request.path_qs, form, signature):
            self._forged.refuse(request)
        return form

    async def _status(self, request: web.Request) -> web.Response:
        """A delivery receipt, answered once it is committed."""
        await self._core.receipt(receipt(await self._form(request)))
        return web.Response(status=204)

    async def _inbound(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        answer = await self._core.text(form.get("From", ""), form.get("Body", ""), "Twilio")
        body = f"<Message>{escape(answer)}</Message>" if answer else ""
        return web.Response(text=f"<Response>{body}</Response>", content_type="text/xml")

    async def _voice(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if form.get("Digits") == "1":
            number = request.query.get("incident", "")
            said = await self._core.pressed(
                form.get("To", ""), int(number) if number.isdigit() else None
            )
            if said is not None:
                voice = "en-US" if said.language == "en" else "cmn-CN"
                return web.Response(
                    text=f'<Response><Say language="{voice}">{escape(said.text)}</Say></Response>',
                    content_type="text/xml",
                )
        return web.Response(text="<Response/>", content_type="text/xml")
