"""Edge triggering: a condition's change is an event, a repeated state is not.

zigbee2mqtt repeats every property in every message, and devices report their
normal state at start-up; only a change of a known condition (or a first report of
an active one) becomes an event. A condition with a hold time must persist that long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from alertd.events import Kind, Observation

Key = tuple[str, Kind]


@dataclass(frozen=True, slots=True)
class Change:
    device_id: str
    kind: Kind
    active: bool
    occurred_at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Pending:
    active: bool
    since: datetime
    hold: timedelta
    occurred_at: datetime
    detail: str


class EdgeDetector:
    def __init__(self, states: Mapping[Key, bool] | None = None) -> None:
        self._states: dict[Key, bool] = dict(states or {})
        self._pending: dict[Key, _Pending] = {}

    def state(self, device_id: str, kind: Kind) -> bool | None:
        return self._states.get((device_id, kind))

    def observe(
        self, device_id: str, obs: Observation, occurred_at: datetime, now: datetime
    ) -> Change | None:
        key = (device_id, obs.kind)
        current = self._states.get(key)
        if current is None and not obs.active:
            self._states[key] = False  # a first report of a normal state is not a restore
            self._pending.pop(key, None)
            return None
        if current == obs.active:
            self._pending.pop(key, None)  # a dip shorter than the hold time
            return None
        if obs.hold_s > 0:
            pending = self._pending.get(key)
            if pending is None or pending.active != obs.active:
                pending = _Pending(
                    obs.active, now, timedelta(seconds=obs.hold_s), occurred_at, obs.detail
                )
                self._pending[key] = pending
            if now - pending.since < pending.hold:
                return None
            del self._pending[key]
            return self._change(key, pending.active, pending.occurred_at, pending.detail)
        return self._change(key, obs.active, occurred_at, obs.detail)

    def due(self, now: datetime) -> list[Change]:
        """Held conditions whose hold time has passed with no message to say so."""
        ready = [k for k, p in self._pending.items() if now - p.since >= p.hold]
        changes = []
        for key in ready:
            p = self._pending.pop(key)
            changes.append(self._change(key, p.active, p.occurred_at, p.detail))
        return changes

    def _change(self, key: Key, active: bool, occurred_at: datetime, detail: str) -> Change:
        self._states[key] = active
        return Change(key[0], key[1], active, occurred_at, detail)
