"""PostgreSQL as a store: the same schema as SQLite's from one migration registry, instances
that start together, and `alertd store copy` both ways, checked row for row (a real
PostgreSQL server started by the fixtures)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from alertd.events import Event, Kind, Location, Severity, State
from alertd.store import Batch, DeadLetter, SqliteStore
from alertd.store.copy import CopyRefused, _Postgres, _Sqlite, copy_store
from alertd.store.leases import Fenced
from alertd.store.postgres import PgStore, check_conninfo, shown
from alertd.store.schema import MIGRATIONS
from alertd.store.sql import dict_rows, transaction, unique_violation
from alertd.store.stores import Missing, open_reader
from tests.helpers import alertd

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _fill(path: Path, rows: int = 40) -> None:
    """Every data table of a SQLite store with `rows` rows of every kind of value it
    holds: Chinese text, NULLs, binary payloads (not UTF-8), large integers; events and
    dead letters through the daemon's own write path."""
    store = SqliteStore(path)
    store.commit(
        Batch(
            events=[
                Event(
                    id=i,
                    kind=Kind.FIRE_ALARM,
                    state=State.ACTIVE,
                    severity=Severity.CRITICAL,
                    device_id=f"smoke-{i}",
                    location=Location(site="hv", building="7", floor="3", unit="0301", zone="楼道"),
                    occurred_at=NOW,
                    received_at=NOW,
                    source="mqtt",
                    raw='{"smoke": true}',
                )
                for i in range(1, rows + 1)
            ],
            dead_letters=[
                DeadLetter(NOW, "mqtt", "not JSON", "zigbee2mqtt/x", "?", b"\xff\x00\xfe", "hv")
            ],
        )
    )
    conn = store.conn
    skip = {"migrations", "events", "dead_letters", "counters", "receipts"}
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r[0] not in skip and not r[0].startswith("sqlite_")
    ]
    for table in tables:
        info = list(conn.execute(f'PRAGMA table_info("{table}")'))
        for i in range(1, rows + 1):
            values = []
            for _, name, kind, notnull, _, key in info:
                if not notnull and not key and i % 3 == 0:
                    values.append(None)
                elif kind == "INTEGER":
                    values.append(i if name == "id" else i * 2**40)
                elif kind == "BLOB":
                    values.append(bytes([0, 255, i % 256]))
                else:
                    values.append(f"{name} 火警 {i}")
            marks = ", ".join("?" * len(values))
            columns = ", ".join(f'"{c[1]}"' for c in info)
            conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', values)
    store.close()


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if r[0] != "migrations" and not r[0].startswith("sqlite_")
    ]
    found = {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
    conn.close()
    return found


def test_a_new_postgresql_store_has_every_table_and_column_sqlite_has(
    tmp_path: Path, pg_url: str
) -> None:
    store = PgStore(pg_url)
    assert store.applied() == set(range(1, len(MIGRATIONS) + 1))
    store.close()
    lite, pg = _Sqlite(tmp_path / "a.db", create=True), _Postgres(pg_url)
    try:
        assert {t: sorted(c) for t, c in lite.tables().items()} == {
            t: sorted(c) for t, c in pg.tables().items()
        }
    finally:
        lite.close()
        pg.close()


def test_instances_starting_together_migrate_once(pg_url: str) -> None:
    failures: list[BaseException] = []

    def start() -> None:
        try:
            PgStore(pg_url).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM migrations ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_the_audit_trail_is_append_only_on_postgresql_too(pg_url: str) -> None:
    PgStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit (at, who, os_user, via, remote, action, detail) "
            "VALUES ('t', 'wang', 'root', 'cli', '', 'reveal_phones', 'flat 0301')"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit SET who = 'nobody'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit")


def test_a_store_goes_to_postgresql_and_back_with_every_row(tmp_path: Path, pg_url: str) -> None:
    first, back = tmp_path / "first.db", tmp_path / "back.db"
    _fill(first)
    seen: list[tuple[str, int]] = []
    there = copy_store(str(first), pg_url, progress=lambda t, n: seen.append((t, n)))
    assert {c.table: c.rows for c in there}["events"] == 40
    assert ("messages", 40) in seen
    again = copy_store(pg_url, str(back))
    assert [(c.table, c.rows) for c in again] == [(c.table, c.rows) for c in there]
    assert _rows(back) == _rows(first)

    # ids go on after the copied ones, as they would have in SQLite
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO timeline (incident_id, at, type, actor, text) "
            "VALUES (1, 't', 'note', 'wang', 'x') RETURNING id"
        ).fetchone()
    assert row == (41,)


