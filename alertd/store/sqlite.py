"""SQLite in WAL mode. One writer thread owns the writing connection (SQLite objects are
bound to their thread); readers open their own connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertd.events import Kind
from alertd.store.batch import Batch
from alertd.store.schema import MIGRATIONS

if TYPE_CHECKING:
    import sqlite_utils

DEAD_LETTER_PAYLOAD_MAX = 4096
#: rows of one multi-row VALUES statement at most
VALUES_ROWS = 256
#: parameters of one VALUES statement at most: a prepared statement, which the connection
#: keeps, holds about 130 bytes a parameter (SQLite takes 32,766 by default since 3.32)
MAX_PARAMETERS = 4096
#: how long a connection waits for another's write lock (the writer thread; never the loop)
BUSY_TIMEOUT_MS = 30_000


def iso(at: datetime) -> str:
    """UTC, fixed width, so that text order is time order."""
    return (at if at.tzinfo is UTC else at.astimezone(UTC)).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def private(path: Path) -> None:
    """The store holds residents' names, phones and vulnerable notes: no access for others.
    SQLite gives its -wal and -shm files the database file's mode."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_mode & 0o077:
                part.chmod(0o600)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back if it raises.
    It takes the write lock at once: one begun deferred that read first could not
    become a write once another process (the console, a command) had written meanwhile,
    and failed at once with "database is locked", whatever the busy timeout."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full)
            conn.execute("ROLLBACK")
        raise


