"""Group commit for many small writes from many callers (delivery receipts): each caller
waits until its item is committed, and everything that arrived meanwhile shares one
transaction on the writer thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from alertd.store.sqlite import Writer

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, writer: Writer, write: Callable[[Sequence[T]], Any]) -> None:
        self._writer = writer
        self._write = write
        self._items: list[tuple[T, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Returns once `item` is committed (raises what the commit raised)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((item, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._items:
            batch, self._items = self._items, []
            try:
                await self._writer.call(self._write, [item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
