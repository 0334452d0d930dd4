"""Sign-in attempts, limited per account and address and per address alone, so that
guessing passwords is slow and one desk's typos do not lock out the building."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=15)
PER_ACCOUNT = 5
PER_ADDRESS = 20


class Throttle:
    def __init__(self) -> None:
        self._failures: dict[str, deque[datetime]] = defaultdict(deque)

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        seen = self._failures.get(key, deque())
        while seen and now - seen[0] > WINDOW:
            seen.popleft()
        if not seen:  # guesses at many names leave nothing behind once they are old
            self._failures.pop(key, None)
        return seen

    def wait(self, remote: str, name: str, now: datetime) -> timedelta | None:
        """How long this address (for this account) must wait, or None."""
        for key, limit in ((f"{remote}|{name}", PER_ACCOUNT), (remote, PER_ADDRESS)):
            seen = self._recent(key, now)
            if len(seen) >= limit:
                return seen[0] + WINDOW - now
        return None

    def failed(self, remote: str, name: str, now: datetime) -> None:
        self._failures[f"{remote}|{name}"].append(now)
        self._failures[remote].append(now)

    def succeeded(self, remote: str, name: str) -> None:
        self._failures.pop(f"{remote}|{name}", None)
