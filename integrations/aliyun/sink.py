"""SMS through Aliyun's dysmsapi (2017-05-25) with the official SDK's async calls.

Every text goes out as a registered template (alertd/outbox/registered.py) under its sign
name; the message's body is not sent. SendSms is not idempotent: each request carries the
message's OutId, and a message sent again (its first try's answer never came, or alertd
stopped meanwhile) is first looked up with QuerySendDetails, so a request Aliyun had
accepted is not made twice. Aliyun answers HTTP 200 with its own Code for most refusals:
they are mapped by whom they are about, as Twilio's are."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from alertd.clock import Clock, SystemClock
from alertd.config import AliyunConfig
from alertd.outbox.batching import Batcher, covers, request_name
from alertd.outbox.caps import DailyCaps, capped
from alertd.outbox.registered import Codes, Filled, SiteTemplates, Templates
from alertd.outbox.sink import Message, Result

log = logging.getLogger(__name__)
CHINA = timezone(timedelta(hours=8))

#: about one number: it is flagged in the directory (a later alert leaves it out)
NUMBER_CODES = {
    "isv.MOBILE_NUMBER_ILLEGAL": "invalid number",
    "isv.BLACK_KEY_CONTROL_LIMIT": "blacklisted",
}
#: about one number, for today: this number had as many texts as the carriers allow
#: (per sign name and day, or per minute and hour); not flagged, the next provider or a
#: call reaches it
CAPPED_CODES = {
    "isv.BUSINESS_LIMIT_CONTROL": "the number's flow control (texts per number per day)",
    "isv.DAY_LIMIT_CONTROL": "the account's daily limit",
}
#: about the account or its registrations: the lane stops, nobody is flagged
ACCOUNT_CODES = {
    "isv.SMS_SIGNATURE_ILLEGAL": "the sign name is not approved",
    "isv.SMS_SIGN_ILLEGAL": "the sign name may not be used",
    "isv.SIGN_STATE_ILLEGAL": "the sign name is not available",
    "isv.SMS_TEMPLATE_ILLEGAL": "the template is not approved",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": "the sign name does not fit the template's type",
    "isv.AMOUNT_NOT_ENOUGH": "the balance is too low",
    "isv.OUT_OF_SERVICE": "the account is stopped (balance)",
    "isv.ACCOUNT_NOT_EXISTS": "no such account",
    "isv.ACCOUNT_ABNORMAL": "the account is abnormal",
    "isv.PRODUCT_UN_SUBSCRIPT": "SMS is not enabled on the account",
    "isv.DENY_IP_RANGE": "this server's address may not send",
    "isp.RAM_PERMISSION_DENY": "the access key may not send SMS",
    "InvalidAccessKeyId.NotFound": "unknown access key",
    "SignatureDoesNotMatch": "the access key secret is wrong",
    "isv.MONTH_LIMIT_CONTROL": "the account's monthly limit",
}
#: about this message: it fails, and the next provider may send it
MESSAGE_CODES = {
    "isv.TEMPLATE_MISSING_PARAMETERS": "the template's parameters are missing",
    "isv.INVALID_PARAMETERS": "the parameters are invalid",
    "isv.PARAM_LENGTH_LIMIT": "a parameter is too long",
    "isv.SMS_CONTENT_ILLEGAL": "the text contains forbidden words",
    "isv.INVALID_JSON_PARAM": "the parameters are not valid JSON",
    "isv.MOBILE_COUNT_OVER_LIMIT": "too many numbers in one request",
}
THROTTLE_CODES = {"Throttling", "Throttling.User", "Throttling.Api", "isp.SYSTEM_LIMIT_CONTROL"}


def national(number: str) -> str:
    """Aliyun's form: a mainland number without +86, others with their country code."""
    digits = number.lstrip("+")
    return digits[2:] if number.startswith("+86") else digits


def provider_id(out: str, phone: str) -> str:
    """As Aliyun's receipts name the message (integrations/aliyun/push.py)."""
    return f"aliyun:{out}:{phone}"


