"""The store a configuration names, opened as the commands and the console use it: for
writing (brought up to date first) or for reading only, on either engine. Failures are
StoreError, in words that name the store without its password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alertd.store.events import Events
from alertd.store.sqlite import Reader, SqliteStore


class Missing(sqlite3.OperationalError):
    """There is no store there yet (alertd has not run against it)."""


def where(path: Path, url: str | None) -> str:
    """The store as messages name it: the file, or the database without its password."""
    if url is None:
        return str(path)
    from alertd.store.postgres import shown

    return shown(url)


def open_store(path: Path, url: str | None) -> Events:
    """The store for writing, migrated: the SQLite file (made when missing), or PostgreSQL."""
    if url is None:
        return SqliteStore(path)
    from alertd.store.postgres import PgStore, as_store_errors

    with as_store_errors():
        return PgStore(url)


def open_reader(path: Path, url: str | None) -> Reader:
    """The store for reading only (never migrated, never written): Missing when alertd has
    not made it yet."""
    if url is None:
        if not path.exists():
            raise Missing(f"no store at {path} (has alertd run yet?)")
        return Reader(SqliteStore.reader(path))
    from alertd.store.postgres import PgConn, as_store_errors, connect

    with as_store_errors():
        raw = connect(url, read_only=True)
    conn = PgConn(raw)
    try:
        made = conn.execute("SELECT to_regclass('migrations')").fetchone() != (None,)
    except BaseException:
        conn.close()
        raise
    if not made:
        conn.close()
        raise Missing(f"no alertd store in {where(path, url)} (has alertd run yet?)")
    return Reader(conn)  # type: ignore[arg-type]  # sqlite3's shape
