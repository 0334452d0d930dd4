"""The YAML schema of panels, alarm receivers and printer-port formats."""

from __future__ import annotations

import codecs
import re
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from alertd.events import Kind
from alertd.model import YEAR_S, Strict


class Place(Strict):
    """Where a panel, account or zone is; a zone's place fills in its panel's."""

    site: str = ""
    building: str = ""
    floor: str = ""
    unit: str = ""
    zone: str = ""
    #: what the zone is, for panels that only say a zone tripped (AlarmDecoder !EXP and
    #: !RFX): fire.alarm, leak, gas, device.tamper, ...; unset: not an alarm (kept as a
    #: dead letter that says so)
    kind: Kind | None = None


#: what panels and serial servers speak
BAUD_RATES = frozenset(
    {300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400}
)


class PanelConfig(Strict):
    protocol: Literal["alarmdecoder", "contact_id", "surgard_mlr2", "printer"]
    #: a device path (prefer /dev/serial/by-id/...) or a pyserial URL such as socket://host:port
    port: str
    baudrate: int = 9600
    framing: str = "8N1"
    #: what ends a line: CRLF, LF, CR, or DC4 (0x14, Sur-Gard receivers; `protocol:
    #: surgard_mlr2` sets it)
    line_ending: Literal["\r\n", "\n", "\r", "\x14"] = "\r\n"
    max_line: int = Field(512, ge=16, le=65536)
    #: the printer format (`printer_formats:`) for protocol: printer
    format: str | None = None
    #: what the panel prints in: Chinese panels (GST, Tanda, Fulead style) print GB2312 /
    #: GB18030; others ASCII or UTF-8 (any Python codec name)
    encoding: str = "ascii"
    #: longest silence before the panel counts as offline; empty for none
    heartbeat_s: float | None = Field(None, gt=0, le=YEAR_S)
    place: Place = Place()
    zones: dict[str, Place] = {}

    @field_validator("baudrate")
    @classmethod
    def _baudrate(cls, value: int) -> int:
        if value not in BAUD_RATES:
            rates = ", ".join(str(r) for r in sorted(BAUD_RATES))
            raise ValueError(f"baud rate {value} is not a standard one ({rates})")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (ascii, utf-8, gb18030, ...)") from None

    @field_validator("framing")
    @classmethod
    def _framing(cls, value: str) -> str:
        if not re.fullmatch(r"[5-8][NEOMS][12]", value.upper()):
            raise ValueError("framing is data bits, parity, stop bits, e.g. 8N1 or 7E1")
        return value.upper()

    @model_validator(mode="before")
    @classmethod
    def _surgard_ends_lines_with_dc4(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("protocol") == "surgard_mlr2":
            return {"line_ending": "\x14", **data}
        return data

    @model_validator(mode="after")
    def _format_for_printer(self) -> Self:
        if self.protocol == "printer" and not self.format:
            raise ValueError("protocol printer needs format: (a name under printer_formats)")
        return self


class AccountConfig(Strict):
    #: AES key in hex (32, 48 or 64 digits), from the environment: ${SIA_KEY_1234}
    key: SecretStr | None = None
    heartbeat_s: float | None = Field(None, gt=0, le=YEAR_S)
    place: Place = Place()
    zones: dict[str, Place] = {}

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        text = value.get_secret_value()
        if len(text) not in (32, 48, 64) or not re.fullmatch(r"[0-9A-Fa-f]+", text):
            raise ValueError("key must be 32, 48 or 64 hex digits (AES-128/192/256)")
        return value


class ReceiverConfig(Strict):
    protocol: Literal["sia-dc09"] = "sia-dc09"
    host: str = "0.0.0.0"
    port: int = Field(12128, ge=1, le=65535)
    tcp: bool = True
    udp: bool = True
    #: seconds a message's timestamp may lag behind / run ahead of our clock
    max_lag_s: float = 40.0
    max_lead_s: float = 20.0
    #: a TCP connection silent this long is closed (longer than the panels' supervision)
    idle_timeout_s: float = Field(300.0, gt=0, le=YEAR_S)
    #: open TCP connections at most; beyond it the longest-idle one is closed
    max_connections: int = Field(200, ge=1)
    accounts: dict[str, AccountConfig] = {}

    @field_validator("accounts")
    @classmethod
    def _account_numbers(cls, value: dict[str, AccountConfig]) -> dict[str, AccountConfig]:
        for number in value:
            if not re.fullmatch(r"[0-9A-Fa-f]{3,16}", number):
                raise ValueError(f"account {number!r} must be 3 to 16 hex digits")
        return {k.upper(): v for k, v in value.items()}


class PrinterType(Strict):
    kind: Kind | None = None
    active: bool = True


class PrinterFormat(Strict):
    """Named groups: `type` (required), `zone`, `text`, `time` (parsed with time_format)."""

    pattern: str
    time_format: str | None = None
    types: dict[str, PrinterType]
    #: lines matching this are not events and not errors (headers, "SYSTEM NORMAL")
    ignore: str | None = None
    #: a record of at most this many lines (Notifier's 80-column output prints an event
    #: over two, its 160-column output on one): the newest lines that match, joined by a
    #: newline for the pattern
    lines: int = Field(1, ge=1, le=10)
    #: or: a record ends on the line that matches this
    record_end: str | None = None

    @field_validator("pattern", "ignore", "record_end")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        del compiled
        return value

    @model_validator(mode="after")
    def _has_type(self) -> Self:
        if "type" not in re.compile(self.pattern).groupindex:
            raise ValueError("pattern needs a named group (?P<type>...)")
        return self
