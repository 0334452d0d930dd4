"""What delivery did since alertd started, per channel, for /metrics' counters (they only
go up; a restart starts them at 0, which Prometheus reads as a reset): sent (the provider
accepted it), delivered and failed (a receipt said so, or alertd gave up). A gauge of
messages by status cannot be a dashboard's source: a sent SMS leaves `sent` as soon as
its receipt arrives."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

EVENTS = ("sent", "delivered", "failed")


@dataclass
class Totals:
    #: counted on the event loop, once an outcome is committed (the dispatcher)
    sends: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: counted on the writer thread, once a receipt is committed (the callbacks)
    receipts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def of(self, channel: str, event: str) -> int:
        return self.sends[(channel, event)] + self.receipts[(channel, event)]
