"""One group commit: everything a batch of messages changed, written in one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from alertd.events import Event, Kind


@dataclass(frozen=True, slots=True)
class StateRow:
    device_id: str
    kind: Kind
    active: bool
    since: datetime
    event_id: int
    #: arrival order; a row never overwrites one that arrived later
    seq: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: datetime
    source: str
    reason: str
    topic: str = ""
    device_id: str = ""
    payload: bytes = b""
    site: str = ""


@dataclass(slots=True)
class Batch:
    events: list[Event] = field(default_factory=list)
    states: list[StateRow] = field(default_factory=list)
    #: device_id -> (last message time, latest values): the writer encodes them, so a
    #: tick of thousands of devices does not hold the event loop; a values mapping
    #: given here is never changed afterwards (ingest replaces it on a new report)
    seen: dict[str, tuple[datetime, Mapping[str, object]]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    receipts: dict[str, str] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    def absorb(self, other: Batch) -> None:
        self.events.extend(other.events)
        self.states.extend(other.states)
        self.seen.update(other.seen)
        self.dead_letters.extend(other.dead_letters)
        self.receipts.update(other.receipts)
        self.counters.update(other.counters)
