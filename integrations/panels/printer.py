"""Panels with an ASCII printer port: one configured regular expression per panel model.

The pattern's named groups say where the event type, zone, text and time are; `types`
maps each event type the panel prints to a kind and whether it is a restore.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from alertd.clock import Clock, SystemClock
from integrations.panels.signal import FrameError, Reading, Signal
from integrations.panels.spec import PrinterFormat

#: a printer's clock may run a little ahead of ours; beyond this a date is last year's
AHEAD = timedelta(minutes=5)


class PrinterParser:
    def __init__(
        self, name: str, spec: PrinterFormat, tz: tzinfo, clock: Clock | None = None
    ) -> None:
        self.name = name
        self._clock = clock or SystemClock()
        self._pattern = re.compile(spec.pattern)
        self._ignore = re.compile(spec.ignore) if spec.ignore else None
        self._time_format = spec.time_format
        self._types = {k.upper(): v for k, v in spec.types.items()}
        self._tz = tz

    def read(self, line: str) -> Reading:
        line = line.rstrip()
        if not line.strip() or (self._ignore and self._ignore.search(line)):
            return Reading()
        match = self._pattern.search(line)
        if match is None:
            raise FrameError(f"line does not match printer format {self.name!r}: {line[:80]!r}")
        groups = match.groupdict()
        event_type = " ".join((groups.get("type") or "").upper().split())
        known = self._types.get(event_type)
        if known is None:
            raise FrameError(f"event type {event_type!r} is not in printer format {self.name!r}")
        zone = (groups.get("zone") or "").strip()
        if known.kind is None:
            return Reading(notes=(("last_signal", line.strip()[:200]),))
        text = (groups.get("text") or "").strip()
        detail = f"{event_type}: {text}" if text else event_type
        return Reading((Signal(known.kind, known.active, zone, detail, self._time(groups)),))

    def _time(self, groups: dict[str, str | None]) -> datetime | None:
        raw = groups.get("time")
        if not raw or not self._time_format:
            return None
        raw = raw.strip()
        if "%p" in self._time_format:
            raw = re.sub(r"(\d)([AaPp])(?=\s|$)", r"\1\2M", raw)  # 10:41A, as printers abbreviate
        if "%Y" in self._time_format or "%y" in self._time_format:
            try:
                at = datetime.strptime(raw, self._time_format)
            except ValueError:
                return None  # the panel's clock text is a detail; the event still counts
            return at.replace(tzinfo=self._tz).astimezone(UTC)
        return self._latest_past(raw)

    def _latest_past(self, raw: str) -> datetime | None:
        """A date without a year is the most recent one that is not in the future: on
        2026-11-29, "12/11 15:08" is 2025-12-11 and "11/12 15:08" is 2026-11-12. The year
        goes into the parse, so that 02/29 reads in a leap year."""
        now = self._clock.now().astimezone(self._tz)
        for year in (now.year, now.year - 1, now.year - 2, now.year - 3, now.year - 4):
            try:
                at = datetime.strptime(f"{raw} {year}", f"{self._time_format} %Y")
            except ValueError:
                continue  # 02/29 of a year that has none
            local = at.replace(tzinfo=self._tz)
            if local <= now + AHEAD:
                return local.astimezone(UTC)
        return None
