"""A panel's serial line (or serial-over-IP `socket://`), read as lines, reopened when lost.

When a USB adapter is unplugged or the far end of a pseudo-terminal closes, pyserial
raises SerialException (a socket gives EOF instead): either way the link is down, the
partial line in the buffer is lost (never taken for a whole one), and the link is
reopened with backoff until the device comes back (use a stable path such as
/dev/serial/by-id/...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import serial
import serial_asyncio_fast

from integrations.panels.spec import PanelConfig

log = logging.getLogger(__name__)

PARITY = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
RECONNECT_MAX_S = 30.0


class SerialLink:
    def __init__(
        self,
        name: str,
        config: PanelConfig,
        on_line: Callable[[bytes], None],
        on_bad: Callable[[str, bytes], None],
        on_down: Callable[[str], None],
    ) -> None:
        self.name = name
        self.config = config
        self._on_line = on_line
        self._on_bad = on_bad
        self._on_down = on_down
        #: how many times the port was opened
        self.opened = 0
        self.connected = asyncio.Event()
        self._last_down = ""

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                reader, writer = await self._open()
            except Exception as exc:
                # failure to open or configure the port is this link down, never the daemon
                self._down(f"cannot open {self.config.port}: {type(exc).__name__}: {exc}")
            else:
                self.opened += 1
                self._last_down = ""
                delay = 0.2
                log.info("panel %s: %s open", self.name, self.config.port)
                self.connected.set()
                try:
                    reason = await self._read(reader)
                except (serial.SerialException, OSError) as exc:
                    reason = f"serial link lost: {exc}"
                finally:
                    self.connected.clear()
                    with contextlib.suppress(Exception):
                        writer.close()
                self._down(reason)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        framing = self.config.framing
        return await serial_asyncio_fast.open_serial_connection(
            url=self.config.port,
            baudrate=self.config.baudrate,
            bytesize=int(framing[0]),
            parity=PARITY[framing[1]],
            stopbits=int(framing[2]),
            limit=self.config.max_line,
        )

    async def _read(self, reader: asyncio.StreamReader) -> str:
        ending = self.config.line_ending.encode()
        overlong = b""
        while True:
            try:
                line = await reader.readuntil(ending)
            except asyncio.LimitOverrunError as exc:
                skipped = await reader.readexactly(exc.consumed)
                overlong = (overlong + skipped)[: self.config.max_line]  # kept for inspection
                continue
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self._on_bad("partial line lost when the link closed", exc.partial)
                return "serial link closed (end of stream)"
            if overlong:
                self._on_bad(
                    f"line longer than max_line ({self.config.max_line} bytes)", overlong + line
                )
                overlong = b""
                continue
            # a CR LF panel may still send a lone LF or CR: strip any line ending
            self._on_line(line.rstrip(b"\r\n"))

    def _down(self, reason: str) -> None:
        """Report each outage once, not each failed attempt to reopen the port."""
        if reason != self._last_down:
            log.warning("panel %s: %s (retrying with backoff)", self.name, reason)
            self._on_down(reason)
        self._last_down = reason
