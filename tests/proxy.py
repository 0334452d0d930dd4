"""A TCP proxy that can leave its current connections half-open: open, but silent."""

from __future__ import annotations

import asyncio
import contextlib


class FreezableProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._live: set[int] = set()
        self._frozen: set[int] = set()
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._cut = False

    async def start(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        """From now on the current connections carry nothing, and nobody closes them."""
        self._frozen |= self._live

    def cut(self) -> None:
        """A network cut: the current connections carry nothing (nobody closes them), and
        a new one is closed as soon as it is made."""
        self.freeze()
        self._cut = True

    def mend(self) -> None:
        """New connections go through again (the frozen ones stay frozen, as TCP
        connections cut for long are dead)."""
        self._cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        self._next += 1
        conn = self._next
        self._live.add(conn)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(conn, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, conn: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if conn not in self._frozen:
                    dst.write(data)
                    await dst.drain()
        if conn not in self._frozen:
            dst.close()

    async def close(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()
