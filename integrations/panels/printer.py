"""Panels with an ASCII printer port: one configured regular expression per panel model.

The pattern's named groups say where the event type, zone, text and time are; `types`
maps each event type the panel prints to a kind and whether it is a restore.
"""

from __future__ import annotations

import dataclasses
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
        self._lines = spec.lines
        self._end = re.compile(spec.record_end) if spec.record_end else None
        #: the lines of a record not complete yet
        self._held: list[str] = []

    def read(self, line: str) -> Reading:
        """One printed line; a record of several lines answers when it is complete (and
        nothing, not an error, before). With `lines: N` a record is the newest lines,
        at most N, that match: the one-line and the two-line (80-column) forms of one
        panel read alike, and lines before a record that matched are given back as
        `unread` (a stray line never holds an alarm back). A line that can start no
        record any more is an error, and the reader finds its step again."""
        line = line.rstrip()
        if not line.strip() or (self._ignore and self._ignore.search(line)):
            return Reading()
        self._held.append(line)
        if self._end is None:
            return self._newest_record()
        if not self._end.search(line):
            if len(self._held) > 10:  # no end in sight: the oldest line is an error
                raise FrameError(f"no end of record after: {self._held.pop(0)[:80]!r}")
            return Reading()
        record = "\n".join(self._held)
        match = self._pattern.search(record)
        if match is None:
            first = self._held.pop(0)
            if self._end is not None:
                self._held.clear()
            raise FrameError(
                f"record does not match printer format {self.name!r}: {first[:80]!r}"
                if self._lines > 1 or self._end
                else f"line does not match printer format {self.name!r}: {first[:80]!r}"
            )
        self._held.clear()
        return self._reading(match, record)

    def _newest_record(self) -> Reading:
        held = self._held
        for size in range(min(len(held), self._lines), 0, -1):  # the longest first
            record = "\n".join(held[-size:])
            match = self._pattern.search(record)
            if match is not None:
                unread = tuple(held[:-size])
                held.clear()
                reading = self._reading(match, record)
                return dataclasses.replace(reading, unread=unread) if unread else reading
        if len(held) < self._lines:
            return Reading()  # the start of a record, maybe
        first = held.pop(0)
        raise FrameError(
            f"{'record' if self._lines > 1 else 'line'} does not match printer format "
            f"{self.name!r}: {first[:80]!r}"
        )

    def _reading(self, match: re.Match[str], line: str) -> Reading:
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
