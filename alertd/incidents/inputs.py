"""What staff type into a command, checked the same way at every door: the console, the
CLI and the daemon itself (a hand-made row in `commands` gets no further than a typed one).
Each check raises `ValueError` with a sentence that names the field and the bound."""

from __future__ import annotations

import math

#: an expected restore is at least a minute and at most 30 days away: a power company's
#: worst estimate, not an overflow of the calendar
ETA_MIN_MINUTES = 1
ETA_MAX_MINUTES = 30 * 24 * 60
INCIDENT_MAX = 2**53
#: a note, a reason or a caller's description: a few paragraphs, not a file
TEXT_MAX = 2000


def eta_minutes(value: object) -> float:
    """Minutes from now until service is expected back."""
    try:
        minutes = float(str(value).strip())
    except ValueError:
        raise ValueError(f"minutes: a number, e.g. 90 (got {str(value)[:20]!r})") from None
    if not math.isfinite(minutes) or not ETA_MIN_MINUTES <= minutes <= ETA_MAX_MINUTES:
        raise ValueError(
            f"minutes: from {ETA_MIN_MINUTES} to {ETA_MAX_MINUTES} (30 days), got {str(value)[:20]}"
        )
    return minutes


def incident_number(value: int | None) -> int | None:
    """An incident number as typed: SQLite's integers end at 2**63, a typo does not."""
    if value is not None and not 0 < value < INCIDENT_MAX:
        raise ValueError(f"incident: no incident {value}")
    return value


def free_text(value: str, field: str = "text") -> str:
    """A note, reason or description, refused (not cut) beyond `TEXT_MAX` characters."""
    text = value.strip()
    if len(text) > TEXT_MAX:
        raise ValueError(f"{field}: at most {TEXT_MAX} characters (got {len(text)})")
    return text
