"""Durable storage behind one narrow interface (SQLite today; PostgreSQL can follow)."""

from alertd.store.batch import Batch, DeadLetter, StateRow
from alertd.store.sqlite import Reader, SqliteStore, Writer

__all__ = ["Batch", "DeadLetter", "Reader", "SqliteStore", "StateRow", "Writer"]
