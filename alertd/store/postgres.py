"""PostgreSQL as the shared store of several alertd instances (psycopg 3).

`storage.url` takes every form libpq takes: a URL or `key=value` words, several hosts with
`target_session_attrs=read-write` (the primary, whichever it is after a failover), the
password from `PGPASSWORD` or `~/.pgpass` rather than the file."""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alertd.store.events import Events
from alertd.store.schema import MIGRATIONS, POSTGRES_BASELINE, POSTGRES_BASELINE_VERSION
from alertd.store.sql import Missing, iso

if TYPE_CHECKING:
    import psycopg

#: a session left inside a transaction this long is ended by the server: its client is gone
#: (a network cut, a paused VM), and the rows it locked (its lease row, held FOR SHARE by
#: every write) would keep a takeover waiting until TCP gave up, hours later; alertd's
#: transactions are bursts of a few milliseconds
IDLE_IN_TRANSACTION_S = 5.0

#: one key for the instances that start together and would migrate at once
MIGRATION_LOCK = 0x616C657274  # "alert"


def is_postgres(location: str) -> bool:
    """A PostgreSQL connection string (either libpq form), not a SQLite file's path."""
    text = location.strip()
    return text.startswith(("postgresql://", "postgres://")) or (
        "=" in text and "/" not in text.split("=", 1)[0]
    )


def check_conninfo(url: str) -> str | None:
    """What is wrong with `url` as a libpq connection string, in words that never repeat
    its password; None when libpq can read it."""
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError, with libpq's own words
        words = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        secret = _password(url)
        return words.replace(secret, "***") if secret else words
    return None


def shown(url: str) -> str:
    """`url` as logs and commands may print it: who, where and which database, no password."""
    from psycopg import conninfo

    try:
        parts = conninfo.conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unreadable connection string)"
    hosts = str(parts.get("host", "localhost")).split(",")
    ports = str(parts.get("port", "")).split(",")
    if len(ports) == 1:  # libpq: one port for every host
        ports *= len(hosts)
    where = ",".join(f"{h}:{p}" if p else h for h, p in zip(hosts, ports, strict=False))
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{where}/{parts.get('dbname', '')}"


def _password(url: str) -> str | None:
    from psycopg import conninfo

    try:
        value = conninfo.conninfo_to_dict(url).get("password")
    except Exception:
        return None
    return str(value) if value else None


def connect(url: str, *, read_only: bool = False, name: str = "alertd") -> psycopg.Connection[Any]:
    """A session in autocommit, as the store's statements expect (they begin their own
    transactions); `read_only`: every transaction of it is (the reading commands');
    `name`: its application_name (an instance's own: see leases.end_sessions)."""
    import psycopg

    with as_store_errors():
        conn = psycopg.connect(url, autocommit=True, application_name=name)
        try:  # SETs, not `options`, which would replace the url's own
            conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S:g}s'")
            if read_only:
                conn.execute("SET default_transaction_read_only = on")
        except BaseException:
            conn.close()
            raise
    return conn


def refuse_unmade(conn: PgConn, url: str) -> None:
    """Missing (the connection closed) when alertd has not made its store in that
    database: a command or the console never makes it in alertd's place."""
    try:
        made = conn.execute("SELECT to_regclass('migrations')").fetchone() != (None,)
    except BaseException:
        conn.close()
        raise
    if not made:
        conn.close()
        raise Missing(f"no alertd store in {shown(url)} (has alertd run yet?)")


#: a statement that changes rows (what a fenced connection never runs outside a transaction)
_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def _format(statement: str) -> str:
    """A statement written for both engines (`?` placeholders) in psycopg's form (`%s`,
    and `%%` for a literal percent sign); quoted text and names are left as they are."""
    out: list[str] = []
    quote = ""
    for ch in statement:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        if ch == "%":
            out.append("%%")
            continue
        out.append(ch)
    return "".join(out)


