"""A local stand-in for Twilio's REST API: the real SDK talks to it. It records every
request and fails on demand (500, 429 with Retry-After, a hang, Twilio error codes)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.helpers import serve_locally

OK = "ok"
HANG = "hang"


@dataclass
class Failure:
    status: int
    code: int | None = None
    retry_after: float | None = None


@dataclass
class FakeTwilio:
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: what the next requests get, in order; then `OK`
    plan: deque[str | Failure] = field(default_factory=deque)
    #: a failure for every request to these numbers
    always: dict[str, Failure] = field(default_factory=dict)
    #: while set, every request gets it (an account-wide 429 storm, a revoked token)
    storm: Failure | None = None
    base_url: str = ""
    #: seconds each answer takes (a slow Twilio makes a fan-out last)
    delay_s: float = 0.0
    #: post a signed "delivered" receipt to each message's StatusCallback, as Twilio
    #: does (needs the account's auth token to sign)
    receipts_token: str | None = None
    receipts_posted: int = 0
    #: while set and not yet set off, requests are held (recorded, not answered)
    gate: asyncio.Event | None = None
    #: the account's limit: at most this many requests of a resource (messages, calls)
    #: accepted in any one second; the others get 429, error 20429, with Retry-After (as
    #: Twilio answers past its limits, which it keeps for messages and calls apart)
    rate_limit: int | None = None
    retry_after_s: float = 1.0
    #: per resource, arrival times of the requests accepted in the last second
    _accepted: dict[str, deque[float]] = field(default_factory=dict)

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self._create)
        self._runner, port = await serve_locally(app)
        self.base_url = f"http://127.0.0.1:{port}"
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._receipt_tasks: set[asyncio.Future[None]] = set()
        self._session = aiohttp.ClientSession()
        return self

    async def _receipt(self, url: str, sid: str) -> None:
        """Twilio's status callback, signed with the account's token."""
        from twilio.request_validator import RequestValidator

        form = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC"}
        assert self.receipts_token is not None
        signature = RequestValidator(self.receipts_token).compute_signature(url, form)
        try:
            async with self._session.post(
                url, data=form, headers={"X-Twilio-Signature": signature}
            ) as response:
                if response.status < 300:
                    self.receipts_posted += 1
        except aiohttp.ClientError:
            pass  # Twilio gives up too

    async def close(self) -> None:
        self._closing.set()
        for task in list(self._receipt_tasks):
            task.cancel()
        await self._session.close()
        await self._runner.cleanup()

    def sms(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["kind"] == "Messages" and r["answered"] == 201]

    def _limited(self, kind: str, now: float) -> str | Failure:
        """OK within the account's limit for this resource (and counted), else Twilio's
        429: messages have a rate of their own, calls theirs (calls per second)."""
        accepted = self._accepted.setdefault(kind, deque())
        while accepted and accepted[0] <= now - 1.0:
            accepted.popleft()
        assert self.rate_limit is not None
        if len(accepted) >= self.rate_limit:
            return Failure(429, 20429, self.retry_after_s)
        accepted.append(now)
        return OK

    async def _create(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        kind = request.path.rsplit("/", 1)[1].split(".")[0]
        action: str | Failure = self.storm or self.always.get(str(form.get("To")), OK)
        if action == OK and self.plan:
            action = self.plan.popleft()
        if action == OK and self.rate_limit is not None:
            action = self._limited(kind, time.monotonic())
        record = {
            "kind": kind,
            "form": form,
            "auth": request.headers.get("Authorization", ""),
            "answered": 0,
            "at": time.perf_counter(),
            "wall": time.time(),
        }
        self.requests.append(record)
        if self.gate is not None:
            await self.gate.wait()
        if action == HANG:  # until the test ends: the client must give up on its own
            await self._closing.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the fake's service time, not synchronisation
        if isinstance(action, Failure):
            record["answered"] = action.status
            headers = {"Retry-After": str(action.retry_after)} if action.retry_after else {}
            body = {
                "code": action.code or 20000 + action.status,
                "status": action.status,
                "message": f"fake failure {action.code or action.status}",
                "more_info": "https://www.twilio.com/docs/errors",
            }
            return web.json_response(body, status=action.status, headers=headers)
        record["answered"] = 201
        prefix = "SM" if kind == "Messages" else "CA"
        sid = f"{prefix}{next(self._ids):032x}"
        callback = str(form.get("StatusCallback") or "")
        if self.receipts_token and callback and kind == "Messages":
            task = asyncio.ensure_future(self._receipt(callback, sid))
            self._receipt_tasks.add(task)
            task.add_done_callback(self._receipt_tasks.discard)
        return web.json_response(
            {
                "sid": sid,
                "status": "queued",
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "account_sid": request.match_info["sid"],
            },
            status=201,
        )
