"""SQLite in WAL mode. One writer thread owns the writing connection (SQLite objects are
bound to their thread); readers open their own connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alertd.store.batch import Batch
from alertd.store.events import Events
from alertd.store.schema import MIGRATIONS
from alertd.store.sql import MAX_PARAMETERS, iso

log = logging.getLogger(__name__)

#: how long a connection waits for another's write lock (the writer thread; never the loop)
BUSY_TIMEOUT_MS = 30_000


def private(path: Path) -> None:
    """The store holds residents' names, phones and vulnerable notes: no access for others.
    SQLite gives its -wal and -shm files the database file's mode."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_mode & 0o077:
                part.chmod(0o600)


def _statements(script: str) -> Iterator[str]:
    """The script's statements one by one (a trigger's body has semicolons of its own)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


class Reader(Events):
    """What the commands that only look need: a connection and the usual queries."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


#: what the write path uses: json_each (3.9), UPDATE ... FROM (3.33), RETURNING (3.35)
SQLITE_NEEDED = (3, 35, 0)


class SqliteStore(Reader):
    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        if sqlite3.sqlite_version_info < SQLITE_NEEDED:  # said now, not at the first alarm
            raise sqlite3.NotSupportedError(
                f"alertd's store needs SQLite {'.'.join(map(str, SQLITE_NEEDED))} or newer; "
                f"this Python has {sqlite3.sqlite_version}"
            )
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        if limit < MAX_PARAMETERS:  # a build made with a limit far below SQLite's default
            raise sqlite3.NotSupportedError(
                f"alertd's store needs SQLite to take {MAX_PARAMETERS:,} parameters a "
                f"statement (its default is 32,766); this one is built for {limit:,}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        private(path)
        # room for every shape of `values`' statements (up to nine a table) and the rest: a
        # statement pushed out of the cache is prepared again at its next use
        # used by the writer thread and, while it is idle, by the event loop (`Writer.call`)
        conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, cached_statements=512, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        super().__init__(conn)
        self._migrate()

    @staticmethod
    def reader(path: Path) -> sqlite3.Connection:
        """A read-only connection (no migrations, no writes): what the commands that only
        look use, so they work on a store they may not write."""
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here, not later
        return conn

    # -- migrations ----------------------------------------------------------------------

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in self.applied():
                continue
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if version not in self.applied():  # another process may have been first
                    for statement in _statements(migration.sqlite):
                        self.conn.execute(statement)
                    self.conn.execute(
                        "INSERT INTO migrations VALUES (?, ?, ?)",
                        (version, migration.name, iso(datetime.now(UTC))),
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def applied(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT version FROM migrations")}


class _Locked(Exception):
    """Another connection holds the store's write lock."""


class Writer:
    """The single writer thread: async callers hand it work, done one piece at a time.
    Urgent work (a life-safety commit, an incident decision, a claim of messages to send)
    goes before what waits in the queue (telemetry batches, receipts, bookkeeping); each
    priority keeps its order.

    Urgent work that finds the thread idle, with nothing queued, runs on the event loop
    instead: handing a small commit to the thread and back (two thread switches, the GIL
    passed back and forth on one core) cost more than the commit's own work, and delayed
    every alarm behind it. Nothing can be ahead of it then, so the order is the same. If
    another process holds the store's lock, the thread waits for it, not the loop."""

    URGENT, ROUTINE = 0, 1

    def __init__(
        self, path: Path | None = None, *, synchronous: str = "FULL", url: str | None = None
    ) -> None:
        """A SQLite file at `path`, or the PostgreSQL store at `url` (its statements go
        over the network: never on the loop)."""
        self._path = path
        self._synchronous = synchronous
        self._url = url
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        #: jobs given to the thread (counted by the loop), jobs it has finished (by the thread)
        self._given = 0
        self._finished = 0
        self._thread = threading.Thread(target=self._work, name="alertd-writer", daemon=True)
        self._thread.start()
        self.store: Any = None
        #: urgent work may run on the loop (SQLite: a local file)
        self._inline = False
        #: PostgreSQL: the lease (site, instance, epoch) every write transaction holds
        self.fence: tuple[str, str, int] | None = None

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                self._finished += 1
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                self._reconnect_if_broken()
                self._finished += 1  # before the caller hears: the connection is free
                future.set_exception(exc)
            else:
                self._finished += 1
                future.set_result(result)

    async def open(self) -> Any:
        """The store, opened on the writer thread: a SqliteStore, or a PgStore."""
        self.store = await self.call(self._open, urgent=True)
        self._inline = isinstance(self.store, SqliteStore)
        return self.store

    def _open(self) -> Any:
        if self._url is not None:
            from alertd.store.postgres import PgStore

            # named after the instance: a takeover can end it (alertd/store/leases.py)
            name = f"alertd {self.fence[1]}" if self.fence else "alertd"
            store = PgStore(self._url, name=name)
            store.conn.fence = self.fence  # type: ignore[attr-defined]
            return store
        assert self._path is not None
        return SqliteStore(self._path, synchronous=self._synchronous)

    def fenced_by(self, fence: tuple[str, str, int]) -> None:
        """PostgreSQL: every write transaction from now on holds this lease (site,
        instance, epoch), on this connection (given before `open`: named after the
        instance) and on any made again after it broke."""
        self.fence = fence
        if self.store is not None:
            self.store.conn.fence = fence

    def _reconnect_if_broken(self) -> None:
        """PostgreSQL: a connection the server or the network closed (a primary that
        died, a promoted standby in its place) is made again for the next job, through
        the same connection string (libpq finds the new primary among its hosts); the
        job that failed is the caller's to retry. Not reachable yet: the next failure
        tries again."""
        if self._url is None or not getattr(self.store.conn, "broken", False):
            return
        try:
            fresh = self._open()
        except Exception as exc:
            log.error("the store's connection broke and cannot be made again yet: %s", exc)
            return
        old, self.store = self.store, fresh
        with contextlib.suppress(Exception):
            old.close()
        log.warning("the store's connection broke: connected again")

    async def call(self, fn: Any, *args: Any, urgent: bool = False) -> Any:
        if urgent and self._inline and self._given == self._finished:
            try:
                result = self._at_once(self.store.conn, fn, args)
            except _Locked:
                pass  # the thread waits for the lock, the loop does not
            else:
                await asyncio.sleep(0)  # a turn for the rest of the loop, as the thread gives
                return result
        self._given += 1
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(
            (self.URGENT if urgent else self.ROUTINE, next(self._seq), (future, fn, args))
        )
        return await asyncio.wrap_future(future)

    @staticmethod
    def _at_once(conn: sqlite3.Connection, fn: Any, args: tuple[Any, ...]) -> Any:
        """`fn` on the loop, never waiting for another process's write lock (a command,
        the console): its first statement, BEGIN IMMEDIATE, fails at once when the store
        is locked, before anything is done, and the work goes to the thread instead."""
        changes = conn.total_changes
        conn.execute("PRAGMA busy_timeout=0")
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if busy and not conn.in_transaction and conn.total_changes == changes:
                raise _Locked from exc
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    async def commit(self, batch: Batch, *, urgent: bool = False) -> None:
        assert self.store is not None, "open() first"
        await self.call(self.store.commit, batch, urgent=urgent)

    async def close(self) -> None:
        if self.store is not None:
            await self.call(self.store.close)
        self._queue.put((self.ROUTINE + 1, next(self._seq), None))
        await asyncio.to_thread(self._thread.join)
