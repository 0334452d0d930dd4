"""The store as a process beside the daemon uses it (the console): reads and writes each
on a thread of their own with its own connection (SQLite objects belong to the thread
that made them), so a heavy page never holds up the board or a staff action."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alertd.store.sql import Conn
from alertd.store.stores import open_reader, open_store, where

T = TypeVar("T")
log = logging.getLogger(__name__)

#: PostgreSQL: the channel the store notifies when an incident changes (schema.py)
CHANNEL = "alertd_incidents"
#: PostgreSQL: the board is read again this often whatever was notified (a notification
#: is a hint: one lost while the listening connection was down must not freeze it)
POLL_S = 5.0


class Access:
    """`read` for pages, `read` with `board=True` for the live board (its own thread,
    never queued behind a heavy page), `write` for staff actions and the audit trail."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path, self.url = path, url
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="console-read")
        self._board = ThreadPoolExecutor(1, thread_name_prefix="console-board")
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="console-write")
        self._conns: dict[ThreadPoolExecutor, Conn] = {}
        self._notified = 0
        self._listener: asyncio.Task[None] | None = None

    def _connection(self, pool: ThreadPoolExecutor) -> Conn:
        """The connection of the calling pool's one thread (made there, used there):
        read-only for reads, a migrated store for writes."""
        conn = self._conns.get(pool)
        if conn is None:
            if pool is self._writes:
                conn = open_store(self.path, self.url).conn
            else:
                conn = open_reader(self.path, self.url).conn
            self._conns[pool] = conn
        return conn

    async def read(self, fn: Callable[..., T], *args: Any, board: bool = False) -> T:
        return await self._on(self._board if board else self._reads, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._on(self._writes, fn, *args)

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, lambda: self._run(pool, fn, args))

    def _run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], args: Any) -> T:
        try:
            return fn(self._connection(pool), *args)
        except BaseException:
            if getattr(self._conns.get(pool), "broken", False):
                del self._conns[pool]  # the server went away: a new connection next time
            raise

    async def apart(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn` on a connection and thread of its own, closed after: for work that waits
        (a staff command waiting for the daemon to apply it) and must hold up nobody."""

        def run() -> T:
            store = open_store(self.path, self.url)
            try:
                return fn(store.conn, *args)
            finally:
                store.close()

        return await asyncio.to_thread(run)

    async def version(self) -> Any:
        """A value that changes when another process commits: SQLite's data_version (no
        query when idle), or PostgreSQL's notifications counted (and the time, in steps
        of POLL_S)."""
        if self.url is None:
            return await self.read(_data_version, board=True)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(self.url))
        return self._notified, int(time.monotonic() // POLL_S)

    async def _listen(self, url: str) -> None:
        """LISTEN on a connection of its own, made again when it breaks (each new one
        counts as a notification: what happened meanwhile is read)."""
        import psycopg

        failing = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, application_name="alertd console"
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._notified += 1
                    if failing:
                        log.warning("the board hears the store's notifications again")
                    failing = False
                    async for _ in conn.notifies():
                        self._notified += 1
            except psycopg.Error as exc:
                if not failing:
                    log.error(
                        "the board cannot listen to %s: %s (it reads every %.0f s meanwhile)",
                        where(self.path, url),
                        str(exc).strip(),
                        POLL_S,
                    )
                failing = True
                await asyncio.sleep(1.0)

    def close(self) -> None:
        """Each connection is closed by the thread that made it (SQLite's rule)."""
        if self._listener is not None:
            self._listener.cancel()
        for pool, conn in self._conns.items():
            with contextlib.suppress(Exception):
                pool.submit(conn.close).result()
        for pool in (self._reads, self._board, self._writes):
            pool.shutdown()


def _data_version(conn: Conn) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
