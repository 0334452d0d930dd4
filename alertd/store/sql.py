"""What the store's statements share on either engine: times as text, a batch as few
statements, a transaction, rows as dicts. A connection says its engine by its `dialect`
(a PostgreSQL one, alertd/store/postgres.py `PgConn`); sqlite3's has none."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: a connection to the store, as the statements take it (a PgConn behaves as one)
Conn = sqlite3.Connection
#: a failure of the store on either engine (busy or broken file, full disk, a server gone:
#: PostgreSQL's connection raises sqlite3's classes, alertd/store/postgres.py)
StoreError = sqlite3.Error


class Missing(sqlite3.OperationalError):
    """There is no store there yet (alertd has not run against it)."""


#: rows of one multi-row VALUES statement at most
VALUES_ROWS = 256
#: parameters of one VALUES statement at most: a prepared statement, which the connection
#: keeps, holds about 130 bytes a parameter (SQLite takes 32,766 by default since 3.32)
MAX_PARAMETERS = 4096


def iso(at: datetime) -> str:
    """UTC, fixed width, so that text order is time order."""
    return (at if at.tzinfo is UTC else at.astimezone(UTC)).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def postgres(conn: Any) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgres"


@contextlib.contextmanager
def transaction(conn: Conn) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back if it raises.
    It takes the write lock at once: one begun deferred that read first could not
    become a write once another process (the console, a command) had written meanwhile,
    and failed at once with "database is locked", whatever the busy timeout. (PostgreSQL
    locks rows as they are written.)"""
    pg = postgres(conn)
    conn.execute("BEGIN" if pg else "BEGIN IMMEDIATE")
    try:
        if pg:
            with conn.pipelined():  # type: ignore[attr-defined]
                conn.fenced()  # type: ignore[attr-defined]
                yield
        else:
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
    conn: Conn, head: str, rows: Sequence[Mapping[str, Any]], tail: str = "", key: str = "id"
) -> None:
    """`head` (an INSERT's verb and table) for all `rows` in a statement or a few (see
    `values`): the columns are the rows' keys. `tail`: an upsert's ON CONFLICT. `OR
    IGNORE` and `OR REPLACE` (of the row with the same `key`) are said so on PostgreSQL."""
    if postgres(conn):  # plain VALUES rows: PostgreSQL prepares what it sees often itself
        if not rows:
            return
        if " OR IGNORE " in head:
            head, tail = head.replace(" OR IGNORE ", " "), f"{tail} ON CONFLICT DO NOTHING"
        if " OR REPLACE " in head:
            sets = ", ".join(f"{c} = excluded.{c}" for c in rows[0] if c != key)
            head, tail = (
                head.replace(" OR REPLACE ", " "),
                f"ON CONFLICT ({key}) DO UPDATE SET {sets}",
            )
        one = f"({','.join('?' * len(rows[0]))})"
        for start in range(0, len(rows), VALUES_ROWS):
            chunk = rows[start : start + VALUES_ROWS]
            args = [v for row in chunk for v in row.values()]
            conn.execute(
                f"{head} ({', '.join(rows[0])}) VALUES {','.join([one] * len(chunk))} {tail}",
                args,
            )
        return
    for columns, select, args in values(rows):
        conn.execute(f"{head} ({columns}) {select} {tail}", args)


def unsynced(fn: Any) -> Any:
    """`fn(conn, ...)` committed without its own fsync (synchronous=NORMAL for it alone).
    In WAL mode it becomes durable with the next FULL commit, whose fsync covers every
    frame before it. For what can be made again after a power loss: an incident decision
    (its events are committed, undecided, and decided again at start; nothing it sends
    goes out before the claim, a FULL commit, makes it durable) or a delivery receipt."""

    def call(conn: Conn, *args: Any) -> Any:
        if postgres(conn):  # the commit returns before the WAL is flushed, for it alone
            conn.execute("SET synchronous_commit = off")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("RESET synchronous_commit")
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            return fn(conn, *args)
        finally:
            conn.execute(f"PRAGMA synchronous={int(level)}")

    return call


def dict_rows(conn: Conn, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts keyed by column name."""
    cur = conn.execute(sql, args)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def among(conn: Conn, column: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
    """`column` is one of `items`, as one statement however many there are: SQLite reads
    them from a JSON array, PostgreSQL from an array."""
    if postgres(conn):
        return f"{column} = ANY(?)", [list(items)]
    return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(list(items))]


def as_integer(conn: Conn, column: str) -> str:
    """The leading number of a text column, 0 without one (`12A` 12, `B1` 0), for
    ordering floors: SQLite's CAST does so; PostgreSQL's refuses such text."""
    if postgres(conn):
        return f"coalesce(substring({column} from '^ *(-?[0-9]{{1,18}})')::bigint, 0)"
    return f"CAST({column} AS INTEGER)"


def seconds_between(conn: Conn, start: str, end: str) -> str:
    """Seconds from one stored time (ISO text) to another; NULL if either is."""
    if postgres(conn):
        return f"extract(epoch FROM ({end})::timestamptz - ({start})::timestamptz)"
    return f"(julianday({end}) - julianday({start})) * 86400"


def no_limit(conn: Conn) -> int | None:
    """A LIMIT's parameter that takes every row."""
    return None if postgres(conn) else -1


def unique_violation(exc: BaseException) -> bool:
    """A row that would repeat a unique key, on either engine."""
    return isinstance(exc, sqlite3.IntegrityError) or getattr(exc, "sqlstate", "") == "23505"
