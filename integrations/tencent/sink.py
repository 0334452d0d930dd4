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

from alertd.config import TencentConfig
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


def session_context(message: Message) -> str:
    return f"alertd-{message.id}"


def provider_id(message: Message) -> str:
    return f"tencent:{session_context(message)}"


class TencentSink:
    templated = True
    name = "tencent"

    def __init__(self, config: TencentConfig, templates: Mapping[str, Templates]) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        self._config = config
        self._templates = SiteTemplates("Tencent", templates)
        profile = ClientProfile(
            httpProfile=HttpProfile(
                protocol=config.protocol, endpoint=config.endpoint, reqTimeout=15
            )
        )
        self._client = sms_client.SmsClient(
            credential.Credential(config.secret_id, config.secret_key.get_secret_value()),
            config.region,
            profile,
        )

    async def send(self, message: Message) -> Result:
        filled = self._templates.fill(message)
        if isinstance(filled, Result):
            return filled
        if message.attempts > 1:
            found = await asyncio.to_thread(self._accepted, message)
            if found:
                return found
        params = [value for _, value in filled.params]
        return await asyncio.to_thread(self._send, message, filled.code, filled.sign_name, params)

    def _send(self, message: Message, code: str, sign: str, params: list[str]) -> Result:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.PhoneNumberSet = [message.recipient]
        request.SmsSdkAppId = self._config.sdk_app_id
        request.SignName = sign
        request.TemplateId = code
        request.TemplateParamSet = params
        request.SessionContext = session_context(message)
        try:
            response = self._client.SendSms(request)
        except TencentCloudSDKException as exc:
            return _failed(str(exc.get_code() or ""), str(exc.get_message() or ""))
        statuses = response.SendStatusSet or []
        if not statuses:
            return Result("retryable", "Tencent answered without a status for the number")
        status = statuses[0]
        if status.Code != "Ok":
            return CODES.result(str(status.Code), str(status.Message or ""))
        return Result("sent", provider_id=provider_id(message))

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
            response = self._client.PullSmsSendStatusByPhoneNumber(request)
        except TencentCloudSDKException as exc:
            log.warning("message %d: could not look up its earlier try: %s", message.id, exc)
            return None
        for status in response.PullSmsSendStatusSet or []:
            if status.SessionContext == session_context(message):
                return Result(
                    "sent",
                    "its earlier request had been accepted (PullSmsSendStatusByPhoneNumber): "
                    "not sent again",
                    provider_id=provider_id(message),
                )
        return None

    async def close(self) -> None:
        return None


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
