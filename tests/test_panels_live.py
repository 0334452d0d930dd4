"""Fire panels end to end: real pseudo-terminals, real TCP and UDP, a real store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import FakeClock
from alertd.config import Config, load_config
from alertd.events import Kind, State
from alertd.store import SqliteStore
from integrations.panels import sia_dc09
from integrations.panels.simulate import open_pty_link, send_dc09
from tests.broker import Broker, free_port
from tests.mqtt_tools import Live, Publisher, until

KEY = "3A1F6B8C9D4E7F20123456789ABCDEF0"


def panel_config(tmp_path: Path, broker: Broker, body: str) -> Config:
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    path = tmp_path / "alertd.yaml"
    path.write_text(
        f"site: {{name: Test Site, timezone: Asia/Shanghai}}\n"
        f"mqtt: {{port: {broker.port}, client_id: panels-{tmp_path.name[-20:]}}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        "devices: devices.csv\ningest: {tick_s: 0.05}\n" + body
    )
    return load_config(path)


def write_split(fd: int, data: bytes, sizes: list[int]) -> None:
    """Write `data` in pieces of the given sizes (cycled): lines split anywhere."""
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        os.write(fd, data[i : i + n])
        i += n
        k += 1


SERIAL = """
panels:
  facp-b3:
    protocol: alarmdecoder
    port: {port}
    baudrate: 115200
    max_line: 128
    place: {{building: "3"}}
    zones:
      "015": {{floor: "3", zone: 3rd floor hall}}
"""


@pytest.fixture
async def serial_panel(tmp_path: Path, broker: Broker) -> AsyncIterator[tuple[Live, int, Path]]:
    link = tmp_path / "serial" / "by-id" / "usb-AD2USB-if00"
    fd = open_pty_link(link)
    live = Live(panel_config(tmp_path, broker, SERIAL.format(port=link)))
    async with live:
        await asyncio.wait_for(live.daemon.panels.links[0].connected.wait(), 10)
        yield live, fd, link
    with contextlib.suppress(OSError):
        os.close(fd)


async def test_a_fire_alarm_from_a_serial_panel_reaches_the_store(
    serial_panel: tuple[Live, int, Path],
) -> None:
    live, fd, _ = serial_panel
    lines = (
        b"!LRR:015,1,CID_1111,ff\r\n!LRR:077,1,CID_1111,ff\r\n"
        b"[10000001000000000A--],008,[f707000600e5800c0c020000],"
        b'"****DISARMED****  Ready to Arm  "\r\n'
    )
    write_split(fd, lines, [1, 3, 7, 2, 13])
    await live.seen.until(lambda evs: len(evs) >= 2)
    mapped, unmapped = live.seen.events[:2]
    assert (mapped.kind, mapped.state, mapped.device_id) == (
        Kind.FIRE_ALARM,
        State.ACTIVE,
        "facp-b3:015",
    )
    loc = mapped.location
    assert (loc.site, loc.building, loc.floor, loc.zone) == (
        "Test Site",
        "3",
        "3",
        "3rd floor hall",
    )
    assert mapped.source == "serial:alarmdecoder"
    assert mapped.raw == "!LRR:015,1,CID_1111,ff"
    assert (unmapped.device_id, unmapped.location.building, unmapped.location.zone) == (
        "facp-b3:077",
        "3",
        "077",
    )
    assert "zone not in the zone map" in unmapped.detail


async def test_the_link_drops_mid_line_and_comes_back_through_the_stable_path(
    serial_panel: tuple[Live, int, Path],
) -> None:
    live, fd, link = serial_panel
    link_state = live.daemon.panels.links[0]
    os.write(fd, b"!LRR:015,1,CID_1111,ff\r\n!LRR:016,1,CID_11")  # then the cable is pulled
    await live.seen.until(lambda evs: len(evs) >= 1)
    os.close(fd)
    await live.seen.until(lambda evs: any(e.kind is Kind.SENSOR_OFFLINE for e in evs))
    offline = next(e for e in live.seen.events if e.kind is Kind.SENSOR_OFFLINE)
    assert (offline.device_id, offline.state) == ("facp-b3", State.ACTIVE)
    assert "serial link" in offline.detail
    new_fd = open_pty_link(link)  # the adapter is plugged back in
    try:
        await asyncio.wait_for(link_state.connected.wait(), 20)
        os.write(new_fd, b"!LRR:015,1,CID_3111,ff\r\n")
        await live.seen.until(lambda evs: len(evs) >= 4)
    finally:
        os.close(new_fd)
    kinds = [(e.device_id, e.kind, e.state) for e in sorted(live.seen.events, key=lambda e: e.id)]
    assert kinds[:2] == [
        ("facp-b3:015", Kind.FIRE_ALARM, State.ACTIVE),
        ("facp-b3", Kind.SENSOR_OFFLINE, State.ACTIVE),
    ]
    # one line after the reconnection: the panel is back, and zone 015 restores
    assert set(kinds[2:]) == {
        ("facp-b3", Kind.SENSOR_OFFLINE, State.RESTORE),
        ("facp-b3:015", Kind.FIRE_ALARM, State.RESTORE),
    }
    assert len(kinds) == 4  # the half line for zone 016 was never taken for a whole one


async def test_garbage_and_overlong_lines_are_dead_letters_and_the_link_stays_up(
    serial_panel: tuple[Live, int, Path],
) -> None:
    live, fd, _ = serial_panel
    os.write(fd, b"\xff\xfe\x00garbage\r\n")
    os.write(fd, b"!LRR:" + b"9" * 300 + b"\r\n")
    os.write(fd, b"!LRR:015,1,CID_1111\r\n")
    await live.seen.until(lambda evs: len(evs) >= 1)
    await live.daemon.ingest.drained()
    reasons = [d["reason"] for d in live.dead_letters()]
    assert (
        "line is not ascii (garbage on the wire, a wrong baud rate, or the panel prints in "
        "another encoding: set `encoding`)"
    ) in reasons
    assert "line longer than max_line (128 bytes)" in reasons
    assert live.daemon.panels.links[0].opened == 1


RECEIVER = """
receivers:
  central:
    host: 127.0.0.1
    port: {port}
    accounts:
      "1234":
        key: {key}
        heartbeat_s: 60
        place: {{building: "5"}}
        zones:
          "015": {{floor: "15", zone: lobby}}
      "5678": {{}}
