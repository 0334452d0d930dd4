"""The store a configuration names, opened as the commands and the console use it: for
writing (brought up to date first) or for reading only, on either engine. Failures are
StoreError, in words that name the store without its password."""

from __future__ import annotations

from pathlib import Path

from alertd.store.events import Events
from alertd.store.sql import Missing
from alertd.store.sqlite import Reader, SqliteStore

__all__ = ["Missing", "open_reader", "open_store", "where"]


def where(path: Path, url: str | None) -> str:
    """The store as messages name it: the file, or the database without its password."""
    if url is None:
        return str(path)
    from alertd.store.postgres import shown

    return shown(url)


def open_store(path: Path, url: str | None, *, create: bool = True) -> Events:
    """The store for writing, migrated: the SQLite file, or PostgreSQL. `create`: made
    when missing (an import before the first run); else Missing (a staff command, the
    console: alertd makes the store, they only use it)."""
    if url is None:
        if not create and not path.exists():
            raise Missing(f"no store at {path} (has alertd run yet?)")
        return SqliteStore(path)
    from alertd.store.postgres import PgStore

    return PgStore(url, create=create)


def open_reader(path: Path, url: str | None) -> Reader:
    """The store for reading only (never migrated, never written): Missing when alertd has
    not made it yet."""
    if url is None:
        if not path.exists():
            raise Missing(f"no store at {path} (has alertd run yet?)")
        return Reader(SqliteStore.reader(path))
    from alertd.store.postgres import PgConn, connect, refuse_unmade

    conn = PgConn(connect(url, read_only=True))
    refuse_unmade(conn, url)
    return Reader(conn)  # type: ignore[arg-type]  # sqlite3's shape
