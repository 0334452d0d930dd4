"""A night at the duty desk, end to end: the daemon (as its own process where the desk's
commands cross processes), a real Mosquitto, the real twilio SDK against the fake Twilio,
Twilio's signed callbacks over real HTTP, the CLI as staff would type it."""

from __future__ import annotations

import asyncio
import getpass
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alertd.clock import FakeClock
from alertd.config import load_config
from alertd.directory.phones import mask
from alertd.directory.residents import Resident
from alertd.sites import sites_of
from alertd.store.directory import import_residents
from alertd.store.stores import open_store
from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import alertd, signed_post, start_daemon
from tests.mqtt_tools import Live, Publisher, publish, until
from tests.test_incidents import cli, rows
from tests.test_playbooks import SHIPPED

TOKEN = "desk-token"
PUBLIC = "https://alertd.example.com"
WANG = "+8613900000001"  # security, on call all day
LI = "+8613900000002"  # supervisor
ZHANG = "+8613800000805"  # lives alone on the 8th floor
RESIDENTS = [
    Resident("3", "8", "0805", "Zhang Xiulan", ZHANG, "zh", True, "lives alone, wheelchair"),
    Resident("3", "12", "1203", "Li Hua", "+8613800001203", "zh", False),
    Resident("3", "5", "0502", "Sam Lee", "+8613800000502", "en", False),
    Resident("3", "4", "0405", "Chen Jie", "+8613800000405", "zh", True, "elderly"),
]
DEVICES = (
    "device_id,profile,topic,building,floor,unit,zone\n"
    "smoke-3-12,zigbee2mqtt,zigbee2mqtt/b3/smoke_1203,3,12,1203,kitchen\n"
    "smoke-3-05,zigbee2mqtt,zigbee2mqtt/b3/smoke_0502,3,5,0502,living room\n"
)
STAFF = (
    "people:\n"
    f"  Wang: {{phone: '{WANG}', roles: [security]}}\n"
    f"  Li: {{phone: '{LI}', roles: [supervisor], language: en}}\n"
    "oncall:\n"
    "  security:\n"
    "    - {who: Wang, start: '00:00', end: '12:00'}\n"
    "    - {who: Wang, start: '12:00', end: '00:00'}\n"
)


@dataclass
class Desk:
    config: Path
    fake: FakeTwilio
    callbacks: str

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`alertd ARGS --config FILE` as its own process, as staff type it."""
        return await asyncio.to_thread(alertd, *args, "--config", str(self.config))

    def sms_to(self, phone: str) -> list[str]:
        return [r["form"]["Body"] for r in self.fake.sms() if r["form"]["To"] == phone]

    def calls_to(self, phone: str) -> list[str]:
        return [
            r["form"]["Twiml"]
            for r in self.fake.requests
            if r["kind"] == "Calls" and r["form"]["To"] == phone
        ]

    async def text(self, phone: str, body: str) -> str:
        """An SMS from `phone`, as Twilio posts it (signed)."""
        return await self._post(
            "/twilio/inbound", {"From": phone, "To": "+15005550006", "Body": body}
        )

    async def _post(self, path: str, form: dict[str, str]) -> str:
        return await signed_post(self.callbacks, PUBLIC, TOKEN, path, form)


def write_desk(
    tmp_path: Path, broker: Broker, fake: FakeTwilio, name: str, url: str | None = None
) -> tuple[Path, int]:
    """The desk's site, its store a SQLite file or the PostgreSQL database at `url`."""
    (tmp_path / "devices.csv").write_text(DEVICES)
    (tmp_path / "staff.yaml").write_text(STAFF)
    port = free_port()
    config = tmp_path / "alertd.yaml"
    config.write_text(
        "site: {name: HV, timezone: Asia/Shanghai, sms_signature: {zh: 【海景物业】, en: 'HV:'}}\n"
        f"mqtt: {{port: {broker.port}, client_id: {name}}}\n"
        + (
            f"storage: {{url: '{url}'}}\n"
            if url
            else "storage: {path: alertd.db, synchronous: NORMAL}\n"
        )
        + f"devices: devices.csv\nplaybooks: {SHIPPED}\nstaff: staff.yaml\n"
        "ingest: {tick_s: 0.05}\n"
        "delivery: {poll_s: 0.05, calls_per_s: 50}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: {TOKEN}, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
        f"http: {{host: 127.0.0.1, port: {port}, public_url: '{PUBLIC}'}}\n"
    )
    # as `alertd residents import` stores them: SQLite's before sites, PostgreSQL's with one
    site = sites_of(load_config(config)).ids[0] if url else ""
    store = open_store(tmp_path / "alertd.db", url)
    import_residents(store.conn, [replace(r, site=site) for r in RESIDENTS], datetime.now(UTC))
    store.close()
    return config, port


