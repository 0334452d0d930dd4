"""Panel protocols as pure parsers: real formats in, signals out, never a stray exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.events import Kind
from integrations.panels import alarmdecoder, contact_id, sia_dc09
from integrations.panels.printer import PrinterParser
from integrations.panels.signal import FrameError, Reading, Signal
from integrations.panels.spec import PrinterFormat
from tests.conftest import FIXTURES

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
KEY = bytes.fromhex("3A1F6B8C9D4E7F20123456789ABCDEF0")
ACCOUNTS = sia_dc09.Accounts({"1234": KEY})
#: a receiver with no keys: where plaintext frames are accepted
PLAIN = sia_dc09.Accounts({})


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def outcome(parse: Callable[[], object]) -> str:
    """ "parsed", or the reason a FrameError gives: any other exception fails the test."""
    try:
        parse()
    except FrameError as exc:
        return str(exc)
    return "parsed"


def signals(reading: Reading) -> list[tuple[Kind, bool, str]]:
    return [(s.kind, s.active, s.zone) for s in reading.signals]


# -- Contact ID ----------------------------------------------------------------------


@pytest.mark.parametrize("message", fixture("contact_id.json")["messages"])
def test_contact_id_fixture_checksums(message: dict[str, Any]) -> None:
    if message["checksum_ok"]:
        cid = contact_id.parse(message["raw"])
        assert cid.account == message["fields"]["acct"]
        assert cid.code == message["fields"]["xyz"]
        assert cid.encode() == message["raw"]
    else:
        with pytest.raises(FrameError, match="checksum"):
            contact_id.parse(message["raw"])


def test_contact_id_meanings() -> None:
    assert signals(contact_id.read("1234181111010150")) == [(Kind.FIRE_ALARM, True, "015")]
    assert signals(contact_id.read("1234 18 3111 01 015 8")) == [(Kind.FIRE_ALARM, False, "015")]
    assert signals(contact_id.read("1234181154010095")) == [(Kind.LEAK, True, "009")]
    assert signals(contact_id.read("1234181200010318")) == [(Kind.FIRE_SUPERVISORY, True, "031")]
    assert signals(contact_id.read("1234181301000006")) == [(Kind.POWER_LOSS, True, "")]
    assert signals(contact_id.read("1234181302000005")) == [(Kind.POWER_LOW_BATTERY, True, "")]
    assert signals(contact_id.read("1234181373010308")) == [(Kind.FIRE_TROUBLE, True, "030")]
    test = contact_id.read("1234181602000002")
    assert test.signals == ()
    assert test.notes == (("test_report", "602 periodic test report"),)
    still = contact_id.ContactId("1234", "18", 6, "111", "01", "015").encode()
    assert signals(contact_id.read(still)) == [(Kind.FIRE_ALARM, True, "015")]


cid_fields = st.builds(
    contact_id.ContactId,
    account=st.text("0123456789BCDEF", min_size=4, max_size=4),
    message_type=st.sampled_from(["18", "98"]),
    qualifier=st.sampled_from([1, 3, 6]),
    code=st.text("0123456789", min_size=3, max_size=3),
    group=st.text("0123456789", min_size=2, max_size=2),
    zone=st.text("0123456789", min_size=3, max_size=3),
)


@given(cid_fields)
def test_every_valid_contact_id_round_trips(cid: contact_id.ContactId) -> None:
    assert contact_id.parse(cid.encode()) == cid
    contact_id.read(cid.encode())


@given(st.text(max_size=40))
def test_contact_id_rejects_garbage_with_a_reason(text: str) -> None:
    assert outcome(lambda: contact_id.read(text))


# -- AlarmDecoder ---------------------------------------------------------------------


@pytest.mark.parametrize("line", fixture("alarmdecoder.json")["lines"])
def test_alarmdecoder_fixture_lines(line: dict[str, Any]) -> None:
    reading = alarmdecoder.read(line["raw"])
    expected = line.get("expected_parse", {})
    got = {(s.kind, s.zone): s.active for s in reading.signals}
    if "fire_alarm" in expected:
        assert got[(Kind.FIRE_ALARM, "")] is expected["fire_alarm"]
    if "ac_power" in expected:
        assert got[(Kind.POWER_LOSS, "")] is (not expected["ac_power"])
    if "battery_low" in expected and line["kind"] == "keypad":
        assert got[(Kind.POWER_LOW_BATTERY, "")] is expected["battery_low"]
    if "check_zone" in expected:
        assert got[(Kind.FIRE_TROUBLE, "")] is expected["check_zone"]
    if line["kind"] == "rf" and "battery" in expected:
        assert got[(Kind.DEVICE_BATTERY_LOW, "RF0180036-1")] is expected["battery"]


def test_alarmdecoder_lrr_and_zones() -> None:
    assert signals(alarmdecoder.read("!LRR:015,1,CID_1111,ff")) == [(Kind.FIRE_ALARM, True, "015")]
    assert signals(alarmdecoder.read("!LRR:015,1,CID_3111,ff")) == [(Kind.FIRE_ALARM, False, "015")]
    assert signals(alarmdecoder.read("!LRR:9,1,CID_1154")) == [(Kind.LEAK, True, "009")]
    assert signals(alarmdecoder.read("!EXP:07,01,01")) == [(Kind.FIRE_ALARM, True, "EXP07-01")]
    fire = alarmdecoder.read(
        '[00010001011001000A--],015,[f707000600e5800c0c020000],"FIRE 15 SMOKE DET 3RD FL HALL   "'
    )
    assert "FIRE 15 SMOKE DET 3RD FL HALL" in fire.signals[0].detail
    assert (
        alarmdecoder.read(
            "!VER:ffffffff,V2.2a.8.9,TX;RX;SM;VZ;RF;ZX;RE;AU;3X;CG;DD;MF;LR;KE;MK;CB"
        ).signals
        == ()
    )
    with pytest.raises(FrameError, match="not an AlarmDecoder message"):
        alarmdecoder.read("[0000],001")


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=120),
        st.sampled_from(["!LRR:", "!EXP:", "!RFX:", "!KPM:[", "["]).flatmap(
            lambda head: st.text(max_size=60).map(lambda t: head + t)
        ),
    )
)
def test_alarmdecoder_never_raises_anything_but_frame_error(line: str) -> None:
    assert outcome(lambda: alarmdecoder.read(line))


# -- SIA DC-09 -----------------------------------------------------------------------


def test_crc_of_a_published_frame() -> None:
    body = b'"SIA-DCS"0002R1L232#78919[#78919|Nri1/BA012][X012W34.1][Y045N12.2]_14:12:04,09-25-2026'
    assert sia_dc09.crc16(body) == 0x7358
    frame = sia_dc09.parse_frame(
        b"\n73580056" + body + b"\r", ACCOUNTS, datetime(2026, 9, 25, 14, 12, 10, tzinfo=UTC)
    )
    assert (frame.account, frame.receiver, frame.line, frame.sequence) == (
        "78919",
        "R1",
        "L232",
        "0002",
    )
    assert frame.extended == ("X012W34.1", "Y045N12.2")
    # burglary: no kind of alertd's, kept as an unknown event with its code
    assert signals(sia_dc09.read(frame)) == [(Kind.UNKNOWN, True, "012")]


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("SIA-DCS", "#1234|Nri1/FA015", [(Kind.FIRE_ALARM, True, "015")]),
        ("SIA-DCS", "#1234|Nri1/FH015", [(Kind.FIRE_ALARM, False, "015")]),
        ("SIA-DCS", "#1234|Nri1/FR015", [(Kind.FIRE_ALARM, False, "015")]),  # fire restoral
        (
            "SIA-DCS",
            "#1234|Nti10:12/ri2/WA009/FT030",
            [(Kind.LEAK, True, "009"), (Kind.FIRE_TROUBLE, True, "030")],
        ),
        ("SIA-DCS", "#1234|NAT", [(Kind.POWER_LOSS, True, "")]),
        ("ADM-CID", "#1234|1110 01 015", [(Kind.FIRE_ALARM, True, "015")]),
        ("ADM-CID", "#1234|3154 01 009", [(Kind.LEAK, False, "009")]),
        ("NULL", "", []),
    ],
)
def test_dc09_messages(kind: str, data: str, expected: list[tuple[Kind, bool, str]]) -> None:
    for key in (None, KEY):
        raw = sia_dc09.message(kind, 7, "1234", data, at=NOW, key=key)
        frame = sia_dc09.parse_frame(raw, ACCOUNTS if key else PLAIN, NOW)
        assert frame.encrypted is (key is not None)
        assert signals(sia_dc09.read(frame)) == expected


def test_dc09_rejections_say_why() -> None:
    good = sia_dc09.message("SIA-DCS", 1, "1234", "#1234|Nri1/FA015", at=NOW)
    bad_crc = good[:1] + b"0000" + good[5:]
    with pytest.raises(FrameError, match="CRC mismatch"):
        sia_dc09.parse_frame(bad_crc, PLAIN, NOW)
    with pytest.raises(FrameError, match="length"):
        sia_dc09.parse_frame(good[:-5] + b"\r", PLAIN, NOW)
    with pytest.raises(FrameError, match="outside the allowed window"):
        sia_dc09.parse_frame(good, PLAIN, NOW + timedelta(seconds=41))
    with pytest.raises(FrameError, match="outside the allowed window"):
        sia_dc09.parse_frame(good, PLAIN, NOW - timedelta(seconds=21))
    sia_dc09.parse_frame(good, PLAIN, NOW + timedelta(seconds=39))
    # a plaintext frame for an account that has a key: encryption cannot be stepped around
    with pytest.raises(FrameError, match="plaintext frame for account '1234', which has a key"):
        sia_dc09.parse_frame(good, ACCOUNTS, NOW)
    other_key = sia_dc09.message("SIA-DCS", 1, "1234", "#1234|NFA1", at=NOW, key=bytes(16))
    with pytest.raises(FrameError, match="wrong key"):
        sia_dc09.parse_frame(other_key, ACCOUNTS, NOW)
    no_key = sia_dc09.message("SIA-DCS", 1, "9999", "#9999|NFA1", at=NOW, key=KEY)
    with pytest.raises(FrameError, match="has no key"):
        sia_dc09.parse_frame(no_key, ACCOUNTS, NOW)
    unknown = sia_dc09.parse_frame(sia_dc09.message("XYZ-ABC", 1, "1234", "x"), PLAIN, NOW)
    with pytest.raises(FrameError, match="unknown message type"):
        sia_dc09.read(unknown)


def test_dc09_responses() -> None:
    frame = sia_dc09.parse_frame(
        sia_dc09.message("ADM-CID", 42, "1234", "#1234|1110 01 015"), PLAIN, NOW
    )
    assert sia_dc09.ack(frame, None, NOW) == sia_dc09.build('"ACK"0042R0L0#1234[]')
    assert sia_dc09.duh(frame) == sia_dc09.build('"DUH"0042R0L0#1234[]')
    assert sia_dc09.nak(NOW) == sia_dc09.build('"NAK"0000R0L0A0[]_03:00:00,11-27-2026')
    encrypted = sia_dc09.parse_frame(
        sia_dc09.message("ADM-CID", 43, "1234", "#1234|1110 01 015", at=NOW, key=KEY), ACCOUNTS, NOW
    )
    reply = sia_dc09.ack(encrypted, KEY, NOW)
    assert reply.startswith(b"\n")
    assert b'"*ACK"0043R0L0#1234[' in reply
    # the panel can read it back: same CRC rules, and it decrypts with the account's key
    parsed = sia_dc09.parse_frame(reply, ACCOUNTS, NOW)
    assert (parsed.id, parsed.sequence, parsed.timestamp) == ("ACK", "0043", NOW)


@settings(max_examples=200)
@given(
    kind=st.sampled_from(["SIA-DCS", "ADM-CID", "NULL"]),
    seq=st.integers(0, 9999),
    account=st.text("0123456789ABCDEF", min_size=3, max_size=16),
    encrypted=st.booleans(),
    zone=st.integers(0, 999),
)
def test_every_valid_dc09_frame_round_trips(
    kind: str, seq: int, account: str, encrypted: bool, zone: int
) -> None:
    data = {
        "SIA-DCS": f"#{account}|Nri1/FA{zone:03d}",
        "ADM-CID": f"#{account}|1110 01 {zone:03d}",
        "NULL": "",
    }[kind]
    accounts = sia_dc09.Accounts({account: KEY} if encrypted else {})
    raw = sia_dc09.message(kind, seq, account, data, at=NOW, key=KEY if encrypted else None)
    frame = sia_dc09.parse_frame(raw, accounts, NOW)
    assert (frame.id, frame.sequence, frame.account, frame.data) == (
        kind,
        f"{seq:04d}",
        account,
        data,
    )
    sia_dc09.read(frame)


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
            lambda t: sia_dc09.build('"SIA-DCS"0001R0L0#1234[' + t)
        ),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
            lambda t: sia_dc09.build('"ADM-CID"0001R0L0#1234[#1234|' + t)
        ),
        st.binary(max_size=60).map(lambda b: b"\n" + b),
    )
)
def test_dc09_parser_never_raises_anything_but_frame_error(raw: bytes) -> None:
    assert outcome(lambda: sia_dc09.read(sia_dc09.parse_frame(raw, ACCOUNTS, NOW)))


# -- printer port ---------------------------------------------------------------------

GST = PrinterFormat(
    pattern=r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+(?P<type>\S+)\s+(?P<text>.*?)\s+"
    r"(?P<zone>\d{3}-\d{3})$",
    time_format="%Y-%m-%d %H:%M:%S",
    types={
        "火警": {"kind": "fire.alarm"},
        "火警恢复": {"kind": "fire.alarm", "active": False},
        "故障": {"kind": "fire.trouble"},
        "复位": {},
    },
    ignore=r"^(打印|=+)",
)


def test_printer_lines_map_to_events_with_the_panel_time() -> None:
    parser = PrinterParser("gst", GST, ZoneInfo("Asia/Shanghai"))
    fire = parser.read("2026-11-27 03:12:45 火警 3号楼 12层 走廊 感烟探测器 001-015")
    (signal,) = fire.signals
    assert (signal.kind, signal.active, signal.zone) == (Kind.FIRE_ALARM, True, "001-015")
    assert signal.detail == "火警: 3号楼 12层 走廊 感烟探测器"
    assert signal.occurred_at == datetime(2026, 11, 26, 19, 12, 45, tzinfo=UTC)
    assert parser.read("2026-11-27 03:20:00 火警恢复 3号楼 001-015").signals[0].active is False
    assert parser.read("==========").signals == ()
    assert parser.read("2026-11-27 03:30:00 复位 控制器 000-000").notes
    with pytest.raises(FrameError, match="does not match"):
        parser.read("random noise")
    with pytest.raises(FrameError, match="not in printer format"):
        parser.read("2026-11-27 03:12:45 未知 3号楼 001-015")


def test_the_shipped_printer_formats_read_their_sample_lines() -> None:
    from alertd.config import load_config

    config = load_config(FIXTURES.parent.parent / "config" / "alertd.example.yaml")
    tz = ZoneInfo(config.site.timezone)
    gst = PrinterParser("gst_cn", config.printer_formats["gst_cn"], tz)
    notifier = PrinterParser("notifier_en", config.printer_formats["notifier_en"], tz)
    assert signals(gst.read("2026-11-27 03:12:45 火警 3号楼 12层 走廊 感烟探测器 001-015")) == [
        (Kind.FIRE_ALARM, True, "001-015")
    ]
    assert signals(gst.read("2026-11-27 03:40:00 故障恢复 3号楼 电源 000-001")) == [
        (Kind.FIRE_TROUBLE, False, "000-001")
    ]
    fire = notifier.read("FIRE ALARM SMOKE(PHOTO) 3RD FL HALL 10:41A 112726 Z015")
    assert signals(fire) == [(Kind.FIRE_ALARM, True, "015")]
    assert fire.signals[0].occurred_at == datetime(2026, 11, 27, 2, 41, tzinfo=UTC)
    assert notifier.read("SYSTEM NORMAL").signals == ()


def test_the_shipped_notifier_format_reads_the_80_column_printer_port() -> None:
    """An NFS2-3030 on an 80-column port prints an event over two lines: the zone ends
    the first, the time is on the second. The shipped format gave no events, and even
    `lines: 2` did not match."""
    from alertd.config import load_config

    config = load_config(FIXTURES.parent.parent / "config" / "alertd.example.yaml")
    tz = ZoneInfo(config.site.timezone)
    notifier = PrinterParser("notifier_en", config.printer_formats["notifier_en"], tz)
    assert notifier.read("FIRE ALARM  SMOKE(PHOTO)  3RD FLOOR EAST HALL          Z003") == Reading()
    fire = notifier.read("10:41A 112726  L01D003")
    assert signals(fire) == [(Kind.FIRE_ALARM, True, "003")]
    assert fire.signals[0].occurred_at == datetime(2026, 11, 27, 2, 41, tzinfo=UTC)
    assert fire.signals[0].detail == "FIRE ALARM: SMOKE(PHOTO)  3RD FLOOR EAST HALL"
    assert fire.unread == ()
    # the one-line (160-column) form on the same format, after a stray line: the alarm is
    # read at once, and the stray line is given back to be kept as a dead letter
    assert notifier.read("%%% LINE NOISE") == Reading()
    cleared = notifier.read("CLEARED FIRE ALARM SMOKE(PHOTO) 3RD FL HALL 10:45A 112726 Z003")
    assert signals(cleared) == [(Kind.FIRE_ALARM, False, "003")]
    assert cleared.unread == ("%%% LINE NOISE",)
    # a trouble over two lines, then the panel is normal again
    notifier.read("TROUBLE  AC POWER FAIL                                Z000")
    assert signals(notifier.read("10:50A 112726")) == [(Kind.FIRE_TROUBLE, True, "000")]
    assert notifier.read("SYSTEM NORMAL") == Reading()


@settings(max_examples=200)
@given(st.text(max_size=120))
def test_printer_parser_never_raises_anything_but_frame_error(line: str) -> None:
    parser = PrinterParser("gst", GST, ZoneInfo("Asia/Shanghai"))
    assert outcome(lambda: parser.read(line))


@settings(max_examples=100)
@given(st.binary(min_size=16, max_size=16))
def test_a_wrong_key_is_always_a_rejection(key: bytes) -> None:
    raw = sia_dc09.message("ADM-CID", 1, "1234", "#1234|1110 01 015", at=NOW, key=key)
    if key == KEY:
        return
    with pytest.raises(FrameError, match="wrong key"):
        sia_dc09.parse_frame(raw, ACCOUNTS, NOW)


def test_a_date_without_a_year_is_the_most_recent_one_not_in_the_future() -> None:
    from alertd.clock import FakeClock
    from integrations.panels.spec import PrinterFormat

    spec = PrinterFormat.model_validate(
        {
            "pattern": r"(?P<time>\d\d/\d\d \d\d:\d\d) (?P<type>FIRE) (?P<zone>\d+)",
            "time_format": "%m/%d %H:%M",
            "types": {"FIRE": {"kind": "fire.alarm"}},
        }
    )
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 11, 29, 10, 0, tzinfo=tz)  # read on 29 November 2026
    parser = PrinterParser("yearless", spec, tz, FakeClock(now.astimezone(UTC)))

    def at(line: str) -> datetime | None:
        (signal,) = parser.read(line).signals
        return signal.occurred_at.astimezone(tz) if signal.occurred_at else None

    assert at("11/12 15:08 FIRE 15") == datetime(2026, 11, 12, 15, 8, tzinfo=tz)
    assert at("12/11 15:08 FIRE 15") == datetime(2025, 12, 11, 15, 8, tzinfo=tz)  # not ahead
    assert at("11/29 10:03 FIRE 15") == datetime(2026, 11, 29, 10, 3, tzinfo=tz)  # clock skew
    assert at("02/29 08:00 FIRE 15") == datetime(2024, 2, 29, 8, 0, tzinfo=tz)  # a leap day


def test_a_dc09_frame_keeps_the_panels_time() -> None:
    stamped = NOW - timedelta(seconds=30)
    raw = sia_dc09.message("SIA-DCS", 1, "5678", "#5678|Nri1/FA015", at=stamped)
    (signal,) = sia_dc09.read(sia_dc09.parse_frame(raw, PLAIN, NOW)).signals
    assert signal.occurred_at == stamped
    plain = sia_dc09.message("SIA-DCS", 2, "5678", "#5678|Nri1/FA015")
    (untimed,) = sia_dc09.read(sia_dc09.parse_frame(plain, PLAIN, NOW)).signals
    assert untimed.occurred_at is None  # then the receiver's time is the event's


def test_the_report_shows_the_panels_time_when_it_is_off_by_over_a_minute() -> None:
    from alertd.incidents.report import markdown

    incident = {
        "id": 1,
        "title": "t",
        "drill": 0,
        "opened_at": "2026-11-27T02:00:05+00:00",
        "acknowledged_at": None,
        "resolved_at": None,
        "expected_restore_at": None,
        "site": "",
        "building": "3",
        "floor": "",
        "unit": "",
        "zone": "",
        "playbook": "p",
        "severity": "critical",
        "status": "open",
    }
    row = {"at": "2026-11-27T02:00:05+00:00", "type": "event", "actor": "alertd", "text": "x"}
    timeline = [{**row, "id": 1, "event_id": 7}, {**row, "id": 2, "event_id": 8}]
    times = {
        7: ("2026-11-27T01:55:00+00:00", "2026-11-27T02:00:04+00:00"),  # panel 5 min behind
        8: ("2026-11-27T02:00:00+00:00", "2026-11-27T02:00:04+00:00"),
    }
    text = markdown(incident, timeline, [], ZoneInfo("Asia/Shanghai"), None, times)
    assert "x (panel time 2026-11-27 09:55:00 +08:00, received 2026-11-27 10:00:04 +08:00)" in text
    assert text.count("panel time") == 1


def test_a_tripped_zone_is_what_the_zone_map_says_and_zone_000_is_the_panel() -> None:
    from alertd.clock import FakeClock
    from alertd.devices import Device
    from alertd.events import Location
    from alertd.ingest.report import Rejected, Report
    from integrations.panels import alarmdecoder
    from integrations.panels.source import PanelSource
    from integrations.panels.spec import Place

    got: list[Report | Rejected] = []
    panel = Device("facp", "panel:alarmdecoder", "/dev/ttyUSB0", Location("HV", "3"))
    zones = {
        "EXP01-02": Place(floor="B1", zone="pump room", kind=Kind.LEAK),
        "EXP01-04": Place(floor="12", kind=Kind.FIRE_ALARM),
    }
    source = PanelSource(panel, zones, got.append, FakeClock(), "serial:alarmdecoder")
    for line in ("!EXP:01,02,01", "!EXP:01,04,01", "!EXP:01,03,01", "!EXP:01,03,00"):
        source.report(alarmdecoder.read(line), line)
    reports = [r for r in got if isinstance(r, Report) and r.observations]
    assert [(r.device.device_id, r.observations[0].kind) for r in reports] == [
        ("facp:EXP01-02", Kind.LEAK),  # a leak sensor on an expander is not a fire
        ("facp:EXP01-04", Kind.FIRE_ALARM),
    ]
    (dead,) = [r for r in got if isinstance(r, Rejected)]  # the restore is not another one
    assert "zone EXP01-03 tripped, but the zone map gives it no kind" in dead.reason
    # a printer's zone 000 is the panel itself
    got.clear()
    source.report(Reading((Signal(Kind.FIRE_TROUBLE, True, "000-000", "power"),)), "故障 000-000")
    (report,) = [r for r in got if isinstance(r, Report) and r.observations]
    assert report.device.device_id == "facp"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # the MLR2-E manual's own example: account 1234, duress (121), group 01, zone 001
        ("5011 181234E12101001\x14", [(Kind.MANUAL, True, "1234-001")]),
        ("5011 181234E11001015", [(Kind.FIRE_ALARM, True, "1234-015")]),
        ("5011 181234R11001015", [(Kind.FIRE_ALARM, False, "1234-015")]),
        ("50A2 18C0FFE15401009", [(Kind.LEAK, True, "C0FF-009")]),  # E: new event
        ("1011           @    ", []),  # the receiver's heartbeat
    ],
)
def test_contact_id_as_a_surgard_receiver_passes_it_on(
    line: str, expected: list[tuple[Kind, bool, str]]
) -> None:
    from integrations.panels import surgard

    assert signals(surgard.read(line)) == expected


def test_a_surgard_line_that_is_not_contact_id_says_so() -> None:
    from integrations.panels import surgard

    with pytest.raises(FrameError, match="not a Sur-Gard Contact ID line"):
        surgard.read("6011      1234XX0001")


def test_a_printer_record_over_two_lines_keeps_the_panels_time_and_finds_its_step() -> None:
    from integrations.panels.spec import PrinterFormat

    notifier80 = PrinterFormat.model_validate(
        {
            "pattern": r"^(?P<type>FIRE ALARM|CLEARED FIRE ALARM)\s+(?P<text>.*?)\s+"
            r"Z(?P<zone>\d{3})\n(?P<time>\d{1,2}:\d\d[AP] \d{6})$",
            "time_format": "%I:%M%p %m%d%y",
            "lines": 2,
            "types": {
                "FIRE ALARM": {"kind": "fire.alarm"},
                "CLEARED FIRE ALARM": {"kind": "fire.alarm", "active": False},
            },
        }
    )
    parser = PrinterParser("notifier80", notifier80, ZoneInfo("Asia/Shanghai"))
    assert parser.read("FIRE ALARM SMOKE(PHOTO) 3RD FL HALL Z015") == Reading()  # half
    (fire,) = parser.read("10:41A 112726").signals
    assert (fire.kind, fire.active, fire.zone) == (Kind.FIRE_ALARM, True, "015")
    assert fire.occurred_at == datetime(2026, 11, 27, 2, 41, tzinfo=UTC)
    # a stray line: it is the error, and the record after it is read
    assert parser.read("LINE NOISE") == Reading()  # held: it may start a record
    with pytest.raises(FrameError, match=r"record does not match .*LINE NOISE"):
        parser.read("CLEARED FIRE ALARM SMOKE(PHOTO) 3RD FL HALL Z015")
    (cleared,) = parser.read("10:45A 112726").signals
    assert (cleared.active, cleared.zone) == (False, "015")


def test_a_printer_record_can_end_on_a_pattern() -> None:
    from integrations.panels.spec import PrinterFormat

    spec = PrinterFormat.model_validate(
        {
            "pattern": r"(?s)^(?P<type>火警)\n(?P<text>.*)\n(?P<zone>\d{3}-\d{3})\n-+$",
            "record_end": r"^-{5,}$",
            "types": {"火警": {"kind": "fire.alarm"}},
        }
    )
    parser = PrinterParser("blocks", spec, ZoneInfo("Asia/Shanghai"))
    for line in ("火警", "3号楼 12层", "走廊 感烟", "001-015"):
        assert parser.read(line) == Reading()
    (fire,) = parser.read("----------").signals
    assert (fire.kind, fire.zone) == (Kind.FIRE_ALARM, "001-015")
    assert "3号楼 12层\n走廊 感烟" in fire.detail


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("FR015", [(Kind.FIRE_ALARM, False, "015")]),
        ("KA003", [(Kind.FIRE_ALARM, True, "003")]),
        ("SR003", [(Kind.FIRE_ALARM, False, "003")]),
        ("SS002", [(Kind.FIRE_SUPERVISORY, True, "002")]),
        ("WR009", [(Kind.LEAK, False, "009")]),
        ("GS004", [(Kind.GAS, True, "004")]),
        ("GR004", [(Kind.GAS, False, "004")]),
        ("GT004", [(Kind.FIRE_TROUBLE, True, "004")]),
        ("PR001", [(Kind.MANUAL, False, "001")]),
        ("BR012", [(Kind.UNKNOWN, False, "012")]),
        # a code with no meaning known: an event with the code, never dropped, and one
        # that does not swallow the next (momentary)
        ("ZZ007", [(Kind.UNKNOWN, True, "007"), (Kind.UNKNOWN, False, "007")]),
    ],
)
def test_every_sia_alarm_has_its_restoral_and_unknown_codes_are_kept(
    token: str, expected: list[tuple[Kind, bool, str]]
) -> None:
    raw = sia_dc09.message("SIA-DCS", 1, "5678", f"#5678|Nri1/{token}")
    reading = sia_dc09.read(sia_dc09.parse_frame(raw, PLAIN, NOW))
    assert signals(reading) == expected
    if token.startswith("ZZ"):
        assert "SIA ZZ (unknown code)" in reading.signals[0].detail


def test_every_sia_code_with_an_alarm_has_a_restore_of_the_same_kind() -> None:
    kinds = {kind for kind, _ in sia_dc09.SIA_CODES.values()}
    for kind in kinds:
        states = {active for k, active in sia_dc09.SIA_CODES.values() if k is kind}
        assert states == {True, False}, kind


def test_a_keypad_fire_is_placed_by_its_zone_and_restored_when_the_fire_bit_clears() -> None:
    from integrations.panels import alarmdecoder

    reader = alarmdecoder.Reader()
    fire = (
        '[00010001011001000A--],015,[f707000600e5800c0c020000],"FIRE 15 SMOKE DET 3RD FL HALL   "'
    )
    second = (
        '[00010001011001000A--],021,[f707000600e5800c0c020000],"FIRE 21 WATERFLOW B1          "'
    )
    idle = (
        '[10000001000000000A--],008,[f707000600e5800c0c020000],"****DISARMED****  Ready to Arm  "'
    )
    fires = [s for s in reader.read(fire).signals if s.kind is Kind.FIRE_ALARM]
    assert [(s.active, s.zone) for s in fires] == [(True, ""), (True, "015")]  # panel and zone
    reader.read(second)
    cleared = [s for s in reader.read(idle).signals if s.kind is Kind.FIRE_ALARM]
    assert [(s.active, s.zone) for s in cleared] == [(False, ""), (False, "015"), (False, "021")]
    again = [s for s in reader.read(idle).signals if s.kind is Kind.FIRE_ALARM]
    assert [(s.active, s.zone) for s in again] == [(False, "")]  # restored once


@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize(
    ("kind", "data", "code", "zone"),
    [
        ("SIA-DCS", "#1234|Nri1/FA015", "FA", "015"),
        ("ADM-CID", "#1234|1110 01 015", "FA", "015"),
        ("SIA-DCS", "#1234|Nri1/FR015", "FR", "015"),
    ],
)
def test_pysiaalarm_reads_our_frames_and_we_read_its_answers(
    kind: str, data: str, code: str, zone: str, encrypted: bool
) -> None:
    """A second, independent DC-09 implementation (pysiaalarm, Home Assistant's) checks
    CRC, length, timestamp and AES both ways. pysiaalarm takes a key as its ASCII
    characters; alertd takes the same key's bytes, in hex."""
    from pysiaalarm import SIAAccount
    from pysiaalarm.event import SIAEvent

    ascii_key = "0123456789abcdef"
    now = datetime.now(UTC).replace(microsecond=0)
    key = ascii_key.encode() if encrypted else None
    raw = sia_dc09.message(kind, 42, "1234", data, at=now, key=key)
    theirs = SIAEvent.from_line(
        raw.decode().strip(), {"1234": SIAAccount("1234", ascii_key if encrypted else None)}
    )
    assert theirs.valid_message
    assert (theirs.account, theirs.code, theirs.encrypted) == ("1234", code, encrypted)
    # where pysiaalarm keeps the zone: after the code (SIA-DCS), or as `ri` (ADM-CID)
    assert (theirs.message if kind == "SIA-DCS" else theirs.ri) == zone
    answer = theirs.create_response()  # their ACK (encrypted for an encrypted frame)
    ours = sia_dc09.Accounts({"1234": key} if key else {})
    parsed = sia_dc09.parse_frame(answer, ours, now)
    assert (parsed.id, parsed.sequence, parsed.encrypted) == ("ACK", "0042", encrypted)
