"""SIA DC-09 (alarm transmission over IP) frames, as received by a central station.

A frame is `LF crc 0LLL "id" seq [Rrrr] Lppp #acct [data] [x-data]... [_timestamp] CR`:
`crc` is CRC-16/ARC (polynomial 0x8005, reflected, initial 0) of everything between the
length field and the CR, and `0LLL` that length in hex. `id` is `SIA-DCS`, `ADM-CID` or
`NULL` (a supervision message), with a leading `*` when the part from `[` on is AES-CBC
encrypted (zero IV, hex encoded, random padding ending in `|`). The receiver answers ACK,
NAK (bad frame or a timestamp outside the allowed window, with its own time) or DUH (a
frame it cannot understand).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from alertd.events import Kind
from integrations.panels import contact_id
from integrations.panels.signal import FrameError, Reading, Signal

LF, CR = b"\n", b"\r"
MAX_FRAME = 1024
IDS = ("SIA-DCS", "ADM-CID", "NULL")
_HEADER = re.compile(
    r'^"(?P<enc>\*)?(?P<id>[A-Z0-9\-]+)"(?P<seq>\d{4})(?P<rcvr>R[0-9A-Fa-f]{1,6})?'
    r"(?P<line>L[0-9A-Fa-f]{1,6})(?:#(?P<acct>[0-9A-Fa-f]{3,16}))?\[(?P<rest>.*)$",
    re.S,
)
_PAD = re.compile(r"^[^|\[\]#]*\|?")
_TIMESTAMP = re.compile(r"_(\d{2}):(\d{2}):(\d{2}),(\d{2})-(\d{2})-(\d{4})$")
_ADM = re.compile(
    r"^(?P<q>\d)(?P<code>[0-9A-Fa-f]{3}) (?P<group>[0-9A-Fa-f]{2}) "
    r"(?P<zone>[0-9A-Fa-f]{3})$"
)

#: SIA event codes (SIA DC-03): code -> (kind, active). Codes pair as xA alarm, xH alarm
#: restore, xR restoral, xS supervisory, xT trouble, xJ trouble restore. A code alertd has
#: no kind for is an `unknown` event carrying the code, never dropped.
SIA_CODES: dict[str, tuple[Kind, bool]] = {
    # fire, heat and sprinkler: a fire alarm
    **dict.fromkeys(("FA", "KA", "SA"), (Kind.FIRE_ALARM, True)),
    **dict.fromkeys(("FH", "FR", "KH", "KR", "SH", "SR"), (Kind.FIRE_ALARM, False)),
    **dict.fromkeys(("FS", "KS", "SS"), (Kind.FIRE_SUPERVISORY, True)),
    **dict.fromkeys(("FV", "KV", "SV"), (Kind.FIRE_SUPERVISORY, False)),
    # troubles of the fire system and what it supervises (CO, expanders, power supply)
    **dict.fromkeys(("FT", "KT", "ST", "GT", "ET", "UT", "IA", "YP"), (Kind.FIRE_TROUBLE, True)),
    **dict.fromkeys(("FJ", "KJ", "SJ", "GJ", "ER", "UJ", "IR", "YQ"), (Kind.FIRE_TROUBLE, False)),
    # water and gas (CO)
    "WA": (Kind.LEAK, True),
    "WH": (Kind.LEAK, False),
    "WR": (Kind.LEAK, False),
    **dict.fromkeys(("GA", "GS"), (Kind.GAS, True)),
    **dict.fromkeys(("GH", "GR"), (Kind.GAS, False)),
    # power
    "AT": (Kind.POWER_LOSS, True),
    "AR": (Kind.POWER_LOSS, False),
    "YT": (Kind.POWER_LOW_BATTERY, True),
    "YR": (Kind.POWER_LOW_BATTERY, False),
    # a person asking for help: panic, holdup, medical, emergency
    **dict.fromkeys(("PA", "HA", "MA", "QA"), (Kind.MANUAL, True)),
    **dict.fromkeys(("PH", "PR", "HH", "HR", "MH", "MR", "QH", "QR"), (Kind.MANUAL, False)),
    # the devices themselves
    "TA": (Kind.DEVICE_TAMPER, True),
    "TR": (Kind.DEVICE_TAMPER, False),
    "XT": (Kind.DEVICE_BATTERY_LOW, True),
    "XR": (Kind.DEVICE_BATTERY_LOW, False),
    # burglary: alertd has no kind for it; kept, with its restores, as unknown events
    "BA": (Kind.UNKNOWN, True),
    "BH": (Kind.UNKNOWN, False),
    "BR": (Kind.UNKNOWN, False),
}
SIA_TESTS = {"RP": "automatic test", "RX": "manual test", "FX": "fire test"}


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Frame:
    id: str
    sequence: str
    receiver: str
    line: str
    account: str
    data: str
    extended: tuple[str, ...] = ()
    timestamp: datetime | None = None
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the receiver knows of its accounts: AES keys, and the allowed clock skew."""

    keys: dict[str, bytes] = field(default_factory=dict)
    #: seconds a message's timestamp may lag behind / run ahead of the receiver's clock
    window: tuple[float, float] = (40.0, 20.0)


