"""A SIA DC-09 alarm receiver on TCP and UDP, as a central station runs one.

Each frame is answered: ACK once what it carries is committed (so a panel that gets no
ACK sends again and nothing is lost), NAK for a frame that fails its CRC, length,
decryption or timestamp window (with our time, so that the panel can correct its clock),
DUH for a valid frame whose content we cannot use. A NULL frame is the account's
supervision heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from alertd.aio import within
from alertd.clock import Clock
from alertd.ingest.report import Receipt
from integrations.panels import sia_dc09
from integrations.panels.signal import FrameError
from integrations.panels.source import PanelSource
from integrations.panels.spec import ReceiverConfig

log = logging.getLogger(__name__)

ACK_WAIT_S = 15.0  # panels wait about 20 s for an answer before sending again
#: bad frames from one peer within this share one dead letter
REJECTS_WINDOW_S = 60.0


class Dc09Receiver:
    def __init__(
        self,
        name: str,
        config: ReceiverConfig,
        accounts: dict[str, PanelSource],
        unknown: Callable[[str], PanelSource],
        clock: Clock,
    ) -> None:
        self.name = name
        self.config = config
        self._sources = accounts
        self._unknown = unknown
        self._clock = clock
        keys = {
            acct: bytes.fromhex(a.key.get_secret_value())
            for acct, a in config.accounts.items()
            if a.key is not None
        }
        self._accounts = sia_dc09.Accounts(keys, (config.max_lag_s, config.max_lead_s))
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: asyncio.DatagramTransport | None = None
        self.tcp_port = 0
        self.udp_port = 0
        #: accounts that reported but are not configured (health shows them)
        self.unknown_accounts: set[str] = set()
        #: open TCP connections and when each last spoke (loop time)
        self._open: dict[asyncio.StreamWriter, float] = {}
        #: per peer: rejected frames counted since its last dead letter
        self._rejects: dict[str, _Rejects] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.tcp:
            server = await asyncio.start_server(
                self._connection, self.config.host, self.config.port, limit=sia_dc09.MAX_FRAME
            )
            self._servers.append(server)
            self.tcp_port = server.sockets[0].getsockname()[1]
        if self.config.udp:
            udp_port = self.tcp_port or self.config.port
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.config.host, udp_port)
            )
            self.udp_port = self._udp.get_extra_info("sockname")[1]
        log.info(
            "receiver %s: SIA DC-09 on %s tcp %s udp %s",
            self.name,
            self.config.host,
            self.tcp_port or "-",
            self.udp_port or "-",
        )

    async def close(self) -> None:
        for peer, seen in self._rejects.items():
            if seen.reasons:
                self._summarise(peer, seen)
        self._rejects.clear()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One panel's TCP connection: closed after `idle_timeout_s` of silence, and the
        longest-idle one goes when `max_connections` are open."""
        loop = asyncio.get_running_loop()
        if len(self._open) >= self.config.max_connections:
            oldest = min(self._open, key=self._open.__getitem__)
            log.warning(
                "receiver %s: %d connections open; closing the longest idle",
                self.name,
                len(self._open),
            )
            self._open.pop(oldest, None)
            oldest.close()
        self._open[writer] = loop.time()
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        try:
            while True:
                try:
                    async with asyncio.timeout(self.config.idle_timeout_s):
                        raw = await reader.readuntil(sia_dc09.CR)
                except TimeoutError:
                    return  # idle: the panel connects again when it has something to say
                except asyncio.LimitOverrunError as exc:
                    await reader.readexactly(exc.consumed)
                    self._reject_unplaced("frame longer than 1024 bytes", b"", peer)
                    writer.write(sia_dc09.nak(self._clock.now()))
                    continue
                except asyncio.IncompleteReadError:
                    return  # the panel hung up (a partial frame is not answered)
                self._open[writer] = loop.time()
                writer.write(await self.answer(raw, peer))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._open.pop(writer, None)
            with contextlib.suppress(Exception):
                writer.close()

    async def answer(self, raw: bytes, peer: str = "") -> bytes:
        """The response to one frame, once its content is safely stored."""
        now = self._clock.now()
        try:
            frame = sia_dc09.parse_frame(raw, self._accounts, now)
        except FrameError as exc:
            self._reject_unplaced(str(exc), raw, peer)
            return sia_dc09.nak(now)
        source = self._sources.get(frame.account)
        if source is None:  # accepted (a fire is a fire), flagged on the event and in health
            self.unknown_accounts.add(frame.account)
            source = self._unknown(frame.account)
        try:
            reading = sia_dc09.read(frame)
        except FrameError as exc:
            source.reject(f"SIA DC-09: {exc}", raw)
            return sia_dc09.duh(frame)
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def acked() -> None:
            if not stored.done():
                stored.set_result(None)

        receipt = Receipt(
            ack=acked,
            key=f"sia:{frame.account}:{frame.sequence}",
            digest=raw.strip()[:4].decode("ascii", "replace"),
            redelivered=True,  # a panel resends what was not ACKed: dedup every frame
        )
        source.report(reading, raw.decode("ascii", "replace").strip(), receipt)
        try:
            await within(ACK_WAIT_S, stored)
        except TimeoutError:
            log.error("receiver %s: not stored within %.0f s; no ACK", self.name, ACK_WAIT_S)
            return sia_dc09.nak(self._clock.now())
        return sia_dc09.ack(frame, self._accounts.keys.get(frame.account), self._clock.now())

    def _reject_unplaced(self, reason: str, raw: bytes, peer: str = "") -> None:
        """A dead letter for the first bad frame from a peer in a minute; the others are
        counted and summed up in one (a flood of junk datagrams is one row a minute)."""
        now = self._clock.now()
        seen = self._rejects.get(peer)
        if seen is None or (now - seen.first).total_seconds() >= REJECTS_WINDOW_S:
            if seen is not None and seen.reasons:
                self._summarise(peer, seen)
            self._rejects[peer] = _Rejects(now, now)
            self._unknown("").reject(f"SIA DC-09 from {peer or 'a peer'}: {reason}", raw)
            return
        seen.last = now
        seen.reasons[reason] += 1

    def _summarise(self, peer: str, seen: _Rejects) -> None:
        by_reason = "; ".join(f"{n} x {why}" for why, n in seen.reasons.most_common())
        self._unknown("").reject(
            f"SIA DC-09 from {peer or 'a peer'}: {seen.reasons.total()} more rejected frame(s) "
            f"between {seen.first:%H:%M:%S} and {seen.last:%H:%M:%S} UTC: {by_reason}",
            b"",
        )

    def flush_rejects(self) -> None:
        """Sum up what was counted (the daemon's tick, and at close)."""
        now = self._clock.now()
        for peer, seen in list(self._rejects.items()):
            if seen.reasons and (now - seen.first).total_seconds() >= REJECTS_WINDOW_S:
                self._summarise(peer, seen)
                self._rejects[peer] = _Rejects(now, now)


@dataclass
class _Rejects:
    """A peer's bad frames since its last dead letter: when, and how many for each reason
    (a summary that kept only the last reason hid what was wrong with the rest)."""

    first: datetime
    last: datetime
    reasons: Counter[str] = field(default_factory=Counter)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: Dc09Receiver) -> None:
        self._receiver = receiver
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        task = asyncio.create_task(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str | int, int]) -> None:
        response = await self._receiver.answer(data, str(addr[0]))
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(response, addr)
