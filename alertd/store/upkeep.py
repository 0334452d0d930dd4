"""Keeping the store: an online backup, consistent while alertd runs, and a retention
that never touches an incident record younger than `storage.keep_incidents_days`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from alertd.store.sql import among, iso, postgres
from alertd.store.sqlite import private


def backup(source: Path, dest: Path, progress: Callable[[int, int], None] | None = None) -> int:
    """SQLite's online backup API from a read-only connection: a consistent copy while
    the daemon writes. Returns the pages copied. The copy is private like the store."""
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dest.parent.mkdir(parents=True, exist_ok=True)
    private(dest)
    target = sqlite3.connect(dest)
    try:
        pages = 0

        def step(status: int, remaining: int, total: int) -> None:
            nonlocal pages
            pages = total
            if progress is not None:
                progress(total - remaining, total)

        reader.backup(target, pages=1024, progress=step)
        ok = target.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise sqlite3.DatabaseError(f"the copy does not check out: {ok}")
        return pages
    finally:
        target.close()
        reader.close()


@dataclass(frozen=True, slots=True)
class Pruned:
    incidents: int
    events: int
    dead_letters: int


def prune(
    conn: sqlite3.Connection,
    now: datetime,
    keep_incidents_days: int,
    keep_events_days: int,
    *,
    dry_run: bool = False,
) -> Pruned:
    """Closed or resolved incidents older than the incident retention go with their
    timeline, outbox and messages; raw events older than the event retention that no
    kept timeline refers to, and old dead letters, go too."""
    incidents_before = iso(now - timedelta(days=keep_incidents_days))
    events_before = iso(now - timedelta(days=keep_events_days))
    conn.execute("BEGIN" if postgres(conn) else "BEGIN IMMEDIATE")
    try:
        old = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM incidents WHERE status IN ('closed', 'resolved') "
                "AND opened_at < ? AND coalesce(resolved_at, opened_at) < ?",
                (incidents_before, incidents_before),
            )
        ]
        if old:
            for table in ("timeline", "outbox", "messages", "timers"):
                where, args = among(conn, "incident_id", old)
                conn.execute(f"DELETE FROM {table} WHERE {where}", args)
            where, args = among(conn, "id", old)
            conn.execute(f"DELETE FROM incidents WHERE {where}", args)
        events = conn.execute(
            "DELETE FROM events WHERE received_at < ? AND decided = 1 AND id NOT IN "
            "(SELECT event_id FROM timeline WHERE event_id IS NOT NULL) AND id NOT IN "
            "(SELECT event_id FROM device_state)",
            (events_before,),
        ).rowcount
        dead = conn.execute(
            "DELETE FROM dead_letters WHERE received_at < ?", (events_before,)
        ).rowcount
        conn.execute("ROLLBACK" if dry_run else "COMMIT")  # a dry run only counts
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full)
            conn.execute("ROLLBACK")
        raise
    return Pruned(len(old), events, dead)
