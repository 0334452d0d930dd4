"""What a panel protocol reads off the wire, before it is tied to a configured panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alertd.events import Kind


@dataclass(frozen=True, slots=True)
class Signal:
    """One condition of one zone (or of the panel itself when `zone` is empty)."""

    kind: Kind
    active: bool
    zone: str = ""
    detail: str = ""
    occurred_at: datetime | None = None
    #: a zone that only says "tripped" (expander and wireless loops): what it is comes
    #: from the zone map's `kind`; `kind` here is a placeholder
    kind_from_map: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one message said: conditions, and facts to record without alerting."""

    signals: tuple[Signal, ...] = ()
    #: e.g. {"test_report": "602"}: recorded on the panel, never an event
    notes: tuple[tuple[str, str], ...] = ()
    account: str = ""
    #: lines before this record that no record could read (printer ports): dead letters
    unread: tuple[str, ...] = ()


class FrameError(ValueError):
    """The bytes are not a valid message; the text says why (dead letter, NAK)."""
