"""A local stand-in for Aliyun's dysmsapi: the real SDK talks to it over HTTP. It checks
each request's V3 signature (ACS3-HMAC-SHA256) as Aliyun's gateway does, records
SendSms, SendBatchSms and QuerySendDetails, answers Aliyun's codes on demand, and pushes
delivery reports (SmsReport) and replies (SmsUp) as Aliyun's HTTP batch push does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from tests.helpers import serve_locally

KEY_ID = "LTAI-test-key"
KEY_SECRET = "aliyun-test-secret"
HANG = "hang"
#: the request is taken (the text goes out), and no answer comes
TAKE_AND_HANG = "take and hang"


@dataclass
class Refusal:
    """An answer other than OK: HTTP 200 with Aliyun's Code (a business refusal), or
    another status (the gateway's)."""

    code: str
    status: int = 200
    message: str = "refused"


def canonical(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed: list[str],
    payload_hash: str,
) -> str:
    """The canonical request of Aliyun's V3 signature, as its documentation defines it:
    method, URI, the query sorted and percent-encoded (RFC 3986), each signed header as
    `name:value` (lower-case names, sorted), the signed names, the payload's SHA-256."""

    def enc(text: str) -> str:
        return quote(text, safe="-_.~")

    query_text = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(query))
    header_text = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    return "\n".join([method, path or "/", query_text, header_text, ";".join(signed), payload_hash])


