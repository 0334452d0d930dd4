"""Benchmarks: `make bench`. Each module runs with `python -m bench.<name> [--quick]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alertd.directory.residents import Resident
    from integrations.twilio.sink import TwilioSink


def residents_of(count: int, building: str, site: str = "HV") -> list[Resident]:
    """`count` residents of one building over 30 floors, every tenth vulnerable."""
    from alertd.directory.residents import Resident

    return [
        Resident(
            building,
            str(n % 30),
            f"{n % 30}{n:05d}",
            f"R{n}",
            f"+86138{n:08d}",
            "zh",
            n % 10 == 0,
            site=site,
        )
        for n in range(count)
    ]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark has: --quick, a short run."""
    found = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    found.add_argument("--quick", action="store_true", help="a short run")
    return found


def quick_flag(doc: str | None) -> bool:
    return bool(parser(doc).parse_args().quick)


def store_flags(doc: str | None) -> tuple[bool, bool]:
    """--quick, and --postgres: the store on PostgreSQL instead of SQLite."""
    found = parser(doc)
    found.add_argument(
        "--postgres",
        action="store_true",
        help="alertd on a PostgreSQL store (a throwaway cluster with fsync on, its defaults)",
    )
    options = found.parse_args()
    return bool(options.quick), bool(options.postgres)


@contextlib.contextmanager
def bench_store(postgres: bool) -> Iterator[str | None]:
    """None (alertd's SQLite file), or the URL of a database in a throwaway PostgreSQL
    cluster (durable, as a server in production), removed afterwards; the run's output
    says which."""
    print(f"store: {'PostgreSQL (fsync on, its defaults)' if postgres else 'SQLite (FULL)'}")
    if not postgres:
        yield None
        return
    from tests.postgres import Cluster

    cluster = Cluster(durable=True).start()
    try:
        yield cluster.url()
    finally:
        cluster.remove()


def storage_line(url: str | None) -> str:
    """The configuration's `storage:` line: SQLite durable (FULL), or PostgreSQL at `url`."""
    if url is None:
        return "storage: {path: alertd.db, synchronous: FULL}\n"
    return f"storage: {{url: '{url}'}}\n"


def rss_mib(pid: int | str = "self") -> float:
    """A process's resident memory (this one's by default), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def subscribed(port: int, within: float = 60) -> None:
    """Until alertd's /healthz (its `http:` server on `port`) says MQTT is ok: connected
    with every subscription confirmed. The broker drops a QoS 1 message on a topic nobody
    has subscribed to yet, and the log says "connected" before the subscriptions."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            try:
                async with session.get(url) as answer:
                    parts = (await answer.json())["parts"]
                    if {"name": "mqtt", "state": "ok", "detail": ""} in parts:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.05)  # another process: polled


def q(values: Sequence[float], p: int) -> float:
    """The p-th percentile (1-99) of values, as every benchmark reports it."""
    if len(values) < 2:  # none (nothing arrived: a run that failed) or one
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def fake_twilio_sms(base_url: str) -> dict[str, TwilioSink]:
    """An SMS sink with the real twilio SDK, talking to the local fake Twilio at base_url."""
    from pydantic import SecretStr

    from alertd.config import TwilioConfig
    from integrations.twilio.sink import TwilioSink

    twilio = TwilioConfig(
        account_sid="AC" + "0" * 32,
        auth_token=SecretStr("x"),
        from_number="+15005550006",
        api_base_url=base_url,
    )
    return {"sms": TwilioSink(twilio, "sms")}


__all__: list[str] = ["fake_twilio_sms", "q", "quick_flag"]
