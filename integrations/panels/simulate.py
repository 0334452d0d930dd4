"""Replay a capture into a serial line or an alarm receiver: for demos, and for checking
a site's wiring before it goes live (`alertd simulate ...`)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from integrations.panels import sia_dc09


def capture_lines(path: Path) -> list[str]:
    """Lines of a capture file; blank lines and lines starting with # are skipped."""
    return [
        line.rstrip("\r\n")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def open_pty_link(link: Path) -> int:
    """A pseudo-terminal whose far end is reachable at `link` (as /dev/serial/by-id/...
    names a USB adapter). Returns the near end to write to."""
    near, far = os.openpty()
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.ttyname(far))
    tmp.replace(link)
    os.close(far)  # alertd opens it by the link
    return near


def write_lines(
    fd: int, lines: Iterable[str], ending: bytes, delay: float, echo: Callable[[str], None]
) -> None:
    for line in lines:
        os.write(fd, line.encode("ascii", "replace") + ending)
        echo(line)
        if delay:
            time.sleep(delay)


def dc09_frames(lines: Iterable[str], key: bytes | None = None) -> list[bytes]:
    """Capture lines `<SIA-DCS|ADM-CID|NULL> <account> [data]`, e.g.
    `ADM-CID 1234 1110 01 015` or `SIA-DCS 1234 Nri1/FA015`, as timestamped frames."""
    frames = []
    for seq, line in enumerate(lines, start=1):
        kind, account, *rest = line.split(maxsplit=2)
        data = f"#{account}|{rest[0]}" if rest else ""
        frames.append(
            sia_dc09.message(kind, seq % 10000, account, data, at=datetime.now(UTC), key=key)
        )
    return frames


async def send_dc09(
    host: str, port: int, frames: list[bytes], *, udp: bool = False, answer_within: float = 20.0
) -> list[bytes]:
    """Send frames one at a time, each waiting for its answer, as a panel does."""
    answers = []
    if udp:
        loop = asyncio.get_running_loop()
        for frame in frames:
            got: asyncio.Future[bytes] = loop.create_future()
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_OneAnswer, got), remote_addr=(host, port)
            )
            try:
                transport.sendto(frame)
                answers.append(await asyncio.wait_for(got, answer_within))
            finally:
                transport.close()
        return answers
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for frame in frames:
            writer.write(frame)
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.readuntil(b"\r"), answer_within))
    finally:
        writer.close()
    return answers


class _OneAnswer(asyncio.DatagramProtocol):
    def __init__(self, got: asyncio.Future[bytes]) -> None:
        self._got = got

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        if not self._got.done():
            self._got.set_result(data)
