"""The daemon's log: times in the site's zone with their offset, like every other time a
person reads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo

from alertd.engine.wording import stamp


class SiteTimeFormatter(logging.Formatter):
    def __init__(self, tz: tzinfo, fmt: str) -> None:
        super().__init__(fmt)
        self._tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        text = stamp(datetime.fromtimestamp(record.created, UTC), self._tz)
        return f"{text[:19]}.{int(record.msecs):03d}{text[19:]}"


def setup(level: str, tz: tzinfo) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(SiteTimeFormatter(tz, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
