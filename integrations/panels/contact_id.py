"""Ademco Contact ID: `ACCT MT Q XYZ GG CCC S`, 16 digits with a mod-15 checksum.

Q is 1 (new event), 3 (restore) or 6 (still present); XYZ the event code; GG the
group/partition; CCC the zone or user. The checksum digit makes the sum of all 16 digit
values (0 counted as 10) a multiple of 15.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alertd.events import Kind
from integrations.panels.signal import FrameError, Reading, Signal

DIGITS = "0123456789ABCDEF"
_FRAME = re.compile(r"^[0-9B-F]{4}(18|98)[136][0-9A-F]{3}[0-9A-F]{2}[0-9A-F]{3}[0-9B-F]$")

#: event code -> (kind, description); codes without a kind are recorded, not alerted
CODES: dict[str, tuple[Kind | None, str]] = {
    "100": (Kind.MANUAL, "medical"),
    "101": (Kind.MANUAL, "personal emergency"),
    "110": (Kind.FIRE_ALARM, "fire alarm"),
    "111": (Kind.FIRE_ALARM, "smoke"),
    "112": (Kind.FIRE_ALARM, "combustion"),
    "113": (Kind.FIRE_ALARM, "water flow (sprinkler)"),
    "114": (Kind.FIRE_ALARM, "heat"),
    "115": (Kind.FIRE_ALARM, "pull station"),
    "116": (Kind.FIRE_ALARM, "duct"),
    "117": (Kind.FIRE_ALARM, "flame"),
    "118": (Kind.FIRE_ALARM, "near alarm"),
    "120": (Kind.MANUAL, "panic"),
    "121": (Kind.MANUAL, "duress"),
    "122": (Kind.MANUAL, "silent panic"),
    "123": (Kind.MANUAL, "audible panic"),
    "151": (Kind.GAS, "gas detected"),
    "154": (Kind.LEAK, "water leakage"),
    "162": (Kind.GAS, "carbon monoxide"),
    "200": (Kind.FIRE_SUPERVISORY, "fire supervisory"),
    "201": (Kind.FIRE_SUPERVISORY, "low water pressure"),
    "202": (Kind.FIRE_SUPERVISORY, "low CO2"),
    "203": (Kind.FIRE_SUPERVISORY, "gate valve"),
    "204": (Kind.FIRE_SUPERVISORY, "low water level"),
    "205": (Kind.FIRE_SUPERVISORY, "pump activated"),
    "206": (Kind.FIRE_SUPERVISORY, "pump failure"),
    "301": (Kind.POWER_LOSS, "AC loss"),
    "302": (Kind.POWER_LOW_BATTERY, "low system battery"),
    "309": (Kind.POWER_LOW_BATTERY, "battery test failure"),
    "311": (Kind.POWER_LOW_BATTERY, "battery missing or dead"),
    "342": (Kind.POWER_LOSS, "expander AC loss"),
    "373": (Kind.FIRE_TROUBLE, "fire trouble"),
    "381": (Kind.SENSOR_OFFLINE, "loss of RF supervision"),
    "383": (Kind.DEVICE_TAMPER, "sensor tamper"),
    "144": (Kind.DEVICE_TAMPER, "sensor tamper"),
    "137": (Kind.DEVICE_TAMPER, "tamper"),
    "384": (Kind.DEVICE_BATTERY_LOW, "RF low battery"),
}
TEST_CODES = {
    "601": "manual test",
    "602": "periodic test report",
    "603": "periodic RF test",
    "604": "fire test",
    "607": "walk test",
}


@dataclass(frozen=True, slots=True)
class ContactId:
    account: str
    message_type: str
    qualifier: int
    code: str
    group: str
    zone: str

    def encode(self) -> str:
        body = (
            f"{self.account}{self.message_type}{self.qualifier}{self.code}{self.group}{self.zone}"
        )
        return body + check_digit(body)


def value(digit: str) -> int:
    v = DIGITS.index(digit)
    return 10 if v == 0 else v


def check_digit(first15: str) -> str:
    rest = sum(value(d) for d in first15) % 15
    v = 15 - rest if rest else 15
    return "0" if v == 10 else DIGITS[v]


def parse(text: str) -> ContactId:
    """Parse 16 digits (spaces allowed, as printers show them) and check the checksum."""
    digits = text.replace(" ", "").upper()
    if len(digits) != 16:
        raise FrameError(f"Contact ID needs 16 digits, got {len(digits)}: {text!r}")
    if not _FRAME.match(digits):
        raise FrameError(f"not a Contact ID message (ACCT 18|98 Q XYZ GG CCC S): {text!r}")
    if sum(value(d) for d in digits) % 15:
        raise FrameError(f"Contact ID checksum does not match: {text!r}")
    return ContactId(
        digits[:4], digits[4:6], int(digits[6]), digits[7:10], digits[10:12], digits[12:15]
    )


def reading(code: str, qualifier: int, zone: str, *, account: str = "") -> Reading:
    """What an event code with its qualifier means, as signals and notes."""
    if qualifier not in (1, 3, 6):
        raise FrameError(f"Contact ID qualifier must be 1, 3 or 6, got {qualifier}")
    if code in TEST_CODES:
        return Reading(notes=(("test_report", f"{code} {TEST_CODES[code]}"),), account=account)
    kind, description = CODES.get(code, (None, ""))
    if kind is None:
        if code.startswith("3"):  # other troubles (300-380): a fire panel's trouble
            kind, description = Kind.FIRE_TROUBLE, f"trouble {code}"
        else:
            return Reading(
                notes=(("last_signal", f"CID {qualifier}{code} zone {zone}"),), account=account
            )
    system = zone.strip("0") == ""  # CCC 000: the panel itself
    signal = Signal(kind, qualifier != 3, "" if system else zone, f"CID {code} {description}")
    return Reading((signal,), account=account)


def read(text: str) -> Reading:
    cid = parse(text)
    return reading(cid.code, cid.qualifier, cid.zone, account=cid.account)
