"""Texts per number a provider takes in a day. Mainland carriers and providers cap them
(Aliyun: 50 notifications a day to a number for one sign name and template; Tencent: 10
a day by default): past the cap the provider refuses, so alertd counts its own and sends
the next text by the next provider (or a call) before asking, and `alertd check` warns
when a playbook could reach a cap within one incident."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping
from datetime import datetime, timedelta

from alertd.clock import Clock
from alertd.outbox.sink import Result
from alertd.playbooks.schema import Playbook, WaitAck

#: the providers count a rolling day (the 24 hours before the send), not a calendar day
DAY = timedelta(hours=24)


class DailyCaps:
    """What one provider sent to each number (or number and template) in the last day.
    Counted in memory: after a restart the provider's own refusal (its cap code) moves
    the text on instead."""

    def __init__(self, most: int, clock: Clock) -> None:
        self.most = most
        self._clock = clock
        self._sent: dict[Hashable, deque[datetime]] = {}

    def full(self, key: Hashable) -> bool:
        sent = self._sent.get(key)
        if not sent:
            return False
        since = self._clock.now() - DAY
        while sent and sent[0] <= since:
            sent.popleft()
        if not sent:
            del self._sent[key]
        return len(sent) >= self.most

    def add(self, key: Hashable) -> None:
        self._sent.setdefault(key, deque()).append(self._clock.now())

    def capped(self) -> int:
        """How many numbers are at their cap now."""
        return sum(self.full(key) for key in list(self._sent))


def capped(provider: str, most: int) -> Result:
    """Not asked: the number had its day's texts there (the next provider sends it)."""
    return Result(
        "permanent",
        f"the number had {most} texts in a day by {provider}, its cap: not sent there",
        elsewhere=True,
    )


def cap_warnings(books: Mapping[str, Playbook], caps: Mapping[str, int], site: str) -> list[str]:
    """Playbook texts that could reach a provider's cap for one number within one
    incident: a repeating escalation nobody acknowledges, and texts sent again at each
    new alarm or update (bounded by the building, not by the playbook)."""
    out: list[str] = []
    for name, book in sorted(books.items()):
        steps = book.texting_steps()
        for i, step in enumerate(book.steps):
            if not isinstance(step, WaitAck) or step.repeat_s is None:
                continue
            last = step.escalate[-1]
            per_day = math.ceil(DAY.total_seconds() / step.repeat_s)
            for provider, most in sorted(caps.items()):
                if per_day > most:
                    hours = most * step.repeat_s / 3600
                    out.append(
                        f"site {site}: playbook {name!r} repeats {last.template!r} (at "
                        f"steps.{i}.escalate.{len(step.escalate) - 1}) every "
                        f"{step.repeat_s:g} s until someone acknowledges: the same person "
                        f"reaches {provider}'s cap of {most} texts a day after {hours:.1f} h; "
                        "later ones go by the next provider or a call (put staff numbers "
                        f"on {provider}'s allow list)"
                    )
        for template, where in sorted(steps.items()):
            again = [w for w in where if w.startswith(("on_join", "on_eta"))]
            for provider, most in sorted(caps.items()):
                if again and most < 20:
                    out.append(
                        f"site {site}: playbook {name!r} texts {template!r} again at each "
                        f"new alarm or update ({', '.join(again)}): past {most} a day to "
                        f"one number, {provider} refuses them (they go by the next provider)"
                    )
    return out
