from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker

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
