"""The daemon's log: times in the site's zone with their offset, like every other time a
person reads."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, tzinfo

from alertd.engine.wording import stamp


class SiteTimeFormatter(logging.Formatter):
    def __init__(self, tz: tzinfo, fmt: str) -> None:
        super().__init__(fmt)
        self._tz = tz
        self._second = (-1, "")  # the last second formatted: a storm logs many in one

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, stamp(datetime.fromtimestamp(second, UTC), self._tz))
        text = self._second[1]
        return f"{text[:19]}.{int(record.msecs):03d}{text[19:]}"


class JsonFormatter(SiteTimeFormatter):
    """One JSON object a line, for journald and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str, tz: tzinfo, form: str = "text") -> None:
    # what neither format shows is not gathered: an alarm storm logs a line an event
    # (the logging HOWTO's "Optimization" settings)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter(tz, text) if form == "json" else SiteTimeFormatter(tz, text))
    logging.basicConfig(level=level, handlers=[handler], force=True)
