"""The broker connection: paho-mqtt 2.x driven by the asyncio loop, with manual acks.

paho's socket is registered with the event loop (no hidden network thread); only the
blocking TCP connect runs in a worker thread. A persistent MQTT 5 session (clean start
off, session expiry > 0, fixed client id) makes the broker queue what is published
while alertd is away. Messages are acknowledged only when the caller says they are
stored; an ack for a previous connection is dropped, since the broker will send that
message again on the new one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MessageType, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from alertd.aio import within
from alertd.config import MqttConfig

log = logging.getLogger(__name__)

SUBSCRIBE_CHUNK = 100
PUBACK = MessageType.PUBACK
#: bytes one read of the socket takes
READ_CHUNK = 65536
#: packets handed to paho per turn of the event loop, from what was read already
PACKETS_PER_TURN = 16


class ChunkedClient(paho.Client):
    """paho's client, reading and writing its socket a chunk at a time. paho asks the
    socket for a packet's first byte, then each length byte, then the rest: about four
    system calls a message, 8,000 a second under a 2,000 message/s telemetry storm, a
    tenth of the event loop's time; here they come from one read. And it writes each
    packet on its own: a commit acknowledges hundreds of messages, in one write here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._at = 0
        #: (topic, payload, qos, retain, dup, packet id) of a PUBLISH read here, not by paho
        self.on_publish_read: Callable[[str, bytes, int, bool, bool, int], None] | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._chunk):
            self._chunk = super()._sock_recv(READ_CHUNK)  # BlockingIOError: nothing yet
            self._at = 0
        data = self._chunk[self._at : self._at + bufsize]  # b"" when the peer closed
        self._at += len(data)
        return data

    def _packet_write(self) -> MQTTErrorCode:
        out = self._out_packet
        if len(out) > 1 and _whole_puback(out[0]) and _whole_puback(out[1]):
            acks = []
            while out and _whole_puback(out[0]):
                acks.append(out.popleft())
            joined = b"".join(a["packet"] for a in acks)
            out.appendleft({**acks[0], "packet": joined, "to_process": len(joined)})
        return super()._packet_write()

    def _handle_publish(self) -> MQTTErrorCode:
        """A PUBLISH without MQTT 5 properties (nearly all of them), read here and handed
        to `on_publish_read`. For each one paho builds a Properties object (every one of
        its forty names set), a message with a lock and condition of its own and a debug
        log line: 8-9 % of the event loop's time under a telemetry storm. The rest (QoS
        2, properties, a topic alias, a topic not UTF-8) and automatic acks go to paho."""
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        end = 2 + int.from_bytes(packet[:2], "big")
        at = end + 2 if qos == 1 else end
        if (
            self.on_publish_read is None
            or qos == 2
            or not self._manual_ack
            or self._protocol != paho.MQTTv5
            or end == 2
            or len(packet) <= at
            or packet[at] != 0  # properties follow
        ):
            return super()._handle_publish()
        try:
            topic = bytes(packet[2:end]).decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        mid = int.from_bytes(packet[end:at], "big")
        self.on_publish_read(
            topic, bytes(packet[at + 1 :]), qos, bool(header & 1), bool(header & 8), mid
        )
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def on_readable(self) -> None:
        """The socket has data. paho takes one packet a call: what was read beyond it is
        handed over here, a few packets a turn of the loop so that other work is not
        held, and without the socket saying so again (it is empty)."""
        for _ in range(PACKETS_PER_TURN):
            if self.loop_read() != paho.MQTT_ERR_SUCCESS or self._at >= len(self._chunk):
                return
        asyncio.get_running_loop().call_soon(self.on_readable)


def _whole_puback(packet: Any) -> bool:
    """An acknowledgement not yet begun (no callback waits on its write)."""
    return bool(packet["command"] == PUBACK and packet["pos"] == 0)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message as it arrived; paho's own objects never leave this module."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    connection: int