@contextlib.contextmanager
def as_store_errors() -> Iterator[None]:
    """psycopg's failures as sqlite3's classes (StoreError), the cause kept: the console
    and the commands catch one kind of failure, whichever engine holds the store."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        kind: type[sqlite3.Error] = sqlite3.DatabaseError
        if isinstance(exc, psycopg.IntegrityError):
            kind = sqlite3.IntegrityError
        elif isinstance(exc, psycopg.OperationalError | psycopg.errors.QueryCanceled):
            kind = sqlite3.OperationalError
        error = kind(str(exc).strip() or type(exc).__name__)
        error.sqlstate = exc.sqlstate  # type: ignore[attr-defined]
        raise error from exc


class PgConn:
    """A PostgreSQL connection that takes the store's statements as sqlite3 takes them:
    `?` placeholders, transactions begun and ended by the statements themselves
    (autocommit, like sqlite3 with `isolation_level=None`), rows as tuples, failures as
    sqlite3's classes."""

    dialect = "postgres"

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        #: (site, instance, epoch) this connection writes under: every transaction it
        #: begins holds that lease first (see `fenced`), or fails
        self.fence: tuple[str, str, int] | None = None
        self._trace: Callable[[str], None] | None = None
        self._pipeline: psycopg.Pipeline | None = None

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Statements sent without waiting for each one's answer (libpq's pipeline mode):
        a transaction of a dozen statements pays one round trip for them, not twelve. A
        result read (a row, a row count) waits for what was sent before it; an error is
        raised there or when the block ends."""
        with as_store_errors(), self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    def set_trace_callback(self, trace: Callable[[str], None] | None) -> None:
        """Each statement as it runs, with its values after it (sqlite3's hook fills
        them in): tests count them."""
        self._trace = trace

    def fenced(self) -> None:
        """Inside a transaction just begun: the lease this connection writes under is
        still held at its epoch, and stays so until the commit; Fenced otherwise."""
        if self.fence is None:
            return
        site, me, epoch = self.fence
        row = self.execute(
            "SELECT 1 FROM site_leases WHERE site = ? AND owner = ? AND epoch = ? "
            "AND expires_at > clock_timestamp() FOR SHARE",
            (site, me, epoch),
        ).fetchone()
        if row is None:
            from alertd.store.leases import Fenced

            raise Fenced(f"{me} no longer owns {site} at epoch {epoch}: nothing written")

    def execute(self, statement: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        if self.fence is not None and _WRITES.match(statement) and not self.in_transaction:
            return self._fenced_alone(statement, args)
        if self._trace is not None:
            self._trace(f"{statement} {list(args)!r}" if args else statement)
        with as_store_errors():
            if not args:  # psycopg reads placeholders (and `%%`) only when given values
                cur = self.raw.execute(statement.encode())
            else:
                cur = self.raw.execute(_format(statement).encode(), args)
        return cur if self._pipeline is None else _Answered(cur, self)  # type: ignore[return-value]

    def _fenced_alone(self, statement: str, args: Sequence[Any]) -> psycopg.Cursor[Any]:
        """A write outside a transaction on a fenced connection (a lane's state, a reply's
        note): in a transaction of its own, which holds the lease first as every write
        transaction of the owner does."""
        from alertd.store.sql import transaction

        with transaction(self):  # type: ignore[arg-type]
            return self.execute(statement, args)

    def answered(self) -> None:
        """Inside `pipelined`: what was sent so far has been answered (nothing to wait
        for outside it)."""
        if self._pipeline is not None:
            with as_store_errors():
                self._pipeline.sync()

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        with as_store_errors():
            cur.executemany(_format(statement).encode(), list(rows))
        return cur

    @property
    def broken(self) -> bool:
        """The server or the network closed it: a new connection is needed."""
        return bool(self.raw.closed)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


class _Answered:
    """A cursor of a pipelined statement: what it says (its row count, its columns) read
    once the answer is in; psycopg's fetches wait for it themselves."""

    FETCHES = frozenset({"fetchone", "fetchall", "fetchmany"})

    def __init__(self, cur: psycopg.Cursor[Any], conn: PgConn) -> None:
        self._cur, self._conn = cur, conn

    def __iter__(self) -> Iterator[Any]:
        with as_store_errors():
            return iter(self._cur.fetchall())

    def __getattr__(self, name: str) -> Any:
        if name not in self.FETCHES:
            self._conn.answered()
        return getattr(self._cur, name)


class PgStore(Events):
    """An open PostgreSQL store, brought up to date when opened (the first instance to
    start migrates; the others wait for it and find nothing left to do)."""

    def __init__(self, url: str, *, create: bool = True, name: str = "alertd") -> None:
        """`create`: the store is made in an empty database; else Missing there; `name`:
        the session's application_name."""
        self.url = url
        self.raw = connect(url, name=name)
        self.conn = PgConn(self.raw)  # type: ignore[assignment]  # sqlite3's shape
        if not create:
            refuse_unmade(self.conn, url)  # type: ignore[arg-type]
        try:
            with as_store_errors():
                self._migrate()
        except BaseException:
            self.raw.close()
            raise

    def _migrate(self) -> None:
        c = self.raw
        with c.transaction():
            c.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            c.execute(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version < POSTGRES_BASELINE_VERSION:
                continue  # in the baseline
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if version in self.applied():  # another instance was first
                    continue
                now = iso(datetime.now(UTC))
                if version == POSTGRES_BASELINE_VERSION:
                    c.execute(POSTGRES_BASELINE.encode())
                    with c.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO migrations VALUES (%s, %s, %s)",
                            [(n, m.name, now) for n, m in enumerate(MIGRATIONS[:version], start=1)],
                        )
                    continue
                if migration.postgres:
                    c.execute(migration.postgres.encode())
                c.execute(
                    "INSERT INTO migrations VALUES (%s, %s, %s)", (version, migration.name, now)
                )

    def applied(self) -> set[int]:
        return {row[0] for row in self.raw.execute("SELECT version FROM migrations")}
