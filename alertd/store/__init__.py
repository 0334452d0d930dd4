"""Durable storage: every SQL statement alertd makes lives in this package, grouped by
aggregate (sqlite.py: events and devices; incidents.py: incidents, timers, timeline and
staff commands; messages.py: the outbox and delivery; directory.py: residents;
accounts.py: console accounts and the audit trail; analytics.py: the supervisor's
figures). The rest of alertd hands a `Conn` through and knows no dialect."""

import sqlite3

from alertd.store.batch import Batch, DeadLetter, StateRow
from alertd.store.sqlite import Reader, SqliteStore, Writer

#: a connection to the store, as the statements here take it
Conn = sqlite3.Connection
#: a failure of the store (busy or broken file, full disk)
StoreError = sqlite3.Error

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
