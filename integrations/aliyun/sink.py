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

from alertd.config import AliyunConfig
from alertd.outbox.registered import Codes, SiteTemplates, Templates
from alertd.outbox.sink import Message, Result

log = logging.getLogger(__name__)
CHINA = timezone(timedelta(hours=8))

#: about one number: it is flagged in the directory (a later alert leaves it out)
NUMBER_CODES = {
    "isv.MOBILE_NUMBER_ILLEGAL": "invalid number",
    "isv.BLACK_KEY_CONTROL_LIMIT": "blacklisted",
    "isv.MOBILE_COUNT_OVER_LIMIT": "too many numbers",
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
}
THROTTLE_CODES = {"Throttling", "Throttling.User", "Throttling.Api", "isp.SYSTEM_LIMIT_CONTROL"}


def national(number: str) -> str:
    """Aliyun's form: a mainland number without +86, others with their country code."""
    digits = number.lstrip("+")
    return digits[2:] if number.startswith("+86") else digits


def out_id(message: Message) -> str:
    """The message's own id at Aliyun: its receipts and QuerySendDetails carry it."""
    return f"alertd-{message.id}"


def provider_id(message: Message) -> str:
    return f"aliyun:{out_id(message)}"


class AliyunSink:
    #: claims read each message's template values
    templated = True
    name = "aliyun"

    def __init__(self, config: AliyunConfig, templates: Mapping[str, Templates]) -> None:
        """`templates`: per site, with "" for a site without its own."""
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

    async def send(self, message: Message) -> Result:
        from alibabacloud_dysmsapi20170525 import models

        filled = self._templates.fill(message)
        if isinstance(filled, Result):
            return filled
        phone = national(message.recipient)
        if message.attempts > 1:
            found = await self._accepted(message, phone)
            if found:
                return found
        request = models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=filled.sign_name,
            template_code=filled.code,
            template_param=json.dumps(dict(filled.params), ensure_ascii=False),
            out_id=out_id(message),
        )
        try:
            response = await self._client.send_sms_with_options_async(request, _runtime())
        except Exception as exc:
            return _failed(exc)
        body = response.body
        if body.code != "OK":
            return CODES.result(str(body.code), str(body.message or ""))
        return Result("sent", provider_id=provider_id(message))

    async def _accepted(self, message: Message, phone: str) -> Result | None:
        """The message's earlier request, if Aliyun accepted it (QuerySendDetails by the
        number and day, matched by OutId); None when it did not, or cannot be told."""
        from alibabacloud_dysmsapi20170525 import models

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
                if detail.out_id == out_id(message):
                    return Result(
                        "sent",
                        "its earlier request had been accepted (QuerySendDetails): not sent again",
                        provider_id=provider_id(message),
                    )
        return None

    async def close(self) -> None:
        return None


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
