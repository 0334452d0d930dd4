"""The store as a process beside the daemon uses it (the console): reads and writes each
on a thread of their own with its own connection (SQLite objects belong to the thread
that made them), so a heavy page never holds up the board or a staff action."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alertd.store.sqlite import SqliteStore

T = TypeVar("T")


class Access:
    """`read` for pages, `read` with `board=True` for the live board (its own thread,
    never queued behind a heavy page), `write` for staff actions and the audit trail."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="console-read")
        self._board = ThreadPoolExecutor(1, thread_name_prefix="console-board")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="console-write")
        self._conns: dict[ThreadPoolExecutor, sqlite3.Connection] = {}

    def _connection(self, pool: ThreadPoolExecutor) -> sqlite3.Connection:
        """The connection of the calling pool's one thread (made there, used there):
        read-only for reads, a migrated store for writes."""
        conn = self._conns.get(pool)
        if conn is None:
            if pool is self._writes:
                conn = SqliteStore(self.path).conn
            else:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            self._conns[pool] = conn
        return conn

    async def read(self, fn: Callable[..., T], *args: Any, board: bool = False) -> T:
        return await self._on(self._board if board else self._reads, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._on(self._writes, fn, *args)

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, lambda: fn(self._connection(pool), *args))

    async def apart(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn` on a connection and thread of its own, closed after: for work that waits
        (a staff command waiting for the daemon to apply it) and must hold up nobody."""

        def run() -> T:
            store = SqliteStore(self.path)
            try:
                return fn(store.conn, *args)
            finally:
                store.close()

        return await asyncio.to_thread(run)

    async def version(self) -> int:
        """A number that changes when another process commits (no query when idle)."""
        return await self.read(_data_version, board=True)

    def close(self) -> None:
        """Each connection is closed by the thread that made it (SQLite's rule)."""
        for pool, conn in self._conns.items():
            pool.submit(conn.close).result()
        for pool in (self._reads, self._board, self._writes):
            pool.shutdown()


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