@dataclass
class FakeAliyun:
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: what the next SendSms requests get, in order; then OK
    plan: deque[str | Refusal] = field(default_factory=deque)
    #: while set, every SendSms gets it (an outage, an unapproved template)
    storm: Refusal | None = None
    #: codes per number, for every request to it
    always: dict[str, Refusal] = field(default_factory=dict)
    #: template codes registered and approved; others get isv.SMS_TEMPLATE_ILLEGAL
    approved: set[str] | None = None
    base_url: str = ""
    #: requests whose signature did not verify (answered 400 SignatureDoesNotMatch)
    forged: int = 0
    _sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: SmsReport entries not pushed yet, and those pushed
    reports: list[dict[str, Any]] = field(default_factory=list)
    reports_sent: list[dict[str, Any]] = field(default_factory=list)
    #: where pushes go: alertd's <public_url>/aliyun/<token>
    push_url: str = ""
    #: when each request came (time.perf_counter, as the fake Twilio)
    times: list[float] = field(default_factory=list)

    async def start(self) -> FakeAliyun:
        app = web.Application()
        app.router.add_route("*", "/", self._handle)
        self._runner, port = await serve_locally(app)
        self.endpoint = f"127.0.0.1:{port}"
        self.base_url = f"http://{self.endpoint}"
        self._ids = itertools.count(1)
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    @property
    def sms(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["action"] == "SendSms"]

    def _verify(self, request: web.Request, body: bytes) -> bool:
        auth = request.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        if algorithm != "ACS3-HMAC-SHA256":
            return False
        parts = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
        if parts.get("Credential") != KEY_ID:
            return False
        payload_hash = hashlib.sha256(body).hexdigest()
        if request.headers.get("x-acs-content-sha256") != payload_hash:
            return False
        signed = parts.get("SignedHeaders", "").split(";")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not all(h in headers for h in signed) or "host" not in signed:
            return False
        query = list(parse_qsl(request.query_string, keep_blank_values=True))
        text = canonical(request.method, request.path, query, headers, signed, payload_hash)
        to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(text.encode()).hexdigest()
        expected = hmac.new(KEY_SECRET.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("Signature", ""))

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verify(request, body):
            self.forged += 1
            return web.json_response(
                {"Code": "SignatureDoesNotMatch", "Message": "bad signature", "RequestId": "x"},
                status=400,
            )
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        params.update(dict(parse_qsl(body.decode(), keep_blank_values=True)))
        action = request.headers.get("x-acs-action", "")
        self.requests.append({"action": action, **params})
        self.times.append(time.perf_counter())
        if action == "SendSms":
            return await self._send(params)
        if action == "SendBatchSms":
            return await self._batch(params)
        if action == "QuerySendDetails":
            return self._details(params)
        return web.json_response({"Code": "InvalidAction", "Message": action}, status=404)

    @property
    def texts(self) -> list[str]:
        """Every number texted, once per text, whether alone or in a batch."""
        phones = [r["PhoneNumbers"] for r in self.sms]
        for r in self.requests:
            if r["action"] == "SendBatchSms":
                phones += json.loads(r["PhoneNumberJson"])
        return phones

    @property
    def accepted(self) -> list[str]:
        """Every number a text was accepted for (alone or in a batch), once per text."""
        return [phone for phone, sent in self._sent.items() for _ in sent]

    async def push(self, kind: str, entries: list[dict[str, Any]]) -> int:
        """One push as Aliyun makes it (kind: report or reply); returns the HTTP status."""
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.push_url}/{kind}", json=entries) as response,
        ):
            if response.status == 200:
                assert isinstance((await response.json())["code"], int)  # Aliyun checks it
            return response.status

    async def push_reports(self, most: int = 100) -> int:
        """The reports not pushed yet, `most` a push; the last push's status."""
        entries, self.reports = self.reports, []
        self.reports_sent += entries
        status = 200
        for i in range(0, len(entries), most):
            status = await self.push("report", entries[i : i + most])
        return status

    async def reply(self, phone: str, content: str) -> int:
        entry = {
            "phone_number": phone.removeprefix("+86"),
            "send_time": "2026-12-07 03:14:00",
            "content": content,
            "sign_name": "海景物业",
            "dest_code": "1234",
            "sequence_id": next(self._ids),
        }
        return await self.push("reply", [entry])

    def _accept(self, phone: str, params: dict[str, str], biz_id: str, out_id: str) -> None:
        self._sent.setdefault(phone, []).append({**params, "OutId": out_id, "BizId": biz_id})
        self.reports.append(
            {
                "phone_number": phone,
                "send_time": "2026-12-07 03:12:00",
                "report_time": "2026-12-07 03:12:05",
                "success": True,
                "err_code": "DELIVERED",
                "err_msg": "用户接收成功",
                "sms_size": "1",
                "biz_id": biz_id,
                "out_id": out_id,
            }
        )

    async def _planned(self) -> web.Response | None:
        """An outage, or the next planned answer (a refusal, or no answer at all)."""
        if self.storm is not None:
            return self._answer(self.storm)
        step = self.plan.popleft() if self.plan and self.plan[0] != TAKE_AND_HANG else None
        if step == HANG:
            await asyncio.sleep(3600)
        return self._answer(step) if isinstance(step, Refusal) else None

    def _answer(self, refusal: Refusal) -> web.Response:
        return web.json_response(
            {"Code": refusal.code, "Message": refusal.message, "RequestId": "req"},
            status=refusal.status,
        )

    async def _send(self, params: dict[str, str]) -> web.Response:
        phone = params.get("PhoneNumbers", "")
        planned = await self._planned()
        if planned is not None:
            return planned
        if phone in self.always:
            return self._answer(self.always[phone])
        if self.approved is not None and params.get("TemplateCode") not in self.approved:
            return self._answer(Refusal("isv.SMS_TEMPLATE_ILLEGAL", message="模板不合法"))
        try:
            json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return self._answer(Refusal("isv.INVALID_JSON_PARAM"))
        biz_id = f"{next(self._ids):06d}^0"
        self._accept(phone, params, biz_id, params.get("OutId", ""))
        return web.json_response(
            {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "req"}
        )

    async def _batch(self, params: dict[str, str]) -> web.Response:
        """SendBatchSms: up to 100 numbers, a sign name and a parameter set each; one
        answer for the whole request."""
        try:
            phones = json.loads(params.get("PhoneNumberJson", ""))
            signs = json.loads(params.get("SignNameJson", ""))
            values = json.loads(params.get("TemplateParamJson") or "[]")
        except ValueError:
            return self._answer(Refusal("isv.INVALID_JSON_PARAM"))
        if not 0 < len(phones) <= 100:
            return self._answer(Refusal("isv.MOBILE_COUNT_OVER_LIMIT"))
        if len(signs) != len(phones) or (values and len(values) != len(phones)):
            return self._answer(Refusal("isv.INVALID_PARAMETERS"))
        planned = await self._planned()
        if planned is not None:
            return planned
        refused = next((self.always[p] for p in phones if p in self.always), None)
        if refused is not None:
            return self._answer(refused)
        if self.approved is not None and params.get("TemplateCode") not in self.approved:
            return self._answer(Refusal("isv.SMS_TEMPLATE_ILLEGAL", message="模板不合法"))
        biz_id = f"{next(self._ids):06d}^0"
        for phone in phones:
            self._accept(phone, params, biz_id, params.get("OutId", ""))
        if self.plan and self.plan[0] == TAKE_AND_HANG:
            self.plan.popleft()
            await asyncio.sleep(3600)
        return web.json_response(
            {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": "req"}
        )

    def _details(self, params: dict[str, str]) -> web.Response:
        phone = params.get("PhoneNumber", "")
        rows = [
            {
                "PhoneNum": phone,
                "SendStatus": 3,
                "ErrCode": "DELIVERED",
                "TemplateCode": s.get("TemplateCode"),
                "OutId": s["OutId"],
                "BizId": s["BizId"],
                "Content": s.get("TemplateParam"),
            }
            for s in self._sent.get(phone, [])
        ]
        return web.json_response(
            {
                "Code": "OK",
                "Message": "OK",
                "TotalCount": str(len(rows)),
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows},
                "RequestId": "req",
            }
        )