def values(rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str, list[Any]]]:
    """`rows` (mappings with the same keys in the same order) as SELECTs of bound VALUES,
    as many rows each as `MAX_PARAMETERS` allows (`VALUES_ROWS` at most): each (column
    list, SELECT, parameters). So a batch is one statement, not a statement a row
    (`executemany`): SQLite lets go of the GIL for each statement it steps, and beside a
    busy event loop every one of those waits to take it back, up to the switch interval
    (5 ms): a 200-row batch took 300 ms so, 5 ms as one statement. Bound parameters, not
    a JSON array read with json_extract, which parses the row again for every column.
    A statement has room for a power of two of rows and the rest are NULL rows it leaves
    out: the connection keeps each distinct statement it prepared, a few hundred KB for a
    large one, and one per batch size took the daemon's memory up by 10 MiB and more.
    Down to one row: a lone alarm's commit bound seven padding rows a table before (a
    fifth of the writer's CPU for it)."""
    if not rows:
        return
    columns = tuple(rows[0])
    most = min(VALUES_ROWS, MAX_PARAMETERS // (len(columns) + 1))
    per = 1 << (most.bit_length() - 1)
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        room = 1 << (len(chunk) - 1).bit_length()
        args = [v for row in chunk for v in (1, *row.values())]
        args += [None] * ((room - len(chunk)) * (len(columns) + 1))
        yield ", ".join(columns), _select(len(columns), room), args


@functools.lru_cache(maxsize=256)
def _select(width: int, room: int) -> str:
    """`room` rows of `width` values each behind a column that is NULL in padding rows."""
    one = f"({','.join('?' * (width + 1))})"
    picks = ", ".join(f"column{i}" for i in range(2, width + 2))
    return f"SELECT {picks} FROM (VALUES {','.join([one] * room)}) WHERE column1 NOT NULL"


def insert(
    conn: sqlite3.Connection, head: str, rows: Sequence[Mapping[str, Any]], tail: str = ""
) -> None:
    """`head` (an INSERT's verb and table) for all `rows` in a statement or a few (see
    `values`): the columns are the rows' keys. `tail`: an upsert's ON CONFLICT."""
    for columns, select, args in values(rows):
        conn.execute(f"{head} ({columns}) {select} {tail}", args)


def unsynced(fn: Any) -> Any:
    """`fn(conn, ...)` committed without its own fsync (synchronous=NORMAL for it alone).
    In WAL mode it becomes durable with the next FULL commit, whose fsync covers every
    frame before it. For what can be made again after a power loss: an incident decision
    (its events are committed, undecided, and decided again at start; nothing it sends
    goes out before the claim, a FULL commit, makes it durable) or a delivery receipt."""

    def call(conn: sqlite3.Connection, *args: Any) -> Any:
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            return fn(conn, *args)
        finally:
            conn.execute(f"PRAGMA synchronous={int(level)}")

    return call


def dict_rows(conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name."""
    cur = conn.execute(sql, args)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _statements(script: str) -> Iterator[str]:
    """The script's statements one by one (a trigger's body has semicolons of its own)."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


class Reader:
    """What the commands that only look need: a connection and the usual queries."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils for the commands' queries (imported only when one asks: the
        daemon does not need its few megabytes)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def close(self) -> None:
        self.conn.close()

    def events(
        self,
        *,
        since: datetime | None = None,
        kinds: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        where, args = [], []
        if since is not None:
            where.append("received_at >= ?")
            args.append(iso(since))
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        yield from self.db["events"].rows_where(
            " AND ".join(where) or None, args, order_by="id", limit=limit
        )

    def dead_letters(self, *, limit: int = 100) -> list[dict[str, Any]]:
        rows = list(self.db["dead_letters"].rows_where(order_by="id desc", limit=limit))
        return rows[::-1]

    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters").fetchall())


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

    # -- the write path ------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Write a batch in one transaction: all of it or, on a crash, none of it."""
        with transaction(self.conn):
            self.write(batch)

    def write(self, batch: Batch, *, decided: bool = False) -> None:
        """`commit` inside the caller's transaction; `decided`: the events' decisions are
        written in it too."""
        c = self.conn
        if batch.events:
            insert(
                c,
                "INSERT INTO events",
                [
                    {
                        "id": e.id,
                        "kind": e.kind.value,
                        "state": e.state.value,
                        "severity": str(e.severity),
                        "device_id": e.device_id,
                        "site": e.location.site,
                        "building": e.location.building,
                        "floor": e.location.floor,
                        "unit": e.location.unit,
                        "zone": e.location.zone,
                        "occurred_at": iso(e.occurred_at),
                        "received_at": iso(e.received_at),
                        "source": e.source,
                        "detail": e.detail,
                        "raw": e.raw,
                        "tags": json.dumps(e.tags, sort_keys=True) if e.tags else "{}",
                        "drill": int(e.drill),
                        "decided": int(decided),
                    }
                    for e in batch.events
                ],
            )
        if batch.states:
            insert(
                c,
                "INSERT INTO device_state",
                [
                    {
                        "device_id": s.device_id,
                        "kind": s.kind.value,
                        "active": int(s.active),
                        "since": iso(s.since),
                        "event_id": s.event_id,
                        "seq": s.seq,
                    }
                    for s in batch.states
                ],
                "ON CONFLICT(device_id, kind) DO UPDATE SET active = excluded.active, "
                "since = excluded.since, event_id = excluded.event_id, seq = excluded.seq "
                "WHERE excluded.seq > device_state.seq",
            )
        if batch.seen:
            insert(
                c,
                "INSERT INTO device_seen",
                [
                    {
                        "device_id": d,
                        "last_seen": iso(at),
                        '"values"': json.dumps(v, sort_keys=True),
                    }
                    for d, (at, v) in batch.seen.items()
                ],
                "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, "
                '"values" = excluded."values" WHERE excluded.last_seen >= device_seen.last_seen',
            )
        if batch.dead_letters:
            insert(
                c,
                "INSERT INTO dead_letters",
                [
                    {
                        "received_at": iso(d.received_at),
                        "source": d.source,
                        "topic": d.topic,
                        "device_id": d.device_id,
                        "reason": d.reason,
                        "payload": d.payload[:DEAD_LETTER_PAYLOAD_MAX],
                        "size": len(d.payload),
                        "site": d.site,
                    }
                    for d in batch.dead_letters
                ],
            )
        if batch.receipts:
            insert(
                c,
                "INSERT OR REPLACE INTO receipts",
                [{"key": k, "digest": d} for k, d in batch.receipts.items()],
            )
        if batch.counters:
            insert(
                c,
                "INSERT INTO counters",
                [{"name": n, "value": v} for n, v in batch.counters.items()],
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            )

    # -- what the daemon needs at start-up -----------------------------------------------

    def states(self) -> dict[tuple[str, Kind], bool]:
        out = {}
        for device_id, kind, active in self.conn.execute(
            "SELECT device_id, kind, active FROM device_state"
        ):
            try:
                out[(device_id, Kind(kind))] = bool(active)
            except ValueError:
                continue  # a kind this version no longer knows
        return out

    def last_seen(self) -> dict[str, datetime]:
        return {
            d: parse_iso(at)
            for d, at in self.conn.execute("SELECT device_id, last_seen FROM device_seen")
        }

    def receipts(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, digest FROM receipts").fetchall())

    def max_event_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    # -- what the CLI reads --------------------------------------------------------------

    def device_values(self) -> dict[str, dict[str, Any]]:
        return {
            d: {"last_seen": at, "values": json.loads(v)}
            for d, at, v in self.conn.execute(
                'SELECT device_id, last_seen, "values" FROM device_seen'
            )
        }


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

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        #: jobs given to the thread (counted by the loop), jobs it has finished (by the thread)
        self._given = 0
        self._finished = 0
        self._thread = threading.Thread(target=self._work, name="alertd-writer", daemon=True)
        self._thread.start()
        self.store: SqliteStore | None = None

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
                self._finished += 1  # before the caller hears: the connection is free
                future.set_exception(exc)
            else:
                self._finished += 1
                future.set_result(result)

    async def open(self) -> SqliteStore:
        self.store = await self.call(
            lambda: SqliteStore(self._path, synchronous=self._synchronous), urgent=True
        )
        return self.store

    async def call(self, fn: Any, *args: Any, urgent: bool = False) -> Any:
        if urgent and self.store is not None and self._given == self._finished:
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
