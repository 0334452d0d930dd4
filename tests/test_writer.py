"""The store's single writer: one piece of work at a time on one connection, urgent work
first, and urgent work on an idle writer done at once on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from alertd.store import Writer
from alertd.store.sql import transaction


def _row(text: str) -> Callable[[sqlite3.Connection], str]:
    def write(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO counters (name, value) VALUES (?, 1)", (text,))
        return threading.current_thread().name

    return write


async def test_urgent_work_on_an_idle_writer_is_done_on_the_loop(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "a.db", synchronous="NORMAL")
    store = await writer.open()
    try:
        ran_on = await writer.call(_row("alarm"), store.conn, urgent=True)
        routine_on = await writer.call(_row("telemetry"), store.conn)
    finally:
        await writer.close()
    assert ran_on == threading.current_thread().name
    assert routine_on == "alertd-writer"  # bulk work keeps the loop free
    conn = sqlite3.connect(tmp_path / "a.db")
    assert [r[0] for r in conn.execute("SELECT name FROM counters ORDER BY rowid")] == [
        "alarm",
        "telemetry",
    ]


async def test_urgent_work_waits_for_the_job_the_thread_is_doing(tmp_path: Path) -> None:
    """Two users of one connection at once would corrupt a transaction: urgent work that
    arrives while the thread writes is queued (first in line), never run beside it."""
    writer = Writer(tmp_path / "a.db", synchronous="NORMAL")
    store = await writer.open()
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            conn.execute("INSERT INTO counters (name, value) VALUES ('batch', 1)")
            inside.set()
            release.wait(10)
        order.append("batch")

    def alarm(conn: sqlite3.Connection) -> None:
        _row("alarm")(conn)
        order.append("alarm")

    try:
        batch = asyncio.ensure_future(writer.call(slow, store.conn))
        await asyncio.to_thread(inside.wait, 10)
        urgent = asyncio.ensure_future(writer.call(alarm, store.conn, urgent=True))
        routine = asyncio.ensure_future(writer.call(_row("later"), store.conn))
        await asyncio.sleep(0)
        assert order == []  # the alarm is queued behind the transaction in progress
        release.set()
        await asyncio.gather(batch, urgent, routine)
        # and once the thread is idle again, urgent work is back on the loop
        assert await writer.call(_row("next"), store.conn, urgent=True) == "MainThread"
    finally:
        release.set()
        await writer.close()
    assert order == ["batch", "alarm"]
    conn = sqlite3.connect(tmp_path / "a.db")
    assert [r[0] for r in conn.execute("SELECT name FROM counters ORDER BY rowid")] == [
        "batch",
        "alarm",
        "later",
        "next",
    ]


async def test_a_cancelled_call_does_not_keep_urgent_work_off_the_loop(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "a.db", synchronous="NORMAL")
    store = await writer.open()
    inside, release = threading.Event(), threading.Event()

    def hold(_conn: sqlite3.Connection) -> None:
        inside.set()
        release.wait(10)

    try:
        held = asyncio.ensure_future(writer.call(hold, store.conn))
        await asyncio.to_thread(inside.wait, 10)
        gone = asyncio.ensure_future(writer.call(_row("never"), store.conn))
        await asyncio.sleep(0)
        gone.cancel()  # the caller went away before the thread reached it
        with contextlib.suppress(asyncio.CancelledError):
            await gone  # the cancellation reaches the queued work (a loop turn) ...
        await asyncio.sleep(0)
        release.set()  # ... before the thread is free to take it
        await held
        await writer.call(lambda: None)  # the thread has passed the cancelled one
        assert await writer.call(_row("alarm"), store.conn, urgent=True) == "MainThread"
    finally:
        release.set()
        await writer.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    assert [r[0] for r in conn.execute("SELECT name FROM counters")] == ["alarm"]


async def test_a_store_locked_by_another_process_never_blocks_the_loop(tmp_path: Path) -> None:
    """A command (`alertd prune`, a residents import) holding the write lock: the alarm's
    commit waits for it on the writer thread, while the loop goes on (MQTT, timers, sends
    already claimed, health), and is done once the lock is free."""
    writer = Writer(tmp_path / "a.db", synchronous="NORMAL")
    store = await writer.open()
    command = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    command.execute("BEGIN IMMEDIATE")
    command.execute("INSERT INTO counters (name, value) VALUES ('command', 1)")
    try:

        def alarm(conn: sqlite3.Connection) -> str:
            with transaction(conn):
                return _row("alarm")(conn)

        job = asyncio.ensure_future(writer.call(alarm, store.conn, urgent=True))
        for _ in range(3):
            await asyncio.sleep(0)  # the loop runs: the call did not hold it
        assert not job.done()
        command.execute("COMMIT")
        assert await job == "alertd-writer"
    finally:
        if command.in_transaction:
            command.execute("ROLLBACK")
        command.close()
        await writer.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    assert [r[0] for r in conn.execute("SELECT name FROM counters ORDER BY rowid")] == [
        "command",
        "alarm",
    ]