def parse_frame(raw: bytes, accounts: Accounts, now: datetime) -> Frame:
    """Check CRC, length, header, decryption and timestamp; FrameError says what failed."""
    if len(raw) > MAX_FRAME:
        raise FrameError(f"frame of {len(raw)} bytes is too long")
    raw = raw.strip(b"\r\n\x00 ")
    if len(raw) < 9:
        raise FrameError(f"truncated frame: {raw!r}")
    try:
        crc, length = int(raw[:4], 16), int(raw[4:8], 16)
    except ValueError:
        raise FrameError(f"CRC and length must be hex: {raw[:8]!r}") from None
    body = raw[8:]
    if raw[4:5] != b"0" or length != len(body):
        raise FrameError(f"length field says {length}, the frame has {len(body)} bytes")
    if crc16(body) != crc:
        raise FrameError(f"CRC mismatch: frame says {crc:04X}, computed {crc16(body):04X}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("frame is not ASCII") from None
    match = _HEADER.match(text)
    if match is None:
        raise FrameError(f"malformed header: {text[:40]!r}")
    account = (match["acct"] or "").upper()
    rest = match["rest"]
    encrypted = bool(match["enc"])
    key = accounts.keys.get(account)
    if encrypted:
        if key is None:
            raise FrameError(f"encrypted frame for account {account!r}, which has no key")
        rest = _decrypt(key, rest)
    elif key is not None:  # encryption that a plaintext frame could step around is none
        raise FrameError(f"plaintext frame for account {account!r}, which has a key")
    data, _, tail = rest.partition("]")
    extended, stamp = _tail(tail)
    if encrypted and stamp is None:
        raise FrameError("an encrypted frame must carry a timestamp")
    if stamp is not None:
        lag, ahead = accounts.window
        if not now - timedelta(seconds=lag) <= stamp <= now + timedelta(seconds=ahead):
            raise FrameError(f"timestamp {stamp:%H:%M:%S %m-%d-%Y} is outside the allowed window")
    return Frame(
        match["id"],
        match["seq"],
        match["rcvr"] or "",
        match["line"],
        account,
        data,
        extended,
        stamp,
        encrypted,
    )


def _decrypt(key: bytes, hex_text: str) -> str:
    try:
        cipher = bytes.fromhex(hex_text.strip())
    except ValueError:
        raise FrameError("encrypted part is not hex") from None
    if not cipher or len(cipher) % 16:
        raise FrameError("encrypted part is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(cipher) + decryptor.finalize()
    # what a wrong key yields is random bytes: never all printable with a "]" in it
    text = plain.decode("latin-1")
    if not (text.isascii() and text.isprintable()):
        raise FrameError("decryption failed (wrong key?)")
    # the pad, then "|" (which some senders leave out: pysiaalarm pads its ACKs with 0s)
    content = _PAD.sub("", text, count=1)
    if "]" not in content:
        raise FrameError("decryption failed (wrong key?)")
    return content


def _tail(tail: str) -> tuple[tuple[str, ...], datetime | None]:
    extended = tuple(re.findall(r"\[([^\]]*)\]", tail))
    match = _TIMESTAMP.search(tail)
    if match is None:
        if "_" in tail:
            raise FrameError(f"malformed timestamp: {tail!r}")
        return extended, None
    hh, mm, ss, mo, dd, yyyy = (int(g) for g in match.groups())
    try:
        return extended, datetime(yyyy, mo, dd, hh, mm, ss, tzinfo=UTC)
    except ValueError:
        raise FrameError(f"impossible timestamp: {match.group(0)!r}") from None


def read(frame: Frame) -> Reading:
    """The signals a valid frame carries, at the frame's own time when it has one (the
    panel's clock, GMT). Unknown content raises FrameError (DUH)."""
    reading = _read(frame)
    if frame.timestamp is None:
        return reading
    at = frame.timestamp
    signals = tuple(
        s if s.occurred_at else dataclasses.replace(s, occurred_at=at) for s in reading.signals
    )
    return dataclasses.replace(reading, signals=signals)


def _read(frame: Frame) -> Reading:
    if frame.id == "NULL":
        return Reading(account=frame.account)
    content = frame.data
    if "|" in content:
        _account, _, content = content.partition("|")
    if frame.id == "ADM-CID":
        match = _ADM.match(content.strip())
        if match is None:
            raise FrameError(f"ADM-CID data must be 'QXYZ GG CCC', got {content!r}")
        return contact_id.reading(
            match["code"].upper(), int(match["q"]), match["zone"], account=frame.account
        )
    if frame.id == "SIA-DCS":
        return _sia(content, frame)
    raise FrameError(f"unknown message type {frame.id!r}")


def _sia(content: str, frame: Frame) -> Reading:
    if content[:1] in ("N", "O"):
        content = content[1:]
    signals, notes = [], []
    for token in content.split("/"):
        token = token.strip()
        code, zone = token[:2], token[2:]
        if not token or code in ("ti", "id", "ri", "pi"):
            continue
        if code in SIA_CODES:
            kind, active = SIA_CODES[code]
            signals.append(Signal(kind, active, zone.zfill(3) if zone else "", f"SIA {code}"))
        elif code in SIA_TESTS:
            notes.append(("test_report", f"SIA {code} {SIA_TESTS[code]}"))
        elif re.fullmatch(r"[A-Z]{2}[0-9A-Za-z]*", token):
            # no meaning known: an event with the code, momentary (so that the next one
            # on this zone is an event too)
            where, what = (zone.zfill(3) if zone else ""), f"SIA {code} (unknown code)"
            signals += [
                Signal(Kind.UNKNOWN, True, where, what),
                Signal(Kind.UNKNOWN, False, where, what),
            ]
        else:
            raise FrameError(f"unreadable SIA-DCS data {token!r}")
    return Reading(tuple(signals), tuple(notes), frame.account)


# -- building frames: responses, and messages for tests and `alertd simulate` ----------


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("_%H:%M:%S,%m-%d-%Y")


def build(body: str) -> bytes:
    raw = body.encode("ascii")
    return LF + f"{crc16(raw):04X}0{len(raw):03X}".encode() + raw + CR


def encrypt(key: bytes, text: str) -> str:
    pad_length = 16 - (len(text) + 1) % 16
    pad = "".join(secrets.choice("ABCDEFGHJKMNPQRSTUVWXYZ0123456789") for _ in range(pad_length))
    plain = f"{pad}|{text}".encode("ascii")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(plain) + encryptor.finalize()).hex().upper()


def message(
    id_: str,
    sequence: int,
    account: str,
    data: str,
    *,
    at: datetime | None = None,
    key: bytes | None = None,
    receiver: str = "R0",
    line: str = "L0",
) -> bytes:
    """A frame as a panel sends it (for tests, benchmarks and `alertd simulate`)."""
    stamp = timestamp(at) if at is not None else ""
    head = f'"{"*" if key else ""}{id_}"{sequence:04d}{receiver}{line}#{account}['
    if key is not None:
        return build(head + encrypt(key, f"{data}]{stamp}"))
    return build(f"{head}{data}]{stamp}")


def ack(frame: Frame, key: bytes | None, now: datetime) -> bytes:
    head = f'"{"*" if frame.encrypted else ""}ACK"{frame.sequence}{frame.receiver}{frame.line}'
    head += f"#{frame.account}["
    if frame.encrypted and key is not None:
        return build(head + encrypt(key, f"]{timestamp(now)}"))
    return build(head + "]")


def nak(now: datetime) -> bytes:
    return build(f'"NAK"0000R0L0A0[]{timestamp(now)}')


def duh(frame: Frame) -> bytes:
    return build(f'"DUH"{frame.sequence}{frame.receiver}{frame.line}#{frame.account}[]')