class AliyunSink:
    #: claims read each message's template values
    templated = True
    name = "aliyun"
    #: numbers in one SendBatchSms
    BATCH = 100

    def __init__(
        self,
        config: AliyunConfig,
        templates: Mapping[str, Templates],
        batch_wait_s: float = 0.05,
        clock: Clock | None = None,
    ) -> None:
        """`templates`: per site, with "" for a site without its own."""
        self.caps = DailyCaps(config.per_number_day, clock or SystemClock())
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        self._templates = SiteTemplates("Aliyun", templates)
        self._client = Client(
            Config(
                access_key_id=config.access_key_id,
                access_key_secret=config.access_key_secret.get_secret_value(),
                endpoint=config.endpoint,
                protocol=config.protocol,
                read_timeout=15_000,
                connect_timeout=5_000,
            )
        )
        self._batches: Batcher[tuple[str, str]] = Batcher(self._send_many, self.BATCH, batch_wait_s)

    async def send(self, message: Message) -> Result:
        """A staff alert and a message sent again go alone, at once; residents' texts
        with the same template go together (SendBatchSms)."""
        filled = self._templates.fill(message)
        if isinstance(filled, Result):
            return filled
        if message.attempts > 1:
            found = await self._accepted(message, filled.code)
            if found:
                return found
        key = (message.recipient, filled.code)  # Aliyun counts a sign name's template
        if self.caps.full(key):
            return capped("Aliyun", self.caps.most)
        if message.urgent or message.attempts > 1:
            result = await self._send_one(message, filled)
        else:
            result = await self._batches.send((filled.code, filled.sign_name), message)
        if result.outcome == "sent":
            self.caps.add(key)
        return result

    async def _send_one(self, message: Message, filled: Filled) -> Result:
        from alibabacloud_dysmsapi20170525 import models

        phone, out = national(message.recipient), request_name([message])
        request = models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=filled.sign_name,
            template_code=filled.code,
            template_param=json.dumps(dict(filled.params), ensure_ascii=False),
            out_id=out,
        )
        try:
            response = await self._client.send_sms_with_options_async(request, _runtime())
        except Exception as exc:
            return _failed(exc)
        body = response.body
        if body.code != "OK":
            return CODES.result(str(body.code), str(body.message or ""))
        return Result("sent", provider_id=provider_id(out, phone))

    async def _send_many(self, key: tuple[str, str], messages: list[Message]) -> list[Result]:
        """One SendBatchSms for numbers that came together (each number once: a second
        text to the same number goes alone). Its answer is the batch's: a refusal about
        one number is sent again number by number, so that only that number is flagged."""
        from alibabacloud_dysmsapi20170525 import models

        code, sign = key
        filled = [self._templates.fill(m) for m in messages]
        phones = [national(m.recipient) for m in messages]
        together = [i for i, p in enumerate(phones) if phones.index(p) == i]
        out = request_name([messages[i] for i in together])
        request = models.SendBatchSmsRequest(
            phone_number_json=json.dumps([phones[i] for i in together]),
            sign_name_json=json.dumps([sign] * len(together), ensure_ascii=False),
            template_code=code,
            template_param_json=json.dumps(
                [dict(getattr(filled[i], "params", ())) for i in together], ensure_ascii=False
            ),
            out_id=out,
        )
        try:
            response = await self._client.send_batch_sms_with_options_async(request, _runtime())
        except Exception as exc:
            answer = _failed(exc)
        else:
            body = response.body
            code = str(body.code)
            answer = Result("sent") if code == "OK" else CODES.result(code, str(body.message or ""))
            if CODES.about_number(code):  # about which number? each alone says
                together = []
        results: list[Result] = []
        for i, message in enumerate(messages):
            if i in together:
                sent = answer.outcome == "sent"
                results.append(
                    Result("sent", provider_id=provider_id(out, phones[i])) if sent else answer
                )
            else:
                f = filled[i]
                results.append(f if isinstance(f, Result) else await self._send_one(message, f))
        return results

    async def _accepted(self, message: Message, code: str) -> Result | None:
        """The message's earlier request, if Aliyun accepted it (QuerySendDetails by the
        number and day, matched by OutId and template); None when it did not, or cannot
        be told."""
        from alibabacloud_dysmsapi20170525 import models

        phone = national(message.recipient)
        today = datetime.now(CHINA)
        for day in (today, today - timedelta(days=1)):
            request = models.QuerySendDetailsRequest(
                phone_number=phone, send_date=day.strftime("%Y%m%d"), page_size=50, current_page=1
            )
            try:
                response = await self._client.query_send_details_with_options_async(
                    request, _runtime()
                )
            except Exception as exc:
                log.warning("message %d: could not look up its earlier try: %s", message.id, exc)
                return None
            details = response.body.sms_send_detail_dtos
            for detail in (details.sms_send_detail_dto if details else None) or []:
                out = str(detail.out_id or "")
                if covers(out, message.id) and detail.template_code in (None, code):
                    return Result(
                        "sent",
                        "its earlier request had been accepted (QuerySendDetails): not sent again",
                        provider_id=provider_id(out, phone),
                    )
        return None

    async def close(self) -> None:
        await self._batches.close()


def _runtime() -> Any:
    from darabonba.runtime import RuntimeOptions

    # never retried by the SDK: a second SendSms is a second text (the dispatcher decides)
    return RuntimeOptions(autoretry=False, max_attempts=1)


CODES = Codes(
    "Aliyun",
    NUMBER_CODES,
    CAPPED_CODES,
    ACCOUNT_CODES,
    MESSAGE_CODES,
    frozenset(THROTTLE_CODES),
)


def _failed(exc: Exception) -> Result:
    """An exception from the SDK: Aliyun's refusal (with its code and HTTP status), or
    no answer at all."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Result("retryable", "no answer from Aliyun (it may have sent it)", unknown=True)
    if code and status:
        result = CODES.result(str(code), str(getattr(exc, "message", "")))
        if result.outcome != "retryable" or int(status) < 500:
            return result
        return Result("retryable", f"Aliyun {status} {code}")
    text = str(exc)
    if "timeout" in text.lower() or "timed out" in text.lower():
        return Result("retryable", f"no answer from Aliyun: {text}", unknown=True)
    return Result("retryable", f"cannot reach Aliyun: {text}")
