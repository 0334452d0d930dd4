"""What a source hands to the core: a report about a device, or a rejected message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from alertd.devices import Device
from alertd.events import Observation

Value = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Receipt:
    """How the source learns its message is stored, and how a redelivery is recognised.

    `ack` is called once the message's effects are committed. `key` identifies the
    message at the source (an MQTT packet id) and `digest` its content, so that a
    redelivered message already committed is acknowledged without being applied twice.
    """

    ack: Callable[[], None]
    key: str = ""
    digest: str = ""
    redelivered: bool = False

    def split(self, parts: int) -> list[Receipt]:
        """Receipts for `parts` reports made from one message: the message is acknowledged
        once all of them are stored. Each part is recognised on redelivery by its own key,
        so whichever parts are worth remembering are remembered."""
        if parts == 1:
            return [self]
        left = parts

        def one_done() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                self.ack()

        return [
            Receipt(one_done, f"{self.key}/{i}" if self.key else "", self.digest, self.redelivered)
            for i in range(parts)
        ]


@dataclass(frozen=True, slots=True)
class Report:
    source: str
    device: Device
    observations: tuple[Observation, ...]
    received_at: datetime
    occurred_at: datetime | None = None
    values: Mapping[str, Value] = field(default_factory=dict)
    #: the device is talking (restores sensor.offline, feeds the heartbeat)
    alive: bool = True
    raw: str = ""
    topic: str = ""
    #: parts of the message that could not be read (kept as dead letters)
    problems: tuple[str, ...] = ()
    receipt: Receipt | None = None
    #: a drill: its events and everything that follows are marked as such
    drill: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that could not be read at all; it goes to the dead-letter table."""

    source: str
    reason: str
    received_at: datetime
    topic: str = ""
    payload: bytes = b""
    device_id: str = ""
    receipt: Receipt | None = None
    #: where it came from when no device says (a site's own broker)
    site: str = ""
