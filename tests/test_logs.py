"""The daemon's log lines carry the site's local time, to the millisecond."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alertd.logs import SiteTimeFormatter


def record(at: datetime) -> logging.LogRecord:
    r = logging.LogRecord("alertd", logging.WARNING, __file__, 1, "fire", (), None)
    r.created = at.timestamp()
    r.msecs = at.microsecond // 1000
    return r


def test_each_line_has_its_own_local_time_across_second_and_day_boundaries() -> None:
    fmt = SiteTimeFormatter(ZoneInfo("Asia/Shanghai"), "%(asctime)s %(message)s")
    times = [
        datetime(2026, 11, 27, 15, 59, 59, 1000, tzinfo=UTC),
        datetime(2026, 11, 27, 15, 59, 59, 998000, tzinfo=UTC),  # same second
        datetime(2026, 11, 27, 16, 0, 0, 5000, tzinfo=UTC),  # next second, next local day
        datetime(2026, 11, 27, 15, 59, 59, 500000, tzinfo=UTC),  # a late line, back again
    ]
    assert [fmt.format(record(t)) for t in times] == [
        "2026-11-27 23:59:59.001 +08:00 fire",
        "2026-11-27 23:59:59.998 +08:00 fire",
        "2026-11-28 00:00:00.005 +08:00 fire",
        "2026-11-27 23:59:59.500 +08:00 fire",
    ]
