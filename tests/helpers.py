"""Small builders shared by the tests."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from alertd.devices import Device, parse_kind
from alertd.events import Location
from integrations.mqtt.profiles import Profile, build_profiles
from integrations.mqtt.profiles.spec import ProfileSpec

SHANGHAI = ZoneInfo("Asia/Shanghai")


def device(
    device_id: str = "dev-1",
    profile: str = "zigbee2mqtt",
    topic: str = "zigbee2mqtt/flat_3b/leak_kitchen",
    *,
    building: str = "3",
    unit: str = "1203",
    heartbeat_s: float | None = None,
    kind: str = "",
    availability_topic: str = "",
) -> Device:
    return Device(
        device_id=device_id,
        profile=profile,
        topic=topic,
        location=Location("Harbour View", building, "12", unit, "kitchen"),
        heartbeat_s=heartbeat_s,
        kind=parse_kind(kind) if kind else None,
        availability_topic=availability_topic,
    )


def profiles(specs: dict[str, dict[str, object]] | None = None) -> dict[str, Profile]:
    parsed = {name: ProfileSpec.model_validate(spec) for name, spec in (specs or {}).items()}
    return build_profiles(parsed, SHANGHAI if specs is not None else UTC)


def expand_now(conn: Any, *args: Any) -> set[str]:
    """The delivery stage's expansion in a transaction of its own (the dispatcher runs it
    inside the commit that also claims)."""
    from alertd.outbox.expand import expand
    from alertd.store.sql import transaction

    with transaction(conn):
        return expand(conn, *args)


def alertd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`alertd ARGS` as its own process, as people type it."""
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`alertd run` as its own process, as a service starts it, its output into `log`."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "alertd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Until `predicate()` holds (another process's doing: a log line, a stored row)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def signed_post(base: str, public: str, token: str, path: str, form: dict[str, str]) -> str:
    """A form posted to alertd's callbacks at `base` as Twilio posts it: signed with the
    account's `token` against the `public` URL alertd is reached at."""
    import aiohttp
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(token).compute_signature(public + path, form)
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + path, data=form, headers={"X-Twilio-Signature": signature}) as answer,
    ):
        assert answer.status == 200, await answer.text()
        return await answer.text()


async def serve_locally(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` served on a free loopback port (a fake provider's, a robot's): its runner,
    to clean up, and the port. A request a fake holds unanswered (a provider that hangs)
    is cut at cleanup, not waited for."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
