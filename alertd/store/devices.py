"""What the store knows of each device now: when it was last heard, its last values,
the conditions it holds (in alarm, offline since). The write side is the ingest's batch
commit (alertd/store/sqlite.py)."""

from __future__ import annotations

import sqlite3


def seen(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(device, last seen, last values as JSON)."""
    return conn.execute('SELECT device_id, last_seen, "values" FROM device_seen').fetchall()


def active(conn: sqlite3.Connection, kind: str | None = None) -> list[tuple[str, str, str]]:
    """(device, kind, since) of each condition a device holds now, oldest first."""
    where, args = ("AND kind = ?", (kind,)) if kind else ("", ())
    return conn.execute(
        f"SELECT device_id, kind, since FROM device_state WHERE active = 1 {where} ORDER BY since",
        args,
    ).fetchall()
