"""Durable storage: every SQL statement alertd makes lives in this package, grouped by
aggregate (events.py and devices.py: events and devices; incidents.py: incidents, timers,
timeline and staff commands; messages.py: the outbox and delivery; directory.py:
residents; accounts.py: console accounts and the audit trail; analytics.py: the
supervisor's figures), on SQLite (sqlite.py) or PostgreSQL (postgres.py). The rest of
alertd hands a `Conn` through and knows no dialect."""

from alertd.store.batch import Batch, DeadLetter, StateRow
from alertd.store.sql import Conn, StoreError
from alertd.store.sqlite import Reader, SqliteStore, Writer

__all__ = [
    "Batch",
    "Conn",
    "DeadLetter",
    "Reader",
    "SqliteStore",
    "StateRow",
    "StoreError",
    "Writer",
]
