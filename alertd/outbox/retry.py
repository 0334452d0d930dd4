"""The retry stage's arithmetic: exponential backoff with full jitter, honouring a
server's Retry-After, capped; pure so that it can be tested."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

BASE_S = 1.0
CAP_S = 300.0
MAX_ATTEMPTS = 8


def next_attempt(
    attempts: int,
    now: datetime,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after `attempts` failed tries; None when it is time to give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    backoff = min(CAP_S, BASE_S * 2 ** (attempts - 1))
    delay = (rng or random).uniform(backoff / 2, backoff)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return now + timedelta(seconds=delay)
