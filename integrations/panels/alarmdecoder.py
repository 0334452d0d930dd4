"""AlarmDecoder (AD2USB, AD2PI, AD2SERIAL) messages from Ademco/Honeywell keypad buses.

Keypad status lines `[<20-char bitfield>],<code>,[<panel data>],"<32-char text>"`
(optionally behind `!KPM:`) repeat the panel's state every few seconds: position 8 is
AC power, 12 low battery, 14 fire, 15 check (trouble); edge triggering in the core
turns changes into events. `!LRR:` lines carry Contact ID events (`CID_<Q><XYZ>`, with
an optional report code replacing the last two digits). `!EXP:` / `!RFX:` report zone
expanders and wireless sensors; other `!` lines are status and are ignored.
"""

from __future__ import annotations

import dataclasses
import re

from alertd.events import Kind
from integrations.panels import contact_id
from integrations.panels.signal import FrameError, Reading, Signal

_KEYPAD = re.compile(
    r"^(?:!KPM:)?\[(?P<bits>[0-9A-Fa-f\-]{20})\],(?P<code>[0-9A-Fa-f]{3}),"
    r'\[(?P<data>[0-9A-Fa-f]*)\],"(?P<text>.{0,40})"$'
)
_LRR2 = re.compile(
    r"^!LRR:(?P<zone>[0-9A-Fa-f]{1,3}),(?P<part>\d+),CID_(?P<q>\d)(?P<code>[0-9A-Fa-f]{3})"
    r"(?:,(?P<report>[0-9A-Fa-f]{2}))?$"
)
_LRR1 = re.compile(r"^!LRR:(?P<zone>[0-9A-Fa-f]{1,3}),(?P<part>\d+),(?P<type>[A-Z_]+)$")
_EXP = re.compile(r"^!(?P<what>EXP|REL):(?P<addr>\d{2}),(?P<chan>\d{2}),(?P<value>\d{2})$")
_RFX = re.compile(r"^!RFX:(?P<serial>\d{7}),(?P<value>[0-9A-Fa-f]{2})$")
STATUS = ("!AUI", "!Ready", "!CONFIG", "!VER", "!Sending", "!ERR", "!>")
#: old LRR event types (firmware before 2.2a.8.6)
LRR1 = {
    "FIRE": (Kind.FIRE_ALARM, True),
    "ALARM_PANIC": (Kind.MANUAL, True),
    "TROUBLE": (Kind.FIRE_TROUBLE, True),
}
RF_LOOPS = {0x80: "1", 0x20: "2", 0x10: "3", 0x40: "4"}


class Reader:
    """One panel's lines. The keypad shows "FIRE 015" for each zone in fire: that zone is
    reported too, so that the zone map places it when the panel sends no LRR messages
    (with them, both name the same zone device and count once); when the keypad's fire
    bit clears, every zone it showed is restored."""

    def __init__(self) -> None:
        self._fire_zones: set[str] = set()

    def read(self, line: str) -> Reading:
        reading = read(line)
        keypad = next(
            (s for s in reading.signals if s.kind is Kind.FIRE_ALARM and not s.zone), None
        )
        if keypad is None:
            return reading
        zone = _KEYPAD.match(line.strip())
        code = zone["code"] if zone else ""
        extra: list[Signal] = []
        if keypad.active and code.strip("0"):
            self._fire_zones.add(code)
            extra.append(Signal(Kind.FIRE_ALARM, True, code, keypad.detail))
        elif not keypad.active and self._fire_zones:
            extra += [
                Signal(Kind.FIRE_ALARM, False, z, keypad.detail) for z in sorted(self._fire_zones)
            ]
            self._fire_zones.clear()
        return dataclasses.replace(reading, signals=(*reading.signals, *extra))


def read(line: str) -> Reading:
    line = line.strip()
    if line.startswith("!LRR:"):
        return _lrr(line)
    if line.startswith(("!EXP:", "!REL:")):
        return _expander(line)
    if line.startswith("!RFX:"):
        return _rf(line)
    if line.startswith(STATUS):
        return Reading()
    return _keypad(line)


def _keypad(line: str) -> Reading:
    match = _KEYPAD.match(line)
    if match is None:
        raise FrameError(f"not an AlarmDecoder message: {line[:60]!r}")
    bits, code, text = match["bits"], match["code"], match["text"].strip()

    def on(position: int) -> bool:
        return bits[position - 1] not in "0-"

    zone = code if on(14) or on(15) else ""
    detail = f"keypad: {text}" if text else "keypad"
    return Reading(
        (
            Signal(Kind.FIRE_ALARM, on(14), "", f"{detail} (zone {code})" if on(14) else detail),
            Signal(Kind.POWER_LOSS, not on(8), "", detail),
            Signal(Kind.POWER_LOW_BATTERY, on(12), "", detail),
            Signal(Kind.FIRE_TROUBLE, on(15), "", f"{detail} (zone {zone})" if zone else detail),
        )
    )


def _lrr(line: str) -> Reading:
    match = _LRR2.match(line)
    if match is not None:
        code = match["code"]
        report = match["report"]
        if report and report.lower() not in ("00", "ff"):
            code = code[0] + report  # the report code replaces the last two digits
        return contact_id.reading(code.upper(), int(match["q"]), match["zone"].zfill(3))
    old = _LRR1.match(line)
    if old is None:
        raise FrameError(f"malformed !LRR message: {line[:60]!r}")
    if old["type"] in LRR1:
        kind, active = LRR1[old["type"]]
        return Reading((Signal(kind, active, old["zone"].zfill(3), f"LRR {old['type']}"),))
    return Reading(notes=(("last_signal", f"LRR {old['type']}"),))


def _expander(line: str) -> Reading:
    match = _EXP.match(line)
    if match is None:
        raise FrameError(f"malformed expander message: {line[:60]!r}")
    if match["what"] == "REL":
        return Reading(notes=(("relay", f"{match['addr']}:{match['chan']}={match['value']}"),))
    zone = f"EXP{match['addr']}-{match['chan']}"
    tripped = match["value"] != "00"
    return Reading((Signal(Kind.FIRE_ALARM, tripped, zone, "expander zone", kind_from_map=True),))


def _rf(line: str) -> Reading:
    match = _RFX.match(line)
    if match is None:
        raise FrameError(f"malformed !RFX message: {line[:60]!r}")
    value, serial = int(match["value"], 16), match["serial"]
    signals = [
        Signal(
            Kind.FIRE_ALARM,
            bool(value & bit),
            f"RF{serial}-{loop}",
            "wireless loop",
            kind_from_map=True,
        )
        for bit, loop in RF_LOOPS.items()
        if loop == "1" or value & bit
    ]
    signals.append(
        Signal(
            Kind.DEVICE_BATTERY_LOW, bool(value & 0x02), f"RF{serial}-1", "wireless sensor battery"
        )
    )
    signals.append(
        Signal(Kind.SENSOR_OFFLINE, bool(value & 0x04), f"RF{serial}-1", "wireless supervision")
    )
    return Reading(tuple(signals))
