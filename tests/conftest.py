from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertd.store.events import Events
from tests.broker import Broker
from tests.postgres import Cluster

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for tests that do not stop it; hands out plain data (host, port)."""
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker this test may stop, kill and restart."""
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


def fixture_messages(name: str) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / name).read_text())
    return list(data["messages"])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server for the tests that do not stop it."""
    c = Cluster().start()
    yield c
    c.remove()


@pytest.fixture
def pg_url(pg_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new empty database on the shared server, dropped after the test (plain data: a URL)."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield pg_cluster.url(name)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Events]:
    """A new store on each engine in turn: a SQLite file, a database on the PostgreSQL
    server. Tests that take it run on both."""
    from alertd.store import SqliteStore
    from alertd.store.postgres import PgStore

    opened: Events = (
        SqliteStore(tmp_path / "alertd.db")
        if request.param == "sqlite"
        else PgStore(request.getfixturevalue("pg_url"))
    )
    yield opened
    opened.close()
