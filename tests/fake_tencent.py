"""A local stand-in for Tencent Cloud SMS (2021-01-11): the real SDK talks to it over
HTTP. It checks each request's TC3-HMAC-SHA256 signature as Tencent's API gateway does,
records SendSms and PullSmsSendStatusByPhoneNumber, and answers Tencent's error codes on
demand (per number inside a successful response, or account-wide as an error)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.helpers import serve_locally

SECRET_ID = "AKID-test"
SECRET_KEY = "tencent-test-key"
APP_ID = "1400000001"
HANG = "hang"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class Refusal:
    code: str
    #: the whole request refused (an error response), else this number's status
    whole: bool = False
    message: str = "refused"


@dataclass
class FakeTencent:
    requests: list[dict[str, Any]] = field(default_factory=list)
    plan: deque[str | Refusal] = field(default_factory=deque)
    storm: Refusal | None = None
    always: dict[str, Refusal] = field(default_factory=dict)
    approved: set[str] | None = None
    forged: int = 0
    _sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: statuses and replies not pulled yet (Tencent hands each out once)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)

    async def start(self) -> FakeTencent:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner, port = await serve_locally(app)
        self.endpoint = f"127.0.0.1:{port}"
        self._ids = itertools.count(1)
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    @property
    def sms(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["action"] == "SendSms"]

    def _verify(self, request: web.Request, body: bytes) -> bool:
        """TC3-HMAC-SHA256 as Tencent documents it: the canonical request (method, URI,
        query, the content-type and host headers, their names, the payload's SHA-256),
        signed with a key derived from the secret key, the UTC date and the service."""
        auth = request.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        if algorithm != "TC3-HMAC-SHA256":
            return False
        parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
        secret_id, date, service, terminator = (parts.get("Credential", "") + "////").split("/")[:4]
        if secret_id != SECRET_ID or terminator != "tc3_request":
            return False
        timestamp = request.headers.get("X-TC-Timestamp", "0")
        if abs(int(timestamp) - time.time()) > 300:  # Tencent's five minutes
            return False
        if datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d") != date:
            return False
        signed = parts.get("SignedHeaders", "")
        headers = {
            "content-type": request.headers.get("Content-Type", ""),
            "host": request.headers.get("Host", ""),
        }
        canonical = "\n".join(
            [
                request.method,
                "/",
                request.query_string,
                "".join(f"{name}:{headers[name]}\n" for name in signed.split(";")),
                signed,
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{date}/{service}/tc3_request"
        to_sign = "\n".join(
            ["TC3-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(_hmac(_hmac(("TC3" + SECRET_KEY).encode(), date), service), "tc3_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return signed == "content-type;host" and hmac.compare_digest(
            expected, parts.get("Signature", "")
        )

    @staticmethod
    def _json(data: dict[str, Any]) -> web.Response:
        # exactly "application/json", as Tencent answers (the SDK reads errors only then)
        body = json.dumps(data, ensure_ascii=False).encode()
        return web.Response(body=body, headers={"Content-Type": "application/json"})

    def _error(self, code: str, message: str) -> web.Response:
        return self._json(
            {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req"}}
        )

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verify(request, body):
            self.forged += 1
            return self._error("AuthFailure.SignatureFailure", "signature does not match")
        action = request.headers.get("X-TC-Action", "")
        params = json.loads(body or b"{}")
        self.requests.append({"action": action, **params})
        if params.get("SmsSdkAppId") != APP_ID:
            return self._error("InvalidParameterValue.SdkAppIdNotExist", "no such app")
        if action == "SendSms":
            return await self._send(params)
        if action in ("PullSmsSendStatus", "PullSmsReplyStatus"):
            queue = self.statuses if action == "PullSmsSendStatus" else self.replies
            limit = int(params.get("Limit", 0))
            if not 0 < limit <= 100:
                return self._error("InvalidParameterValue", "Limit must be 1 to 100")
            taken, queue[:] = queue[:limit], queue[limit:]
            return self._ok({f"{action}Set": taken})
        if action == "PullSmsSendStatusByPhoneNumber":
            rows = list(self._sent.get(params.get("PhoneNumber", ""), []))
            return self._ok({"PullSmsSendStatusSet": rows})
        return self._error("InvalidAction", action)

    @property
    def texts(self) -> list[str]:
        """Every number texted, once per text."""
        return [p for r in self.sms for p in r.get("PhoneNumberSet", [])]

    def reply(self, phone: str, content: str) -> None:
        """A text from `phone`, for the next PullSmsReplyStatus."""
        self.replies.append(
            {
                "ExtendCode": "",
                "CountryCode": "86",
                "SubscriberNumber": phone.removeprefix("+86"),
                "PhoneNumber": phone,
                "SignName": "海景物业",
                "ReplyContent": content,
                "ReplyTime": "2026-12-07 03:14:00",
            }
        )

    def _ok(self, data: dict[str, Any]) -> web.Response:
        return self._json({"Response": {**data, "RequestId": "req"}})

    async def _send(self, params: dict[str, Any]) -> web.Response:
        if self.storm is not None and self.storm.whole:
            return self._error(self.storm.code, self.storm.message)
        step: str | Refusal | None = self.plan.popleft() if self.plan else None
        if step == HANG:
            await asyncio.sleep(3600)
        if isinstance(step, Refusal) and step.whole:
            return self._error(step.code, step.message)
        statuses = []
        for phone in params.get("PhoneNumberSet", []):
            refusal = self.always.get(phone) or (step if isinstance(step, Refusal) else None)
            refusal = refusal or self.storm
            approved = self.approved is None or params.get("TemplateId") in self.approved
            if refusal is None and not approved:
                refusal = Refusal("FailedOperation.TemplateIncorrectOrUnapproved")
            serial = f"2640:{next(self._ids):010d}"
            if refusal is not None:
                statuses.append(
                    {
                        "SerialNo": "",
                        "PhoneNumber": phone,
                        "Fee": 0,
                        "SessionContext": "",
                        "Code": refusal.code,
                        "Message": refusal.message,
                        "IsoCode": "CN",
                    }
                )
                continue
            context = params.get("SessionContext", "")
            statuses.append(
                {
                    "SerialNo": serial,
                    "PhoneNumber": phone,
                    "Fee": 1,
                    "SessionContext": context,
                    "Code": "Ok",
                    "Message": "send success",
                    "IsoCode": "CN",
                }
            )
            record = {
                "UserReceiveTime": "2026-12-07 12:00:01",
                "CountryCode": "86",
                "SubscriberNumber": phone.removeprefix("+86"),
                "PhoneNumber": phone,
                "SerialNo": serial,
                "ReportStatus": "SUCCESS",
                "Description": "用户短信送达成功",
                "SessionContext": context,
            }
            self._sent.setdefault(phone, []).append(record)
            self.statuses.append(record)
        return self._ok({"SendStatusSet": statuses})