class MqttConnection:
    def __init__(
        self,
        config: MqttConfig,
        subscriptions: list[str],
        on_message: Callable[[Incoming], None],
    ) -> None:
        self.config = config
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._client: paho.Client | None = None
        self._connection = 0
        self._lost: asyncio.Event = asyncio.Event()
        #: set while connected with every subscription confirmed by the broker
        self.connected = asyncio.Event()
        #: it was connected (and subscribed) once since start: before, alertd is starting
        self.ready_once = False
        self._unconfirmed: dict[int, list[str]] = {}
        self._pubacks: dict[int, asyncio.Future[None]] = {}
        #: how many times a session was (re)established
        self.connects = 0

    # -- public -------------------------------------------------------------------------

    def resubscribe(self, subscriptions: list[str]) -> None:
        """A reloaded devices file: subscribe to new topics, drop old ones, now."""
        added = [t for t in subscriptions if t not in set(self.subscriptions)]
        removed = [t for t in self.subscriptions if t not in set(subscriptions)]
        self.subscriptions = subscriptions
        client = self._client
        if client is None or not self.connected.is_set():
            return  # the next connect subscribes to the new list
        for i in range(0, len(added), SUBSCRIBE_CHUNK):
            chunk = added[i : i + SUBSCRIBE_CHUNK]
            client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in chunk])
        if removed:
            client.unsubscribe(removed)

    def ack(self, mid: int, connection: int) -> None:
        if self._client is not None and connection == self._connection:
            self._client.ack(mid, 1)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK (ConnectionError when the
        connection is down or drops first: the caller retries)."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        info = client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish refused: {paho.error_string(info.rc)}")
        self._pubacks[info.mid] = done
        lost: asyncio.Task[bool] = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait([done, lost], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        finally:
            lost.cancel()
            self._pubacks.pop(info.mid, None)
        if not done.done():
            raise ConnectionError("the connection dropped before the broker acknowledged")

    async def run(self) -> None:
        """Connect, stay connected, reconnect with backoff; until cancelled."""
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.warning(
                    "MQTT broker %s:%d unreachable: %s", self.config.host, self.config.port, exc
                )
            finally:
                self._teardown()
            wait = delay * (0.5 + random.random())
            log.info("reconnecting to MQTT in %.1f s", wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.config.reconnect_max_s)

    # -- one connection -----------------------------------------------------------------

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self._connection += 1
        connection = self._connection
        self._lost = asyncio.Event()
        client = ChunkedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        self._client = client
        client.enable_logger(logging.getLogger("paho"))
        if self.config.username:
            password = self.config.password.get_secret_value() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set()

        loop_thread = threading.get_ident()

        def soon(fn: Callable[..., Any], *args: Any) -> None:
            # paho calls back from the worker thread during connect, else from the loop
            if threading.get_ident() == loop_thread:
                fn(*args)
            else:
                loop.call_soon_threadsafe(fn, *args)

        def opened(sock: Any) -> None:
            if self._client is client:
                loop.add_reader(sock, client.on_readable)

        def want_write(sock: Any) -> None:
            if self._client is client:
                loop.add_writer(sock, client.loop_write)

        client.on_socket_open = lambda c, u, sock: soon(opened, sock)
        client.on_socket_close = lambda c, u, sock: soon(_forget_socket, loop, sock)
        client.on_socket_register_write = lambda c, u, sock: soon(want_write, sock)
        client.on_socket_unregister_write = lambda c, u, sock: soon(loop.remove_writer, sock)
        client.on_connect = lambda c, u, flags, rc, props: self._connected(c, flags, rc, connection)
        client.on_disconnect = lambda c, u, flags, rc, props: self._disconnected(rc)
        client.on_message = lambda c, u, msg: self._message(msg, connection)
        client.on_publish_read = lambda topic, payload, qos, retain, dup, mid: self._on_message(
            Incoming(topic, payload, qos, retain, dup, mid, connection)
        )
        client.on_subscribe = lambda c, u, mid, codes, props: self._subscribed(mid, codes)
        client.on_publish = lambda c, u, mid, rc, props: self._published(mid)

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        await within(
            10,
            loop.run_in_executor(
                None,
                lambda: client.connect(
                    self.config.host,
                    self.config.port,
                    self.config.keepalive_s,
                    clean_start=False,
                    properties=props,
                ),
            ),
        )
        misc = asyncio.create_task(self._misc(client))
        try:
            await self._lost.wait()
        finally:
            misc.cancel()

    async def _misc(self, client: paho.Client) -> None:
        """Keepalive pings, and noticing a half-open connection (no PINGRESP)."""
        while True:
            await asyncio.sleep(1)
            if client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                self._lost.set()
                return

    def _connected(self, client: paho.Client, flags: Any, rc: Any, connection: int) -> None:
        if rc.is_failure:
            log.error("MQTT broker refused the connection: %s", rc)
            self._lost.set()
            return
        self.connects += 1
        log.info(
            "connected to MQTT %s:%d as %r (session %s)",
            self.config.host,
            self.config.port,
            self.config.client_id,
            "resumed" if flags.session_present else "new",
        )
        options = SubscribeOptions(qos=1)
        self._unconfirmed.clear()
        for i in range(0, len(self.subscriptions), SUBSCRIBE_CHUNK):
            chunk = self.subscriptions[i : i + SUBSCRIBE_CHUNK]
            _, mid = client.subscribe([(topic, options) for topic in chunk])
            if mid is not None:
                self._unconfirmed[mid] = chunk
        if not self._unconfirmed:
            self._ready()

    def _ready(self) -> None:
        self.connected.set()
        self.ready_once = True

    def _subscribed(self, mid: int, reason_codes: list[Any]) -> None:
        """`connected` is set once the broker has confirmed every subscription."""
        chunk = self._unconfirmed.pop(mid, [])
        for topic, code in zip(chunk, reason_codes, strict=False):
            if code.is_failure:
                log.error("MQTT broker refused the subscription to %r: %s", topic, code)
        if not self._unconfirmed:
            self._ready()

    def _published(self, mid: int) -> None:
        future = self._pubacks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)

    def _disconnected(self, rc: Any) -> None:
        if not self._lost.is_set():
            log.warning("MQTT connection lost: %s", rc)
        self.connected.clear()
        self._lost.set()

    def _message(self, msg: paho.MQTTMessage, connection: int) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self._on_message(
            Incoming(
                topic,
                bytes(msg.payload),
                msg.qos,
                bool(msg.retain),
                bool(msg.dup),
                msg.mid,
                connection,
            )
        )

    def _teardown(self) -> None:
        self.connected.clear()
        client, self._client = self._client, None
        if client is None:
            return
        sock = client.socket()
        if sock is not None:
            _forget_socket(asyncio.get_running_loop(), sock)
        # a clean DISCONNECT keeps the session: it expires only after session_expiry_s
        client.disconnect()
        client.loop_write()
        for callback in (
            "on_socket_open",
            "on_socket_close",
            "on_socket_register_write",
            "on_socket_unregister_write",
            "on_connect",
            "on_disconnect",
            "on_message",
            "on_publish_read",
            "on_subscribe",
            "on_publish",
        ):
            setattr(client, callback, None)
        if sock is not None:
            sock.close()

    async def close(self) -> None:
        self._teardown()


def _forget_socket(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
    try:
        loop.remove_reader(sock)
        loop.remove_writer(sock)
    except (ValueError, OSError):
        pass  # already closed and unregistered
