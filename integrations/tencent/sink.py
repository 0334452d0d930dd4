"""SMS through Tencent Cloud SMS (API 2021-01-11) with the official SDK.

The SDK is synchronous (requests): each call runs in a thread, never on the event loop.
Texts go out as registered templates with numbered parameters (alertd/outbox/registered.py).
A request carries the message's id as SessionContext, which Tencent returns with receipts
and PullSmsSendStatusByPhoneNumber: a message sent again is first looked up there, so a
request Tencent had accepted is not made twice. Tencent answers per number inside a
successful response (SendStatusSet[].Code), and account-wide errors as an exception;
both are mapped by whom they are about."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from alertd.clock import Clock, SystemClock
from alertd.config import TencentConfig
from alertd.outbox.batching import Batcher, covers, request_name
from alertd.outbox.caps import DailyCaps, capped
from alertd.outbox.registered import Codes, SiteTemplates, Templates
from alertd.outbox.sink import Message, Result

log = logging.getLogger(__name__)

NUMBER_CODES = {
    "InvalidParameterValue.IncorrectPhoneNumber": "invalid number",
    "FailedOperation.PhoneNumberInBlacklist": "blacklisted (unsubscribed)",
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": "mixed regions",
}
CAPPED_CODES = {
    "LimitExceeded.PhoneNumberDailyLimit": "the number's daily limit",
    "LimitExceeded.PhoneNumberOneHourLimit": "the number's hourly limit",
    "LimitExceeded.PhoneNumberThirtySecondLimit": "the number's 30-second limit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit": "the number's daily limit for one text",
    "LimitExceeded.DeliveryFrequencyLimit": "the number's frequency limit",
}
ACCOUNT_CODES = {
    "FailedOperation.SignatureIncorrectOrUnapproved": "the sign name is not approved",
    "FailedOperation.TemplateIncorrectOrUnapproved": "the template is not approved",
    "FailedOperation.InsufficientBalanceInSmsPackage": "the SMS package is used up",
    "FailedOperation.MissingSignatureToModify": "the sign name is missing",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": "the SDK app id is not the account's",
    "UnauthorizedOperation.IndividualUserMarketingSmsPermissionDeny": "not allowed",
    "UnauthorizedOperation.RequestIpNotInWhitelist": "this server's address may not send",
    "InvalidParameterValue.SdkAppIdNotExist": "no such SDK app id",
    "AuthFailure.SecretIdNotFound": "unknown secret id",
    "AuthFailure.SignatureFailure": "the secret key is wrong",
    "AuthFailure.InvalidSecretId": "the secret id is invalid",
    "AuthFailure.UnauthorizedOperation": "the key may not send SMS",
    "LimitExceeded.AppDailyLimit": "the app's daily limit",
    "LimitExceeded.DailyLimit": "the account's daily limit",
}
MESSAGE_CODES = {
    "InvalidParameterValue.TemplateParameterFormatError": "the parameters are malformed",
    "InvalidParameterValue.TemplateParameterLengthLimit": "a parameter is too long",
    "FailedOperation.ContainSensitiveWord": "the text contains forbidden words",
    "InvalidParameterValue.ContentLengthLimit": "the text is too long",
}
THROTTLE_CODES = {"RequestLimitExceeded", "RequestLimitExceeded.GlobalRegionUinLimitExceeded"}
#: a template code, sign name and the values every number of the request gets
Key = tuple[str, str, tuple[str, ...]]


def provider_id(serial_no: str) -> str:
    """As Tencent's send statuses name the message (integrations/tencent/pull.py)."""
    return f"tencent:{serial_no}"


