"""Small asyncio helpers.

`asyncio.wait_for` on Python 3.11 can turn a cancellation that races its timeout into a
TimeoutError; code that then carries on after a timeout would ignore the cancellation
and never stop. `asyncio.timeout` tells the two apart, so waits use it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` for at most `seconds`; False on timeout."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, raising TimeoutError after `seconds` (never for a cancellation)."""
    async with asyncio.timeout(seconds):
        return await awaitable
