"""`alertd store copy FROM TO`: a store moved between SQLite and PostgreSQL (either way),
checked row for row before it is committed.

Both ends are brought to this alertd's schema first, so their tables have the same columns.
The destination is written in one transaction: a copy that fails or does not check out
leaves it as it was. The running cluster's own state (instances, site leases) is not data
and stays behind."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alertd.store.postgres import PgStore, is_postgres, shown
from alertd.store.sql import transaction
from alertd.store.sqlite import SqliteStore

#: the running cluster's state, not data
NOT_COPIED = frozenset({"migrations", "instances", "site_leases"})
#: rows between two progress reports
PROGRESS_EVERY = 50_000
_MOD = 1 << 256


class CopyRefused(RuntimeError):
    """The copy cannot start, or did not check out; nothing was written."""


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


class _Sqlite:
    def __init__(self, path: Path, *, create: bool) -> None:
        if not create and not path.exists():
            raise CopyRefused(f"no store at {path}")
        self.name = str(path)
        self.store = SqliteStore(path)
        self.conn = self.store.conn

    def tables(self) -> dict[str, list[str]]:
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            t: [c[1] for c in self.conn.execute(f'PRAGMA table_info("{t}")')]
            for t in names
            if t not in NOT_COPIED
        }

    def count(self, table: str) -> int:
        return int(self.conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        yield from self.conn.execute(f'SELECT {_listed(columns)} FROM "{table}"')

    def write(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        sql = f'INSERT INTO "{table}" ({_listed(columns)}) VALUES ({marks})'
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 1000:
                self.conn.executemany(sql, batch)
                batch.clear()
        if batch:
            self.conn.executemany(sql, batch)

    def written(self, table: str) -> None:
        pass  # INTEGER PRIMARY KEY goes on from the largest id by itself

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        self.conn.execute("BEGIN")  # one read transaction: WAL keeps its view steady
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with transaction(self.conn):
            yield

    def close(self) -> None:
        self.store.close()


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg

        self.name = shown(url)
        try:
            PgStore(url).close()  # brought up to date
            self.conn = psycopg.connect(url, autocommit=True, application_name="alertd store copy")
        except psycopg.OperationalError as exc:
            raise CopyRefused(f"cannot reach {self.name}: {str(exc).strip()}") from exc

    def tables(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for table, column in self.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            if table not in NOT_COPIED:
                found.setdefault(table, []).append(column)
        return found

    def count(self, table: str) -> int:
        from psycopg import sql

        row = self.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        return int(row[0]) if row else 0

    def rows(self, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        from psycopg import sql

        with self.conn.cursor(name=f"copy_{table}") as cur:  # server-side: not all in memory
            cur.itersize = 5000
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(_identifiers(columns), sql.Identifier(table))
            )
            yield from cur

    def write(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), _identifiers(columns)
        )
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def written(self, table: str) -> None:
        """Identity columns go on after the largest id copied."""
        from psycopg import sql

        if "id" not in self.tables()[table]:
            return
        self.conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                "(SELECT coalesce(max(id), 0) + 1 FROM {}), false) "
                "WHERE pg_get_serial_sequence(%s, 'id') IS NOT NULL"
            ).format(sql.Identifier(table)),
            (table, table),
        )

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        import psycopg

        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with self.conn.transaction():
            self.conn.execute("SET TRANSACTION READ ONLY")
            yield

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def close(self) -> None:
        self.conn.close()


def _identifiers(columns: list[str]) -> Any:
    from psycopg import sql

    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _listed(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _open(location: str, *, create: bool) -> _Sqlite | _Postgres:
    return _Postgres(location) if is_postgres(location) else _Sqlite(Path(location), create=create)


def _hash(row: tuple[Any, ...]) -> int:
    return int.from_bytes(hashlib.sha256(repr(tuple(map(_plain, row))).encode()).digest())


class _Digest:
    """Rows as a count and an order-free sum of their hashes: the two ends may list
    them in another order (their collations differ), never other values."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def through(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        for row in rows:
            self.count += 1
            self.total = (self.total + _hash(row)) % _MOD
            yield row

    def of(self, rows: Iterable[tuple[Any, ...]]) -> tuple[int, int]:
        for _ in self.through(rows):
            pass
        return self.count, self.total


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def copy_store(
    source: str, dest: str, *, progress: Callable[[str, int], None] | None = None
) -> list[Copied]:
    """Copy every data table of `source` into the empty store `dest` and check that
    `dest` then holds the same rows, table by table; committed only if it does."""
    if source == dest:
        raise CopyRefused("FROM and TO are the same store")
    src = _open(source, create=False)
    try:
        dst = _open(dest, create=True)
    except BaseException:
        src.close()
        raise
    try:
        return _copy(src, dst, progress or (lambda table, rows: None))
    finally:
        src.close()
        dst.close()


def _copy(
    src: _Sqlite | _Postgres, dst: _Sqlite | _Postgres, progress: Callable[[str, int], None]
) -> list[Copied]:
    theirs, ours = src.tables(), dst.tables()
    differ = sorted(t for t in theirs if sorted(theirs[t]) != sorted(ours.get(t, [])))
    if differ:
        raise CopyRefused(
            f"the tables {', '.join(differ)} differ between {src.name} and {dst.name}"
        )
    full = {t: n for t in theirs if (n := dst.count(t))}
    if full:
        held = ", ".join(f"{t}: {n:,}" for t, n in sorted(full.items()))
        raise CopyRefused(f"{dst.name} already holds data ({held}): copy into an empty store")
    done: list[Copied] = []
    with src.snapshot(), dst.writing():
        for table, columns in sorted(theirs.items()):
            read = _Digest()

            def counted(rows: Iterable[tuple[Any, ...]], table: str = table) -> Iterator[Any]:
                for n, row in enumerate(rows, start=1):
                    if n % PROGRESS_EVERY == 0:
                        progress(table, n)
                    yield row

            dst.write(table, columns, read.through(counted(src.rows(table, columns))))
            dst.written(table)
            written = _Digest().of(dst.rows(table, columns))
            if written != (read.count, read.total):
                raise CopyRefused(
                    f"{table}: the {written[0]:,} rows written do not match the {read.count:,} "
                    "read; nothing was committed"
                )
            progress(table, read.count)
            done.append(Copied(table, read.count))
    return done