"""


@pytest.mark.parametrize("udp", [False, True])
async def test_dc09_receiver_answers_ack_nak_duh_and_stores_events(
    tmp_path: Path, broker: Broker, udp: bool
) -> None:
    port = free_port()
    cfg = panel_config(tmp_path, broker, RECEIVER.format(port=port, key=KEY))
    async with Live(cfg) as live:
        key = bytes.fromhex(KEY)
        good = sia_dc09.message("ADM-CID", 1, "1234", "#1234|1110 01 015", at=_now(live), key=key)
        plain = sia_dc09.message("SIA-DCS", 2, "5678", "#5678|Nri1/WA009")
        null = sia_dc09.message("NULL", 3, "5678", "")
        bad_crc = plain[:1] + b"FFFF" + plain[5:]
        unknown = sia_dc09.message("XYZ-ABC", 4, "5678", "x")
        answers = await send_dc09("127.0.0.1", port, [good, plain, null, bad_crc, unknown], udp=udp)
        assert answers[0].startswith(b"\n")
        assert b'"*ACK"0001R0L0#1234[' in answers[0]
        assert answers[1] == sia_dc09.build('"ACK"0002R0L0#5678[]')
        assert answers[2] == sia_dc09.build('"ACK"0003R0L0#5678[]')
        assert b'"NAK"0000R0L0A0[]_' in answers[3]
        assert answers[4] == sia_dc09.build('"DUH"0004R0L0#5678[]')
        await live.seen.until(lambda evs: len(evs) >= 2)
        fire, leak = sorted(live.seen.events, key=lambda e: e.kind)
        assert (
            fire.kind,
            fire.device_id,
            fire.location.building,
            fire.location.floor,
            fire.location.zone,
        ) == (Kind.FIRE_ALARM, "sia:1234:015", "5", "15", "lobby")
        assert (leak.kind, leak.device_id) == (Kind.LEAK, "sia:5678:009")
        # the ACK came after the commit: the events are in the store already
        await live.daemon.ingest.drained()
        reasons = " ".join(d["reason"] for d in live.dead_letters())
        assert "CRC mismatch" in reasons
        assert "unknown message type" in reasons


async def test_a_resent_frame_is_acked_again_but_stored_once(
    tmp_path: Path, broker: Broker
) -> None:
    port = free_port()
    cfg = panel_config(tmp_path, broker, RECEIVER.format(port=port, key=KEY))
    async with Live(cfg) as live:
        fire = sia_dc09.message("SIA-DCS", 9, "5678", "#5678|Nri1/FA001")
        clear = sia_dc09.message("SIA-DCS", 10, "5678", "#5678|Nri1/FH001")
        answers = await send_dc09("127.0.0.1", port, [fire, clear, fire])  # the ACK was lost
        assert [a.count(b'"ACK"') for a in answers] == [1, 1, 1]
        await live.daemon.ingest.drained()
        assert [(e.kind, e.state) for e in live.seen.events] == [
            (Kind.FIRE_ALARM, State.ACTIVE),
            (Kind.FIRE_ALARM, State.RESTORE),
        ]


async def test_a_silent_account_goes_offline_and_a_test_report_is_recorded(
    tmp_path: Path, broker: Broker
) -> None:
    port = free_port()
    clock = FakeClock()
    cfg = panel_config(tmp_path, broker, RECEIVER.format(port=port, key=KEY))
    async with Live(cfg, clock) as live:
        key = bytes.fromhex(KEY)
        test = sia_dc09.message("ADM-CID", 1, "1234", "#1234|1602 00 000", at=clock.now(), key=key)
        await send_dc09("127.0.0.1", port, [test])
        clock.advance(59)
        await send_dc09(
            "127.0.0.1", port, [sia_dc09.message("NULL", 2, "1234", "", at=clock.now(), key=key)]
        )
        clock.advance(59)
        await live.daemon.ingest.drained()
        assert live.seen.events == []  # a test report and a heartbeat are not alarms
        clock.advance(2)
        await live.seen.until(lambda evs: len(evs) >= 1)
        (offline,) = live.seen.events
        assert (offline.kind, offline.device_id, offline.detail) == (
            Kind.SENSOR_OFFLINE,
            "sia:1234",
            "no message for 60 s",
        )
        live.daemon.ingest.tick()
        await live.daemon.ingest.drained()
        store = SqliteStore(cfg.storage.path)
        values = store.device_values()
        store.close()
        assert values["sia:1234"]["values"]["test_report"] == "602 periodic test report"


def _now(live: Live) -> Any:
    return live.daemon.clock.now()


async def test_a_serial_over_ip_panel_reports_and_its_link_is_supervised(
    tmp_path: Path, broker: Broker
) -> None:
    """socket:// (a serial-to-Ethernet converter): EOF when the peer closes mid-line."""
    connections: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def converter(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connections.put(writer)

    server = await asyncio.start_server(converter, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = f"""
panels:
  facp-cid:
    protocol: contact_id
    port: socket://127.0.0.1:{port}
    line_ending: "\\n"
    zones: {{"015": {{building: "7", floor: "2"}}}}
"""
    try:
        async with Live(panel_config(tmp_path, broker, body)) as live:
            first = await asyncio.wait_for(connections.get(), 10)
            first.write(b"1234181111010150\n1234181111010157\n1234181154")  # bad checksum, half
            await first.drain()
            await live.seen.until(lambda evs: len(evs) >= 1)
            first.close()
            await live.seen.until(lambda evs: len(evs) >= 2)
            second = await asyncio.wait_for(connections.get(), 20)  # alertd reconnects
            second.write(b"1234183111010158\n")
            await second.drain()
            await live.seen.until(lambda evs: len(evs) >= 4)
            second.close()
            await live.daemon.ingest.drained()
            events = sorted(live.seen.events, key=lambda e: e.id)[:4]
            assert [(e.device_id, e.kind, e.state) for e in events[:2]] == [
                ("facp-cid:015", Kind.FIRE_ALARM, State.ACTIVE),
                ("facp-cid", Kind.SENSOR_OFFLINE, State.ACTIVE),
            ]
            assert {(e.device_id, e.kind, e.state) for e in events[2:]} == {
                ("facp-cid", Kind.SENSOR_OFFLINE, State.RESTORE),
                ("facp-cid:015", Kind.FIRE_ALARM, State.RESTORE),
            }
            assert events[0].location.building == "7"
            reasons = {d["reason"]: bytes(d["payload"]) for d in live.dead_letters()}
            assert "Contact ID checksum does not match: '1234181111010157'" in reasons
            assert reasons["partial line lost when the link closed"] == b"1234181154"
    finally:
        server.close()


async def test_a_port_that_rejects_its_settings_is_one_link_down_not_the_daemon(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A 7E1 panel on a pseudo-terminal: termios refuses the settings. That panel is down
    and retried; the other panel, MQTT and ingest keep working."""
    bad, good = tmp_path / "serial" / "bad", tmp_path / "serial" / "good"
    fds = [open_pty_link(bad), open_pty_link(good)]
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building\nleak,zigbee2mqtt,zigbee2mqtt/leak,3\n"
    )
    body = (
        "panels:\n"
        f"  old-panel: {{protocol: alarmdecoder, port: {bad}, framing: 7E1}}\n"
        f"  facp-b3: {{protocol: alarmdecoder, port: {good}}}\n"
    )
    config = panel_config(tmp_path, broker, body)
    config = config.model_copy(update={"devices": tmp_path / "devices.csv"})
    try:
        with caplog.at_level(logging.WARNING):
            async with Live(config) as live:
                links = {link.name: link for link in live.daemon.panels.links}
                await asyncio.wait_for(links["facp-b3"].connected.wait(), 10)
                os.write(fds[1], b"!LRR:015,1,CID_1111,ff\r\n")
                pub = Publisher(broker, "port-rejects-settings")
                await asyncio.to_thread(pub.publish, "zigbee2mqtt/leak", '{"water_leak": true}')
                pub.close()
                await live.seen.until(lambda evs: len(evs) >= 2)
                assert not links["old-panel"].connected.is_set()
                assert not live.daemon.failed
                assert not live.daemon.stop.is_set()
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    down = [r.getMessage() for r in caplog.records if "old-panel" in r.getMessage()]
    assert down
    assert "cannot open" in down[0]
    assert "Invalid argument" in down[0]


def test_check_refuses_a_baud_rate_no_panel_speaks(tmp_path: Path, broker: Broker) -> None:
    from alertd.problems import InvalidInput

    with pytest.raises(InvalidInput, match=r"baud rate 9601 is not a standard one"):
        panel_config(
            tmp_path,
            broker,
            "panels:\n  p: {protocol: alarmdecoder, port: /dev/ttyUSB0, baudrate: 9601}\n",
        )


PRINTER = r"""
printer_formats:
  gst_cn:
    pattern: '^(?P<time>\S+ \S+) (?P<type>\S+) (?P<text>.*) (?P<zone>\d{3}-\d{3})$'
    time_format: "%Y-%m-%d %H:%M:%S"
    types:
      火警: {kind: fire.alarm}
panels:
  gst-b5: {protocol: printer, format: gst_cn, encoding: gb18030, port: GB}
  gst-b6: {protocol: printer, format: gst_cn, port: ASCII}
"""


async def test_a_printer_port_is_read_in_the_panels_encoding(
    tmp_path: Path, broker: Broker
) -> None:
    """A GB18030 line is a fire alarm on a panel set to gb18030; on one left at ascii it
    is a dead letter that names the encoding."""
    gb, ascii_port = tmp_path / "serial" / "gb", tmp_path / "serial" / "ascii"
    fds = [open_pty_link(gb), open_pty_link(ascii_port)]
    line = "2026-11-27 03:12:45 火警 5号楼 12层 走廊 感烟探测器 001-015\r\n".encode("gb18030")
    try:
        body = PRINTER.replace("GB", str(gb)).replace("ASCII", str(ascii_port))
        async with Live(panel_config(tmp_path, broker, body)) as live:
            for link in live.daemon.panels.links:
                await asyncio.wait_for(link.connected.wait(), 10)
            os.write(fds[0], line)
            os.write(fds[1], line)
            await live.seen.until(lambda evs: len(evs) >= 1)
            (event,) = live.seen.events
            assert (event.kind, event.device_id) == (Kind.FIRE_ALARM, "gst-b5:001-015")
            assert "5号楼 12层 走廊" in event.detail
            await until(lambda: live.dead_letters())
            (dead,) = live.dead_letters()
            assert "line is not ascii" in dead["reason"]
            assert "set `encoding`" in dead["reason"]
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


async def test_a_receiver_closes_idle_connections_caps_them_and_sums_up_junk(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    body = RECEIVER.format(port=port, key=KEY).replace(
        "    port: " + str(port) + "\n",
        f"    port: {port}\n    idle_timeout_s: 1.0\n    max_connections: 2\n",
    )
    clock = FakeClock()
    async with Live(panel_config(tmp_path, broker, body), clock) as live:
        # an idle connection is closed by the receiver
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # EOF: closed for us
        writer.close()
        # a third connection closes the longest idle of the two open
        first = await asyncio.open_connection("127.0.0.1", port)
        second = await asyncio.open_connection("127.0.0.1", port)
        second[1].write(sia_dc09.message("NULL", 1, "5678", ""))
        await second[1].drain()
        await second[0].readuntil(b"\r")  # answered: the second spoke last
        with caplog.at_level(logging.WARNING):
            third = await asyncio.open_connection("127.0.0.1", port)
            third[1].write(sia_dc09.message("NULL", 2, "5678", ""))
            await third[1].drain()
            await third[0].readuntil(b"\r")  # the third is served
        assert any("closing the longest idle" in r.getMessage() for r in caplog.records)
        assert await asyncio.wait_for(first[0].read(), 10) == b""  # the first was closed
        for _, w in (first, second, third):
            w.close()
        # a flood of junk from one peer: one dead letter, then one summing up the rest
        junk = [b"\nnot a frame at all\r"] * 20 + [b"\n" + b"x" * 2000 + b"\r"] * 10
        answers = await send_dc09("127.0.0.1", port, junk, udp=True)
        assert len(answers) == 30
        await live.daemon.ingest.drained()
        assert len(live.dead_letters()) == 1
        clock.advance(61)
        for receiver in live.daemon.panels.receivers:
            receiver.flush_rejects()
        await live.daemon.ingest.drained()
        reasons = [d["reason"] for d in live.dead_letters()]
        assert len(reasons) == 2
        assert "from 127.0.0.1: 29 more rejected frame(s) between" in reasons[1]
        # counted per reason: the summary says what was wrong with each kind of frame
        first_reason = reasons[0].split(": ", 1)[1]
        assert f"19 x {first_reason}" in reasons[1]
        assert "; 10 x " in reasons[1]


async def test_a_frame_for_an_unknown_account_is_accepted_and_flagged(
    tmp_path: Path, broker: Broker
) -> None:
    from alertd.health import parts

    port = free_port()
    async with Live(panel_config(tmp_path, broker, RECEIVER.format(port=port, key=KEY))) as live:
        frame = sia_dc09.message("SIA-DCS", 1, "9999", "#9999|Nri1/FA003")
        (answer,) = await send_dc09("127.0.0.1", port, [frame])
        assert answer == sia_dc09.build('"ACK"0001R0L0#9999[]')  # a fire is a fire
        await live.seen.until(lambda evs: len(evs) >= 1)
        (event,) = live.seen.events
        assert (event.kind, event.device_id) == (Kind.FIRE_ALARM, "sia:9999:003")
        assert "account 9999 is not in receiver central's configuration" in event.detail
        flagged = [p for p in parts(live.daemon, live.daemon.clock.now()) if "accounts" in p.name]
        assert [(p.state, "9999" in p.detail) for p in flagged] == [("degraded", True)]


async def test_a_surgard_receivers_contact_id_lines_reach_the_store(
    tmp_path: Path, broker: Broker
) -> None:
    link = tmp_path / "serial" / "mlr2"
    fd = open_pty_link(link)
    body = (
        "panels:\n"
        f"  mlr2: {{protocol: surgard_mlr2, port: {link}, place: {{site: HV}},\n"
        '          zones: {"1234-015": {building: "7", floor: "3", zone: hall}}}\n'
    )
    try:
        async with Live(panel_config(tmp_path, broker, body)) as live:
            await asyncio.wait_for(live.daemon.panels.links[0].connected.wait(), 10)
            write_split(fd, b"1011           @    \x145011 181234E11001015\x14", [3, 5, 2])
            await live.seen.until(lambda evs: len(evs) >= 1)
            (event,) = live.seen.events
            loc = event.location
            assert (event.kind, event.device_id) == (Kind.FIRE_ALARM, "mlr2:1234-015")
            assert (loc.building, loc.floor, loc.zone) == ("7", "3", "hall")
            assert live.dead_letters() == []
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