@pytest.fixture
async def desk(tmp_path: Path, broker: Broker) -> AsyncIterator[Desk]:
    fake = await FakeTwilio().start()
    config, port = write_desk(tmp_path, broker, fake, f"desk-{tmp_path.name[-10:]}")
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await until(lambda: b"callbacks on http" in log.read_bytes(), 10)
        yield Desk(config, fake, f"http://127.0.0.1:{port}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)
        await fake.close()
    text = log.read_text()
    for resident in RESIDENTS:  # personal data stays out of the log
        assert resident.phone not in text


async def test_a_real_fire_during_a_drill_and_what_the_desk_does_with_it(
    desk: Desk, broker: Broker
) -> None:
    # 1. a drill in building 3, then a real smoke alarm there: a real incident of its own
    drill = await desk.cli("drill", "fire-alarm", "--building", "3", "--by", "Wang")
    assert drill.returncode == 0, drill.stderr
    await until(lambda: any("【演练】" in b for b in desk.sms_to(WANG)))
    await asyncio.to_thread(publish, broker, "zigbee2mqtt/b3/smoke_1203", '{"smoke": true}')
    # 3. security is called and texted with the detector's place and the incident number
    await until(lambda: any("火警 #2" in t for t in desk.calls_to(WANG)))
    (call,) = [t for t in desk.calls_to(WANG) if "#2" in t]
    assert "3号楼 12层 1203 厨房" in call
    assert "按1确认" in call
    assert "OK" not in call
    assert "?incident=2" in call  # pressing 1 acknowledges this incident, not the drill
    # the text goes in a lane of its own, at the same time: it may land a moment after
    await until(lambda: any("#2" in b for b in desk.sms_to(WANG)))
    real = [b for b in desk.sms_to(WANG) if "#2" in b]
    assert real, desk.sms_to(WANG)
    assert not any("演练" in b for b in real)
    # 4. the door-check list reaches security, from the directory, when the text is made
    await until(lambda: any("逐户上门" in b for b in desk.sms_to(WANG) if "#2" in b))
    (listing,) = [b for b in desk.sms_to(WANG) if "#2" in b and "逐户上门" in b]
    assert "0405 Chen Jie (elderly)" in listing
    assert "0805 Zhang Xiulan (lives alone, wheelchair)" in listing
    # residents: the signature first, vulnerable residents first
    await until(lambda: len(desk.sms_to(ZHANG)) == 1)
    assert desk.sms_to(ZHANG)[0].startswith("【海景物业】3号楼火警")
    # 2. a second detector on another floor: security is told again, with the new place
    await asyncio.to_thread(publish, broker, "zigbee2mqtt/b3/smoke_0502", '{"smoke": true}')
    await until(lambda: any("火警蔓延 #2" in b for b in desk.sms_to(WANG)))
    (spreading,) = [b for b in desk.sms_to(WANG) if "火警蔓延 #2" in b]
    assert "新报警：3号楼 5层 0502 客厅" in spreading
    # 8. the vulnerable resident asks for help: a person is told within seconds
    answer = await desk.text(ZHANG, "2")
    assert "事件 #2" in answer
    await until(lambda: any("住户求助" in b for b in desk.sms_to(WANG)))
    (help_text,) = [b for b in desk.sms_to(WANG) if "Zhang Xiulan" in b and "住户求助" in b]
    assert help_text.startswith(
        "【住户求助 #2】3号楼 8层 0805 Zhang Xiulan（lives alone, wheelchair）"
    )
    assert "lives alone, wheelchair" in help_text
    assert ZHANG in help_text  # security calls her back
    # 9. Wang was told about the drill and the fire: a bare OK gets the list, OK 2 acks
    listed = await desk.text(WANG, "OK")
    assert "You have 2 incidents" in listed
    assert "#1" in listed
    assert "#2" in listed
    acked = await desk.text(WANG, "OK 2")
    assert "Incident #2 acknowledged" in acked
    await until(
        lambda: (
            rows(load_config(desk.config), "SELECT status FROM incidents WHERE id = 2")[0]["status"]
            == "acknowledged"
        )
    )
    shown = await desk.cli("incidents", "show", "2")
    assert "help_request" in shown.stdout
    assert "Zhang Xiulan asks for help" in shown.stdout
    assert "Door-check list (2) sent to security on call" in shown.stdout  # as people say it
    # 10. the record cannot be bent
    fake_person = await desk.cli("incidents", "ack", "2", "--by", "Totally Fake Person")
    assert fake_person.returncode == 2
    assert "'Totally Fake Person' is not in" in fake_person.stderr
    asked = await desk.cli("incidents", "resolve", "2", "--by", "Wang")
    assert asked.returncode == 1
    assert "still active: smoke-3-05 fire.alarm, smoke-3-12 fire.alarm" in asked.stderr
    resolved = await desk.cli(
        "incidents", "resolve", "2", "--by", "Wang", "--force", "--reason", "brigade: toast"
    )
    assert resolved.returncode == 0, resolved.stderr
    # 7. both detectors are still in alarm: no all-clear yet, and the desk is told why
    assert "the all-clear waits until these clear" in resolved.stdout
    assert not any("火警已解除" in b for b in desk.sms_to(ZHANG))
    late_ack = await desk.cli("incidents", "ack", "2", "--by", "Wang")
    assert late_ack.returncode == 1
    assert "incident 2 is resolved already" in late_ack.stderr
    # the audit trail: the staff name and the login that typed it, refusals too
    trail = (await desk.cli("audit", "--incident", "2")).stdout
    assert f"Wang ({getpass.getuser()}) via cli" in trail
    assert f"Wang via sms {mask(WANG)}: ack #2 by SMS: OK 2 -> submitted" in trail
    assert "resolve #2" in trail
    assert "ack #2 -> failed incident 2 is resolved already" in trail
    closed = await desk.cli(
        "incidents", "close", "2", "--by", "Wang", "--force", "--reason", "panel reset by brigade"
    )
    assert closed.returncode == 0, closed.stderr
    assert "still active: smoke-3-05 fire.alarm, smoke-3-12 fire.alarm" in closed.stdout
    # the residents who were told can still be told it is over: shown first, then sent
    preview = await desk.cli("incidents", "all-clear", "2", "--by", "Wang", "--yes")
    assert preview.returncode == 0, preview.stderr
    assert "sms to notified (zh): 【海景物业】" in preview.stdout
    await until(lambda: any("火警已解除" in b for b in desk.sms_to(ZHANG)))
    note = await desk.cli("incidents", "note", "2", "--by", "Wang", "--text", "x")
    assert note.returncode == 1
    assert "incident 2 is closed" in note.stderr
    # 13. one clock for people: the site's zone, with its offset
    listing_out = await desk.cli("incidents", "list")
    lines = listing_out.stdout.splitlines()
    assert len(lines) == 2
    assert all("+08:00" in line for line in lines)
    assert lines[0].endswith("DRILL")
    assert "火警 3号楼 12层 1203 厨房 / Fire alarm, Bldg 3, 12F, 1203 kitchen" in lines[1]


# -- the all-clear, in simulated time ----------------------------------------------------


@pytest.fixture
async def live_desk(tmp_path: Path, broker: Broker) -> AsyncIterator[tuple[Live, Desk, FakeClock]]:
    fake = await FakeTwilio().start()
    config, port = write_desk(tmp_path, broker, fake, f"desk-live-{tmp_path.name[-10:]}")
    clock = FakeClock(datetime.now(UTC))
    try:
        async with Live(load_config(config), clock) as running:
            yield running, Desk(config, fake, f"http://127.0.0.1:{port}"), clock
    finally:
        await fake.close()


def timeline(live: Live, incident: int) -> list[str]:
    return [
        r["type"]
        for r in rows(
            live.config, "SELECT type FROM timeline WHERE incident_id = ? ORDER BY id", incident
        )
    ]


async def test_a_flapping_detector_gets_one_all_clear_once_staff_confirm(
    live_desk: tuple[Live, Desk, FakeClock], broker: Broker
) -> None:
    live, desk, clock = live_desk
    topic = "zigbee2mqtt/b3/smoke_1203"
    pub = Publisher(broker, "flapping-detector")
    try:
        await asyncio.to_thread(pub.publish, topic, '{"smoke": true}')
        await live.seen.until(lambda evs: len(evs) == 1)
        await live.settled()
        for smoke in ("false", "true", "false", "true", "false", "true", "false"):
            await asyncio.to_thread(pub.publish, topic, f'{{"smoke": {smoke}}}')
        await live.seen.until(lambda evs: len(evs) == 8)
    finally:
        pub.close()
    await live.settled()
    assert not any("火警已解除" in b for r in RESIDENTS for b in desk.sms_to(r.phone))
    clock.advance(61)  # every detector stayed clear for the playbook's hold
    await until(lambda: "confirm" in timeline(live, 1))
    assert "all_clear" not in timeline(live, 1)  # a fire is over when staff say so
    resolved = await cli(desk.config, "incidents", "resolve", "1", "--by", "Wang")
    assert resolved.exit_code == 0, resolved.output
    assert "all-clear: 1 resident message step(s)" in resolved.output
    await live.settled()
    cleared = Counter(
        r.phone
        for r in RESIDENTS
        for b in desk.sms_to(r.phone)
        if "火警已解除" in b or "is over" in b
    )
    assert cleared == Counter({r.phone: 1 for r in RESIDENTS})  # once each, to those told
    assert timeline(live, 1).count("all_clear") == 1


async def test_a_resident_asking_for_help_with_no_incident_open_gets_one_at_their_flat(
    live_desk: tuple[Live, Desk, FakeClock],
) -> None:
    live, desk, _ = live_desk
    chen = RESIDENTS[3].phone
    answer = await desk.text(chen, "2")
    assert "duty staff are being told" in answer
    await until(lambda: rows(live.config, "SELECT id FROM incidents"))
    await live.settled()
    (incident,) = rows(live.config, "SELECT playbook, building, floor, drill FROM incidents")
    assert incident == {"playbook": "manual-emergency", "building": "3", "floor": "4", "drill": 0}
    await until(lambda: any("3号楼 4层 0405" in t for t in desk.calls_to(WANG)))
