"""Panels with an ASCII printer port: one configured regular expression per panel model.

The pattern's named groups say where the event type, zone, text and time are; `types`
maps each event type the panel prints to a kind and whether it is a restore.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

from integrations.panels.signal import FrameError, Reading, Signal
from integrations.panels.spec import PrinterFormat


class PrinterParser:
    def __init__(self, name: str, spec: PrinterFormat, tz: tzinfo) -> None:
        self.name = name
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
        try:
            at = datetime.strptime(raw, self._time_format)
        except ValueError:
            return None  # the panel's clock text is a detail; the event still counts
        if at.year == 1900:  # formats without a year
            at = at.replace(year=datetime.now(self._tz).year)
        return at.replace(tzinfo=self._tz).astimezone(UTC)
