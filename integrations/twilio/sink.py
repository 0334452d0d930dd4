"""SMS and voice through the real twilio SDK (async client).

Known traps handled here: the async HTTP client is built inside the running loop and
closed; its `timeout` is ignored (the dispatcher bounds each call); `max_retries` is left
off because it re-POSTs on 5xx and can send an SMS twice (the dispatcher's retry stage
decides); `api_base_url` rewrites the URL, so tests and compatible gateways can stand in
for Twilio. Errors become results: 429 and 5xx are retryable (with Retry-After when
given), known error codes are permanent."""

from __future__ import annotations

import contextvars
import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from alertd.config import TwilioConfig
from alertd.engine.templates import spoken
from alertd.outbox.sink import Message, Result
from integrations.twilio.codes import ACCOUNT_CODES, MESSAGE_CODES, NUMBER_CODES, THROTTLE_CODES

TWILIO = "https://api.twilio.com"
#: the Retry-After of the last response, per task (each send runs in its own task)
_RETRY_AFTER: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "retry_after", default=None
)
# the SDK logs requests at INFO; keep its log (and anything it might echo) quiet
logging.getLogger("twilio").setLevel(logging.WARNING)
VOICE = {"zh": "cmn-CN", "en": "en-US"}


class _Rebased(AsyncTwilioHttpClient):
    """The SDK's client with its API host replaced (a local fake, or a gateway)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = base_url.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self._base != TWILIO and url.startswith(TWILIO):
            url = self._base + url[len(TWILIO) :]
        response = await super().request(method, url, *args, **kwargs)
        header = (response.headers or {}).get("Retry-After")
        try:
            _RETRY_AFTER.set(float(header) if header else None)
        except ValueError:
            _RETRY_AFTER.set(None)
        return response


@dataclass(frozen=True, slots=True)
class Sender:
    """Whom a site's texts come from."""

    from_number: str | None = None
    messaging_service_sid: str | None = None


class TwilioSink:
    def __init__(
        self,
        config: TwilioConfig,
        channel: str = "sms",
        callbacks_url: str | None = None,
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        """`callbacks_url`: alertd's public URL, for receipts and the voice keypad;
        `senders`: each site's own (from number, messaging service), where it has one."""
        self._config = config
        self._senders = dict(senders or {})
        self._channel = channel
        base = callbacks_url.rstrip("/") if callbacks_url else None
        self._status_url = config.status_callback_url or (f"{base}/twilio/status" if base else None)
        self._voice_url = f"{base}/twilio/voice" if base else None
        self._http = _Rebased(config.api_base_url)
        self._client = Client(
            config.account_sid, config.auth_token.get_secret_value(), http_client=self._http
        )

    async def send(self, message: Message) -> Result:
        try:
            if self._channel == "call":
                resource = await self._client.calls.create_async(
                    to=message.recipient,
                    from_=self._senders.get(message.site, Sender()).from_number
                    or self._config.from_number,
                    twiml=_say(message, self._voice_url),
                    status_callback=self._callback(),
                )
            else:
                resource = await self._client.messages.create_async(
                    to=message.recipient,
                    body=message.body,
                    **self._sender(message.site),
                    status_callback=self._callback(),
                    validity_period=min(max(message.valid_for_s or 14400, 1), 14400),
                )
        except TwilioRestException as exc:
            return _result(exc)
        except OSError as exc:  # connection refused or reset: nothing was accepted
            return Result("retryable", f"connection: {exc}")
        return Result("sent", provider_id=str(resource.sid))

    def _sender(self, site: str) -> dict[str, str]:
        """The site's sender, else the account's."""
        config = self._config
        own = self._senders.get(site) or Sender(config.from_number, config.messaging_service_sid)
        if own.messaging_service_sid:
            return {"messaging_service_sid": own.messaging_service_sid}
        return {"from_": own.from_number or ""}

    def _callback(self) -> Any:
        from twilio.base import values

        return self._status_url or values.unset

    async def close(self) -> None:
        await self._http.close()


def _say(message: Message, action: str | None) -> str:
    """Read the message twice in the recipient's language; pressing 1 acknowledges the
    incident the call is about (its number is in the keypad's callback URL)."""
    language = VOICE.get(message.language, "cmn-CN")
    text = html.escape(spoken(message.body, message.language))
    if action and message.incident is not None:
        action += f"?incident={message.incident}"
    target = f' action="{html.escape(action)}" method="POST"' if action else ""
    return (
        f'<Response><Gather numDigits="1" timeout="10"{target}>'
        f'<Say language="{language}" loop="2">{text}</Say></Gather></Response>'
    )


def _result(exc: TwilioRestException) -> Result:
    """Twilio's answer, by whom it is about: the number (flag it), the message, the
    account's rate (pause the lane) or the account itself (stop the lane)."""
    code, status = exc.code, exc.status
    reason = f"Twilio {status}" + (f" error {code}: {exc.msg}" if code else "")
    if code in NUMBER_CODES:
        said = f"{NUMBER_CODES[code]} (Twilio {code})"
        return Result("permanent", said, flag=said)
    if code in MESSAGE_CODES:
        return Result("permanent", f"{MESSAGE_CODES[code]} (Twilio {code})")
    if code in THROTTLE_CODES or status == 429:
        said = f"{THROTTLE_CODES.get(code or 0, 'too many requests')} (Twilio {code or status})"
        return Result("throttled", said, retry_after_s=_RETRY_AFTER.get())
    if code in ACCOUNT_CODES or status in (401, 403):
        said = ACCOUNT_CODES.get(code or 0, "the account was refused")
        return Result("unavailable", f"{said} (Twilio {code or status})")
    if status >= 500:
        return Result("retryable", reason, retry_after_s=_RETRY_AFTER.get())
    return Result("permanent", reason)
