"""Flat numbers: which flat is right below another (a leak comes through the ceiling).

Sites number flats in many ways: `1203` on floor 12, zero-padded `0805` on floor 8,
`805`, with a building prefix `3-0805`. Without a configured pattern, every usual reading
is a candidate and the residents directory says which flats exist."""

from __future__ import annotations

import re
from functools import lru_cache

_FIELD = re.compile(r"\{(building|floor|flat)(?::0?(\d+))?\}")
_TRAILING = re.compile(r"^(.*?)(\d+)$")


def below(unit: str, floor: str = "", unit_format: str | None = None) -> list[str]:
    """The flat numbers that may be right below `unit`, most likely first; [] when the
    numbering does not say (no floor in it, or the ground floor)."""
    if unit_format:
        one = _below_by_format(unit, unit_format)
        return [one] if one else []
    match = _TRAILING.match(unit.strip())
    if match is None:
        return []
    prefix, digits = match.groups()
    known = int(floor) if floor.isdigit() else None
    out: list[str] = []
    # the floor is the leading digits; the flat's own number (usually 2 digits) follows
    for width in sorted(range(1, len(digits)), key=lambda w: (len(digits) - w != 2, w)):
        head, tail = digits[:width], digits[width:]
        level = int(head)
        if (known is not None and level != known) or level <= 1:
            continue
        for candidate in (str(level - 1).zfill(len(head)) + tail, str(level - 1) + tail):
            if prefix + candidate not in out:
                out.append(prefix + candidate)
        if known is None:
            break  # without a floor, the usual reading only
    return out


@lru_cache(maxsize=64)
def _pattern(unit_format: str) -> re.Pattern[str]:
    parts, last = [], 0
    for m in _FIELD.finditer(unit_format):
        parts.append(re.escape(unit_format[last : m.start()]))
        name, width = m.group(1), m.group(2)
        digits = rf"\d{{{width}}}" if width else r"\d+"
        parts.append(f"(?P<{name}>{'.+?' if name == 'building' else digits})")
        last = m.end()
    parts.append(re.escape(unit_format[last:]))
    return re.compile("".join(parts) + "$")


def _below_by_format(unit: str, unit_format: str) -> str | None:
    match = _pattern(unit_format).match(unit.strip())
    if match is None or "floor" not in match.groupdict() or int(match["floor"]) <= 1:
        return None
    values: dict[str, object] = dict(match.groupdict())
    values["floor"] = int(match["floor"]) - 1
    if "flat" in values:
        values["flat"] = int(match["flat"])
    return unit_format.format(**values)


def check_format(unit_format: str) -> str | None:
    """What is wrong with a configured pattern, or None."""
    fields = {m.group(1) for m in _FIELD.finditer(unit_format)}
    if "floor" not in fields:
        return "unit_format must contain {floor}"
    rest = _FIELD.sub("", unit_format)
    if "{" in rest or "}" in rest:
        return "unit_format knows only {building}, {floor} and {flat} (with a width: {floor:02})"
    return None