def test_a_copy_into_a_store_that_holds_data_is_refused_and_writes_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    first = tmp_path / "first.db"
    _fill(first, rows=3)
    copy_store(str(first), pg_url)
    second = tmp_path / "second.db"
    _fill(second, rows=5)
    with pytest.raises(CopyRefused, match=r"already holds data \(.*events: 3"):
        copy_store(str(second), pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def test_a_copy_that_does_not_check_out_commits_nothing(tmp_path: Path, pg_url: str) -> None:
    """A destination that changes what it is given (here a trigger someone left on it)
    fails the row-for-row check: nothing is committed, and the message names the table."""
    first = tmp_path / "first.db"
    _fill(first, rows=3)
    PgStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$;"
            "CREATE TRIGGER shout BEFORE INSERT ON residents FOR EACH ROW EXECUTE FUNCTION shout()"
        )
    with pytest.raises(CopyRefused, match=r"residents: the 3 rows written do not match"):
        copy_store(str(first), pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_store_copy_on_the_command_line(tmp_path: Path, pg_url: str) -> None:
    first = tmp_path / "first.db"
    _fill(first, rows=2)
    done = alertd("store", "copy", str(first), pg_url)
    assert done.returncode == 0, done.stderr
    assert "every table checked row for row" in done.stdout
    assert "  events: 2 rows" in done.stderr
    missing = alertd("store", "copy", str(tmp_path / "nothing.db"), pg_url)
    assert missing.returncode == 1
    assert f"no store at {tmp_path / 'nothing.db'}" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_a_connection_string_is_checked_and_its_password_never_shown() -> None:
    several = "postgresql://alertd@db1,db2/alertd?target_session_attrs=read-write"
    assert check_conninfo(several) is None
    assert check_conninfo("host=db1 dbname=alertd") is None
    wrong = check_conninfo("postgresql://alertd:s3cret@db1/alertd?sslmod=require")
    assert wrong is not None
    assert "sslmod" in wrong
    assert "s3cret" not in wrong
    assert shown("postgresql://alertd:s3cret@db1:5433,db2/alertd") == (
        "postgresql://alertd@db1:5433,db2/alertd"
    )
    assert (
        shown("host=db1 port=5433 password=s3cret dbname=alertd") == "postgresql://db1:5433/alertd"
    )


def test_a_bad_storage_url_in_the_configuration_names_the_line_not_the_password(
    tmp_path: Path,
) -> None:
    (tmp_path / "alertd.yaml").write_text(
        "site: {name: Harbour View}\n"
        "storage:\n"
        "  url: postgresql://alertd:s3cret@db1/alertd?sslmod=require\n"
    )
    done = alertd("check", "--config", str(tmp_path / "alertd.yaml"))
    assert done.returncode == 2
    assert "alertd.yaml:3" in done.stderr
    assert "storage.url" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout


def test_a_percent_sign_in_a_statement_is_text_with_values_or_without(pg_url: str) -> None:
    """The store's statements are written with `?` for sqlite3; psycopg reads `%` as a
    placeholder only when it is given values."""
    from alertd.store.postgres import PgConn

    with psycopg.connect(pg_url, autocommit=True) as raw:
        conn = PgConn(raw)
        assert conn.execute("SELECT '50%'").fetchone() == ("50%",)
        assert conn.execute("SELECT ? || '%' || '?'", ["50"]).fetchone() == ("50%?",)


def test_a_reader_of_a_database_alertd_never_made_says_so_and_writes_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    secret = pg_url.replace("alertd@", "alertd:hunter2@")
    with pytest.raises(Missing, match="no alertd store in postgresql://alertd@") as found:
        open_reader(tmp_path / "unused.db", secret)
    assert "hunter2" not in str(found.value)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('migrations')").fetchone() == (None,)
    PgStore(pg_url).close()
    reader = open_reader(tmp_path / "unused.db", pg_url)
    try:  # it only looks
        with pytest.raises(sqlite3.DatabaseError, match="read-only transaction"):
            reader.conn.execute("DELETE FROM events")
        assert reader.max_event_id() == 0
    finally:
        reader.close()
    assert not (tmp_path / "unused.db").exists()


def test_a_failure_of_postgresql_is_a_store_error_with_the_server_words(pg_url: str) -> None:
    store = PgStore(pg_url)
    try:
        store.conn.execute("INSERT INTO counters VALUES ('x', 1)")
        with pytest.raises(sqlite3.IntegrityError) as duplicate:
            store.conn.execute("INSERT INTO counters VALUES ('x', 1)")
        assert unique_violation(duplicate.value)
        with pytest.raises(sqlite3.DatabaseError, match='relation "nowhere" does not exist'):
            store.conn.execute("SELECT * FROM nowhere")
    finally:
        store.close()


def test_a_write_transaction_s_statements_answer_as_sqlite3_s_do(pg_url: str) -> None:
    """Pipelined inside a transaction: a statement's columns, row count, rows and errors
    read as without the pipeline; a failed statement rolls the whole transaction back."""
    store = PgStore(pg_url)
    conn = store.conn
    try:
        with transaction(conn):
            conn.execute("INSERT INTO counters VALUES ('a', 1)")
            conn.execute("INSERT INTO counters VALUES ('b', 2)")
            assert conn.execute("UPDATE counters SET value = value + 1").rowcount == 2
            assert dict_rows(conn, "SELECT name, value FROM counters ORDER BY name") == [
                {"name": "a", "value": 2},
                {"name": "b", "value": 3},
            ]
            assert list(conn.execute("SELECT name FROM counters")) == [("a",), ("b",)]
            assert conn.execute("SELECT count(*) FROM counters").fetchone() == (2,)

        def three_rows_one_a_duplicate() -> None:
            with transaction(conn):
                for name in ("c", "a", "d"):
                    conn.execute("INSERT INTO counters VALUES (?, 1)", (name,))

        with pytest.raises(sqlite3.IntegrityError):
            three_rows_one_a_duplicate()
        assert not conn.in_transaction
        assert conn.execute("SELECT name FROM counters ORDER BY 1").fetchall() == [("a",), ("b",)]
    finally:
        store.close()


def test_a_write_outside_a_transaction_on_a_fenced_connection_holds_the_lease_too(
    pg_url: str,
) -> None:
    """A single statement (a lane's state, a reply's note) from an owner that lost its
    lease changes nothing, as a transaction's writes do; one that holds it goes in."""
    store = PgStore(pg_url)
    conn = store.conn
    try:
        conn.execute(
            "INSERT INTO site_leases (site, owner, epoch, expires_at, acquired_at) "
            "VALUES ('*', 'me', 2, now() + interval '1 minute', now())"
        )
        conn.fence = ("*", "me", 2)  # type: ignore[attr-defined]
        conn.execute("INSERT INTO counters VALUES ('held', 1)")
        assert conn.execute("UPDATE counters SET value = 2 WHERE name = 'held'").rowcount == 1
        conn.fence = ("*", "me", 1)  # type: ignore[attr-defined]  # an epoch taken over since
        with pytest.raises(Fenced, match="no longer owns \\* at epoch 1"):
            conn.execute("INSERT INTO counters VALUES ('lost', 1)")
        assert not conn.in_transaction
        assert conn.execute("SELECT name FROM counters").fetchall() == [("held",)]
    finally:
        store.close()
