"""Sends that come together go out as one request: a provider's batch API (Aliyun's
SendBatchSms, 100 numbers; Tencent's SendSms, 200) takes a fan-out's texts in a fraction
of the requests, within its request-rate limits.

The dispatcher still sends message by message at the lane's rate; a send waits at most
`wait_s` for others with the same key (the same template and sign name) and each gets
its own result. A send given up meanwhile (its caller timed out) is left out of the
request: it is retried, never sent blind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from alertd.outbox.sink import Message, Result

K = TypeVar("K", bound=Hashable)

SendMany = Callable[[K, list[Message]], Awaitable[list[Result]]]


def request_name(messages: list[Message]) -> str:
    """A request's own id at the provider (Aliyun's OutId, Tencent's SessionContext: its
    receipts and look-ups carry it): the message's, or a batch's first and last."""
    ids = sorted(m.id for m in messages)
    return f"alertd-{ids[0]}" if len(ids) == 1 else f"alertd-{ids[0]}-{ids[-1]}"


def covers(name: str, message_id: int) -> bool:
    """Whether the request so named carried the message (its id, or a batch's range that
    holds it: a look-up matches the number besides)."""
    ids = name.removeprefix("alertd-").split("-")
    if not name.startswith("alertd-") or len(ids) > 2 or not all(i.isdigit() for i in ids):
        return False
    return int(ids[0]) <= message_id <= int(ids[-1])


class Batcher(Generic[K]):
    def __init__(self, send_many: SendMany[K], most: int, wait_s: float = 0.05) -> None:
        self._send_many = send_many
        self._most = most
        self._wait_s = wait_s
        self._waiting: dict[K, list[tuple[Message, asyncio.Future[Result]]]] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        #: requests in flight, with their callers' futures
        self._requests: dict[asyncio.Task[None], list[asyncio.Future[Result]]] = {}

    async def send(self, key: K, message: Message) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(key, [])
        waiting.append((message, future))
        if len(waiting) >= self._most:
            self._flush(key)
        elif len(waiting) == 1:
            self._timers[key] = asyncio.get_running_loop().call_later(
                self._wait_s, self._flush, key
            )
        return await future

    def _flush(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        batch = [(m, f) for m, f in self._waiting.pop(key, []) if not f.done()]
        if batch:
            task = asyncio.create_task(self._request(key, batch))
            self._requests[task] = [f for _, f in batch]
            task.add_done_callback(self._requests.pop)

    async def _request(self, key: K, batch: list[tuple[Message, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send_many(key, [m for m, _ in batch])
        except Exception as exc:  # a sink's bug: each caller gets it, nothing hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Sends still waiting go; a request whose callers all gave up is not waited
        for (its messages are retried and looked up first)."""
        for key in list(self._waiting):
            self._flush(key)
        for task, futures in list(self._requests.items()):
            if all(f.done() for f in futures):
                task.cancel()
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)
