"""A store written by an older alertd is brought up to date when it is opened, and what
it held is found again the same way."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from alertd.store import SqliteStore
from alertd.store import messages as db
from alertd.store.schema import MIGRATIONS
from alertd.store.sql import iso, transaction
from alertd.store.sqlite import _statements

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _older_store(path: Path, version: int) -> None:
    """A store as an alertd with the first `version` migrations left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)"
    )
    for number, migration in enumerate(MIGRATIONS[:version], start=1):
        for statement in _statements(migration.sqlite):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (number, migration.name, iso(NOW)))
    conn.close()


def _message(conn: sqlite3.Connection, mid: int, status: str, provider_id: str | None) -> None:
    conn.execute(
        "INSERT INTO messages (id, outbox_id, incident_id, channel, recipient, recipient_kind, "
        "recipient_ref, language, body, priority, status, due_at, provider_id, updated_at) "
        "VALUES (?, 1, 7, 'sms', ?, 'resident', '1', 'en', 'Fire', 1, ?, ?, ?, ?)",
        (mid, f"+8613800000{mid:03d}", status, iso(NOW), provider_id, iso(NOW)),
    )


def test_an_older_store_keeps_its_pending_and_sent_messages_findable(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    _older_store(path, len(MIGRATIONS) - 1)
    conn = sqlite3.connect(path, isolation_level=None)
    _message(conn, 1, "sent", "SM0001")
    _message(conn, 2, "pending", None)
    conn.close()

    store = SqliteStore(path)
    try:
        assert len(store.applied()) == len(MIGRATIONS)
        receipt = db.Receipt("SM0001", "delivered")
        assert db.apply_receipts(store.conn, [receipt], NOW) == [("sms", "delivered")]
        with transaction(store.conn):
            taken = db.take_due(store.conn, NOW, {"sms": (5, 0)}, 60.0)
        assert [m.id for m in taken] == [2]
        statuses = dict(store.conn.execute("SELECT id, status FROM messages"))
        assert statuses == {1: "delivered", 2: "sending"}
    finally:
        store.close()