class TencentSink:
    templated = True
    name = "tencent"
    #: numbers in one SendSms (they share the template's values)
    BATCH = 200

    def __init__(
        self,
        config: TencentConfig,
        templates: Mapping[str, Templates],
        batch_wait_s: float = 0.05,
        clock: Clock | None = None,
    ) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        self._config = config
        self.caps = DailyCaps(config.per_number_day, clock or SystemClock())
        self._templates = SiteTemplates("Tencent", templates)
        profile = ClientProfile(
            httpProfile=HttpProfile(
                protocol=config.protocol, endpoint=config.endpoint, reqTimeout=15
            )
        )
        self.client = sms_client.SmsClient(
            credential.Credential(config.secret_id, config.secret_key.get_secret_value()),
            config.region,
            profile,
        )
        self._batches: Batcher[Key] = Batcher(self._send_many, self.BATCH, batch_wait_s)

    async def send(self, message: Message) -> Result:
        """A staff alert and a message sent again go alone, at once; residents' texts with
        the same template and values go together."""
        filled = self._templates.fill(message)
        if isinstance(filled, Result):
            return filled
        if message.attempts > 1:
            found = await asyncio.to_thread(self._accepted, message)
            if found:
                return found
        if self.caps.full(message.recipient):
            return capped("Tencent", self.caps.most)
        key = (filled.code, filled.sign_name, tuple(value for _, value in filled.params))
        if message.urgent or message.attempts > 1:
            result = (await asyncio.to_thread(self._send, key, [message]))[0]
        else:
            result = await self._batches.send(key, message)
        if result.outcome == "sent":
            self.caps.add(message.recipient)
        return result

    async def _send_many(self, key: Key, messages: list[Message]) -> list[Result]:
        """Each number once a request: a second text to the same number goes in the next."""
        rounds: list[list[int]] = []
        for i, message in enumerate(messages):
            free = next(
                (r for r in rounds if all(messages[j].recipient != message.recipient for j in r)),
                None,
            )
            if free is None:
                rounds.append(free := [])
            free.append(i)
        results: dict[int, Result] = {}
        for r in rounds:
            answers = await asyncio.to_thread(self._send, key, [messages[i] for i in r])
            results.update(zip(r, answers, strict=True))
        return [results[i] for i in range(len(messages))]

    def _send(self, key: Key, messages: list[Message]) -> list[Result]:
        """One SendSms; Tencent answers each number apart (SendStatusSet)."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        code, sign, params = key
        request = models.SendSmsRequest()
        request.PhoneNumberSet = sorted({m.recipient for m in messages})
        request.SmsSdkAppId = self._config.sdk_app_id
        request.SignName = sign
        request.TemplateId = code
        request.TemplateParamSet = list(params)
        request.SessionContext = request_name(messages)
        try:
            response = self.client.SendSms(request)
        except TencentCloudSDKException as exc:
            failed = _failed(str(exc.get_code() or ""), str(exc.get_message() or ""))
            return [failed] * len(messages)
        by_phone = {s.PhoneNumber: s for s in response.SendStatusSet or []}
        results = []
        for message in messages:
            status = by_phone.get(message.recipient)
            if status is None:
                results.append(Result("retryable", "Tencent answered without a status for it"))
            elif status.Code != "Ok":
                results.append(CODES.result(str(status.Code), str(status.Message or "")))
            else:
                results.append(Result("sent", provider_id=provider_id(str(status.SerialNo))))
        return results

    def _accepted(self, message: Message) -> Result | None:
        """The message's earlier request, if Tencent accepted it (the number's send
        statuses of the last day, matched by SessionContext)."""
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        request = models.PullSmsSendStatusByPhoneNumberRequest()
        request.BeginTime = int(time.time()) - 86400
        request.Offset = 0
        request.Limit = 100
        request.PhoneNumber = message.recipient
        request.SmsSdkAppId = self._config.sdk_app_id
        try:
            response = self.client.PullSmsSendStatusByPhoneNumber(request)
        except TencentCloudSDKException as exc:
            log.warning("message %d: could not look up its earlier try: %s", message.id, exc)
            return None
        for status in response.PullSmsSendStatusSet or []:
            if covers(str(status.SessionContext or ""), message.id):
                return Result(
                    "sent",
                    "its earlier request had been accepted (PullSmsSendStatusByPhoneNumber): "
                    "not sent again",
                    provider_id=provider_id(str(status.SerialNo)),
                )
        return None

    async def close(self) -> None:
        await self._batches.close()


CODES = Codes(
    "Tencent",
    NUMBER_CODES,
    CAPPED_CODES,
    ACCOUNT_CODES,
    MESSAGE_CODES,
    frozenset(THROTTLE_CODES),
)


def _failed(code: str, said: str) -> Result:
    """The SDK's exception: Tencent's error code, or its own (ClientNetworkError: no
    answer, or no connection)."""
    if code == "ClientNetworkError":
        unknown = "timed out" in said.lower() or "timeout" in said.lower()
        return Result("retryable", f"no answer from Tencent: {said}", unknown=unknown)
    if code.startswith("InternalError") or code == "ServerNetworkError":
        return Result("retryable", f"Tencent {code}: {said}")
    return CODES.result(code, said)
