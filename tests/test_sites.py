"""Many estates in one alertd: each site's alarms reach that site's staff and residents
and nobody else's, in its own signature and time. A real Mosquitto, the real twilio SDK
against the fake Twilio, the shipped playbooks, a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alertd.config import load_config
from alertd.daemon import load_router
from alertd.directory.residents import Resident, read_residents
from alertd.engine.engine import Engine
from alertd.engine.state import Incident
from alertd.events import Event, Kind, Severity, State
from alertd.problems import InvalidInput
from alertd.sites import sites_of
from alertd.store import SqliteStore
from alertd.store.directory import import_residents
from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import signed_post
from tests.mqtt_tools import Live, Publisher, until
from tests.test_playbooks import SHIPPED

PUBLIC = "https://alertd.example.com"
#: both estates have a building 7 with a flat 0301 and a flat 0201 below it, and number
#: their detectors alike
DEVICES = {
    "harbour": (
        "device_id,profile,topic,building,floor,unit,zone\n"
        "smoke-1,zigbee2mqtt,zigbee2mqtt/harbour/smoke_1,7,3,0301,hall\n"
        "leak-1,zigbee2mqtt,zigbee2mqtt/harbour/leak_1,7,3,0301,kitchen\n"
    ),
    "pine": (
        "device_id,profile,topic,building,floor,unit,zone\n"
        "smoke-1,zigbee2mqtt,zigbee2mqtt/pine/smoke_1,7,3,0301,hall\n"
        "leak-1,zigbee2mqtt,zigbee2mqtt/pine/leak_1,7,3,0301,kitchen\n"
    ),
}
RESIDENTS = (
    "site,building,floor,unit,name,phone,language,vulnerable,notes\n"
    "harbour,7,3,0301,Harbour Upstairs,+8613800000301,zh,,\n"
    "harbour,7,2,0201,Harbour Below,+8613800000201,zh,,\n"
    "harbour,7,9,0901,Harbour Far,+8613800000901,en,yes,lives alone\n"
    "pine,7,3,0301,Pine Upstairs,+8613900000301,zh,,\n"
    "pine,7,2,0201,Pine Below,+8613900000201,zh,,\n"
    "pine,7,9,0901,Pine Far,+8613900000901,en,yes,wheelchair\n"
)
HARBOUR = {"+8613800000301", "+8613800000201", "+8613800000901"}
PINE = {"+8613900000301", "+8613900000201", "+8613900000901"}
STAFF = {
    "harbour": (
        "people:\n"
        "  Wang: {phone: '+8613700000001', roles: [security, maintenance]}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
    ),
    "pine": (
        "people:\n"
        "  Zhou: {phone: '+8613700000002', roles: [security, maintenance]}\n"
        "oncall:\n  maintenance:\n    - {who: Zhou, start: '00:00', end: '12:00'}\n"
        "    - {who: Zhou, start: '12:00', end: '00:00'}\n"
    ),
}
#: the company's file: a regional supervisor for both, head office for all
COMPANY = (
    "people:\n"
    "  Li: {phone: '+8613700000009', roles: [supervisor], sites: [harbour, pine]}\n"
    "  Desk: {phone: '+8613700000010', roles: [front_desk]}\n"
)


def write_sites(tmp_path: Path, broker: Broker, fake: FakeTwilio) -> Path:
    for site in ("harbour", "pine"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "devices.csv").write_text(DEVICES[site])
        (tmp_path / site / "staff.yaml").write_text(STAFF[site])
    (tmp_path / "company.yaml").write_text(COMPANY)
    (tmp_path / "devices.csv").write_text("device_id,profile,topic\n")
    config = tmp_path / "alertd.yaml"
    config.write_text(
        "site: {timezone: Asia/Shanghai, country: CN}\n"
        "sites:\n"
        "  harbour:\n"
        "    name: Harbour View\n"
        "    sms_signature: {zh: 【海景物业】, en: 'Harbour View:'}\n"
        "    devices: harbour/devices.csv\n"
        "    staff: harbour/staff.yaml\n"
        "  pine:\n"
        "    name: Pine Garden\n"
        "    timezone: Europe/London\n"
        "    sms_signature: {zh: 【松园物业】, en: 'Pine Garden:'}\n"
        "    centre: 松园物业服务中心\n"
        "    devices: pine/devices.csv\n"
        "    staff: pine/staff.yaml\n"
        "    from_number: '+15005550007'\n"
        f"mqtt: {{port: {broker.port}, client_id: sites-{tmp_path.name[-10:]}}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        f"devices: devices.csv\nplaybooks: {SHIPPED}\nstaff: company.yaml\n"
        "ingest: {tick_s: 0.05}\n"
        "delivery: {poll_s: 0.05, calls_per_s: 50}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
        f"http: {{host: 127.0.0.1, port: {free_port()}, public_url: '{PUBLIC}'}}\n"
    )
    loaded = load_config(config)
    found = read_residents(
        RESIDENTS.encode(), "CN", name="residents.csv", site=sites_of(loaded).resident_site()
    )
    assert found.problems == []
    store = SqliteStore(loaded.storage.path)
    import_residents(store.conn, found.residents, datetime.now(UTC))
    store.close()
    return config


@pytest.fixture
async def sites(tmp_path: Path, broker: Broker) -> AsyncIterator[tuple[Live, FakeTwilio]]:
    fake = await FakeTwilio().start()
    try:
        async with Live(load_config(write_sites(tmp_path, broker, fake))) as live:
            yield live, fake
    finally:
        await fake.close()


async def text_in(live: Live, phone: str, body: str) -> str:
    """An SMS from `phone` to alertd, as Twilio posts it (signed)."""
    assert live.config.http is not None
    base = f"http://127.0.0.1:{live.config.http.port}"
    form = {"From": phone, "To": "+15005550006", "Body": body}
    return await signed_post(base, PUBLIC, "t", "/twilio/inbound", form)


async def test_staff_acknowledge_only_the_incidents_of_their_own_sites(
    sites: tuple[Live, FakeTwilio], broker: Broker
) -> None:
    live, _ = sites
    pub = Publisher(broker, "ack-sites")
    try:
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/harbour/smoke_1", '{"smoke": true}')
        await live.seen.until(lambda evs: len(evs) == 1)
    finally:
        pub.close()
    await live.settled()
    refused = await text_in(live, "+8613700000002", "OK 1")  # Zhou works at Pine Garden
    assert "Incident #1 is not at your site" in refused
    store = SqliteStore(live.config.storage.path)
    try:
        assert store.conn.execute("SELECT count(*) FROM commands").fetchone()[0] == 0
    finally:
        store.close()
    taken = await text_in(live, "+8613700000001", "OK 1")  # Wang, Harbour View's guard
    assert "Incident #1 acknowledged" in taken


def texts(fake: FakeTwilio) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for request in fake.sms():
        out.setdefault(request["form"]["To"], []).append(request["form"]["Body"])
    return out


async def test_a_fire_at_one_site_and_a_leak_at_another_reach_only_their_own_people(
    sites: tuple[Live, FakeTwilio], broker: Broker
) -> None:
    live, fake = sites
    pub = Publisher(broker, "two-sites")
    try:
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/harbour/smoke_1", '{"smoke": true}')
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/pine/leak_1", '{"water_leak": true}')
        await live.seen.until(lambda evs: len(evs) == 2)
    finally:
        pub.close()
    assert {(e.device_id, e.location.site) for e in live.seen.events} == {
        ("harbour/smoke-1", "harbour"),
        ("pine/leak-1", "pine"),
    }
    await live.settled()
    await until(lambda: "+8613700000002" in texts(fake) and "+8613900000201" in texts(fake))
    await live.settled()
    sent = texts(fake)
    # the fire at Harbour View: its building 7, signed as Harbour View, nobody of Pine's
    for phone in HARBOUR:
        assert any(
            (b.startswith("【海景物业】") and "火警" in b) or "Harbour View: " in b
            for b in sent[phone]
        ), sent[phone]
    assert not any("松园" in b or "Pine" in b for p in HARBOUR for b in sent[p])
    # the leak at Pine Garden: its flat and the flat below, in its own signature
    assert all(
        b.startswith("【松园物业】") for p in ("+8613900000301", "+8613900000201") for b in sent[p]
    )
    assert "+8613900000901" not in sent  # a leak texts the flat and the one below only
    assert not any("火警" in b for p in PINE for b in sent.get(p, []))
    # each site's texts come from its own sender
    senders = {r["form"]["To"]: r["form"].get("From") for r in fake.sms()}
    assert {senders[p] for p in HARBOUR} == {"+15005550006"}
    assert {senders[p] for p in ("+8613900000301", "+8613900000201")} == {"+15005550007"}
    # staff: each site's on call, for their own site's incident only; the fire's
    # door-check list names Harbour View's vulnerable resident of building 7, not Pine's
    assert all("火警" in b or "FIRE" in b for b in sent["+8613700000001"])
    (doors,) = [b for b in sent["+8613700000001"] if "逐户" in b]
    assert "0901 Harbour Far (lives alone)" in doors
    assert "Pine" not in doors
    assert not any("火警" in b for b in sent["+8613700000002"])
    # Pine's staff text gives Pine's time (London), not Harbour View's (Shanghai)
    rows = SqliteStore(live.config.storage.path)
    try:
        opened = dict(rows.conn.execute("SELECT site, opened_at FROM incidents").fetchall())
    finally:
        rows.close()
    assert set(opened) == {"harbour", "pine"}
    harbour_at = datetime.fromisoformat(opened["harbour"]).astimezone(
        sites_of(live.config).find("harbour").tz
    )
    pine_at = datetime.fromisoformat(opened["pine"]).astimezone(
        sites_of(live.config).find("pine").tz
    )
    (zhou,) = sent["+8613700000002"]
    assert f"（{pine_at:%H:%M}）" in zhou
    assert f"{harbour_at:%H:%M}" not in zhou


def test_a_detector_placed_at_an_estate_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    """The devices file lists a smoke detector under "Pine Garden" while the one site
    configured is Harbour View: texting Harbour View's building 7 about it would send the
    wrong people out. The row is skipped and says why; the others load."""
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,site,building\n"
        "smoke-pine,zigbee2mqtt,z/pine/smoke,Pine Garden,7\n"
        "smoke-hv,zigbee2mqtt,z/hv/smoke,,7\n"
        "smoke-hv2,zigbee2mqtt,z/hv/smoke2,Harbour View,7\n"
    )
    (tmp_path / "alertd.yaml").write_text("site: {name: Harbour View}\ndevices: devices.csv\n")
    router, problems = load_router(load_config(tmp_path / "alertd.yaml"))
    assert [d.device_id for d in router.devices] == ["smoke-hv", "smoke-hv2"]
    assert {d.location.site for d in router.devices} == {"Harbour View"}
    (problem,) = problems
    assert problem.where.endswith("devices.csv:2")
    assert "unknown site 'Pine Garden' (one of: Harbour View)" in problem.message


def test_residents_of_a_site_that_is_not_configured_are_reported_by_line(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(
        "sites: {harbour: {name: Harbour View}, pine: {name: Pine Garden}}\n"
    )
    sites = sites_of(load_config(tmp_path / "alertd.yaml"))
    found = read_residents(
        b"site,building,floor,unit,name,phone,language\nharbour,7,3,0301,A,13800000301,zh\n"
        b"maple,7,3,0301,B,13800000302,zh\nPine Garden,7,3,0301,C,13800000303,zh\n"
        b",7,3,0302,D,13800000304,zh\n",
        "CN",
        name="all.csv",
        site=sites.resident_site(),
    )
    assert [(r.site, r.phone) for r in found.residents] == [
        ("harbour", "+8613800000301"),
        ("pine", "+8613800000303"),
    ]
    assert [str(p) for p in found.problems] == [
        "all.csv:3: row skipped: unknown site 'maple' (one of: harbour, pine)",
        "all.csv:5: row skipped: which site? (one of: harbour, pine)",
    ]


def test_an_import_for_one_site_moves_out_nobody_of_another(tmp_path: Path) -> None:
    from alertd.directory.importing import apply, plan

    (tmp_path / "alertd.yaml").write_text("sites: {harbour: {}, pine: {}}\n")
    sites = sites_of(load_config(tmp_path / "alertd.yaml"))
    store = SqliteStore(tmp_path / "alertd.db")
    both = read_residents(RESIDENTS.encode(), "CN", name="r.csv", site=sites.resident_site())
    apply(store.conn, both, datetime.now(UTC), allow_removals=False)
    # Pine's new list: one flat fewer; Harbour View's residents are not in the file at all
    pine = read_residents(
        b"building,floor,unit,name,phone,language\n7,3,0301,Pine Upstairs,13900000301,zh\n"
        b"7,2,0201,Pine Below,13900000201,zh\n",
        "CN",
        name="pine.csv",
        site=sites.resident_site("pine"),
    )
    planned = plan(store.conn, pine)
    assert (planned.active, planned.moved_out, planned.unchanged) == (3, 1, 2)
    apply(store.conn, pine, datetime.now(UTC), allow_removals=True)
    living = store.conn.execute(
        "SELECT site, COUNT(*) FROM residents WHERE moved_out IS NULL GROUP BY site"
    ).fetchall()
    store.close()
    assert dict(living) == {"harbour": 3, "pine": 2}


def test_a_site_entry_takes_the_shared_settings_and_its_own(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(
        "site: {timezone: Asia/Shanghai, sms_signature: 【物业】,\n"
        "       unit_format: '{floor:02}{flat:02}'}\n"
        "sites:\n"
        "  harbour: {name: Harbour View}\n"
        "  pine: {timezone: Europe/London, devices: pine.csv, staff: pine.yaml}\n"
    )
    config = load_config(tmp_path / "alertd.yaml")
    harbour, pine = sites_of(config)
    assert (harbour.id, harbour.name, str(harbour.tz)) == (
        "harbour",
        "Harbour View",
        "Asia/Shanghai",
    )
    assert (pine.name, str(pine.tz), pine.signatures["zh"]) == ("pine", "Europe/London", "【物业】")
    assert pine.unit_format == "{floor:02}{flat:02}"
    assert pine.devices == tmp_path / "pine.csv"
    assert harbour.devices == tmp_path / "devices.csv"
    assert pine.staff == tmp_path / "pine.yaml"
    assert harbour.staff is None


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        ("{'pine garden': {}}", "site id 'pine garden'"),
        ("{a: {name: X}, b: {name: X}}", "two sites are named 'X'"),
        ("{a: {timezone: Mars/Olympus}}", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_sites_section_is_refused_naming_what(
    tmp_path: Path, sites: str, message: str
) -> None:
    (tmp_path / "alertd.yaml").write_text(f"sites: {sites}\n")
    with pytest.raises(InvalidInput) as caught:
        load_config(tmp_path / "alertd.yaml")
    assert message in str(caught.value)


# -- a broker per site -------------------------------------------------------------------


def write_three(tmp_path: Path, brokers: list[Broker], fake: FakeTwilio) -> Path:
    """Three estates, each on its own broker, numbering their devices and topics alike."""
    entries = ""
    for n, (site, broker) in enumerate(zip(("harbour", "pine", "maple"), brokers, strict=True)):
        (tmp_path / site).mkdir()
        (tmp_path / site / "devices.csv").write_text(
            "device_id,profile,topic,building,floor,unit\n"
            "smoke-1,zigbee2mqtt,zigbee2mqtt/smoke_1,7,3,0301\n"
        )
        (tmp_path / site / "staff.yaml").write_text(
            f"people:\n  Guard{n}: {{phone: '+861370000010{n}', roles: [security, front_desk]}}\n"
        )
        entries += (
            f"  {site}:\n    devices: {site}/devices.csv\n    staff: {site}/staff.yaml\n"
            f"    mqtt: {{port: {broker.port}, client_id: {site}-{tmp_path.name[-8:]}, "
            "keepalive_s: 5, reconnect_max_s: 0.5}\n"
        )
    (tmp_path / "company.yaml").write_text(
        "people:\n  Head: {phone: '+8613700000199', roles: [front_desk]}\n"
    )
    config = tmp_path / "alertd.yaml"
    config.write_text(
        "site: {timezone: Asia/Shanghai}\n"
        f"sites:\n{entries}"
        f"mqtt: {{port: {brokers[0].port}, client_id: shared-{tmp_path.name[-8:]}}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        f"playbooks: {SHIPPED}\nstaff: company.yaml\n"
        "ingest: {tick_s: 0.05}\n"
        "delivery: {poll_s: 0.05, calls_per_s: 50}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
    )
    return config


def listen(broker: Broker, topic: str) -> tuple[Any, list[bytes]]:
    """A client on `broker` collecting what is published to `topic` (subscribed when
    this returns)."""
    import threading

    import paho.mqtt.client as paho

    got: list[bytes] = []
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"listen-{broker.port}")
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    return client, got


async def test_one_sites_broker_down_leaves_the_others_working_and_its_staff_told(
    tmp_path: Path,
) -> None:
    from alertd.clock import FakeClock
    from alertd.daemon import BROKER_TELL_S
    from alertd.health import parts

    brokers = [Broker(tmp_path / f"mosquitto-{n}").start() for n in range(3)]
    fake = await FakeTwilio().start()
    clock = FakeClock(datetime.now(UTC))
    try:
        config = load_config(write_three(tmp_path, brokers, fake))
        async with Live(config, clock) as live:
            await until(lambda: all(link.mqtt.connected.is_set() for link in live.daemon.links))
            assert [link.sites for link in live.daemon.links] == [
                ("harbour",),
                ("pine",),
                ("maple",),
            ]
            await asyncio.to_thread(brokers[1].stop)  # Pine Garden's broker
            await until(lambda: not live.daemon.links[1].mqtt.connected.is_set())
            heard = [listen(brokers[0], "pa/#"), listen(brokers[2], "pa/#")]
            # the same topic on the other two brokers: two fires, each at its own site
            for broker in (brokers[0], brokers[2]):
                pub = Publisher(broker, f"pub-{broker.port}")
                try:
                    await asyncio.to_thread(pub.publish, "zigbee2mqtt/smoke_1", '{"smoke": true}')
                    if broker is brokers[2]:  # a device nobody listed, on Maple's broker
                        await asyncio.to_thread(pub.publish, "zigbee2mqtt/smoke_99", "{}")
                finally:
                    pub.close()
            await live.seen.until(lambda evs: len(evs) == 2)
            assert sorted(e.device_id for e in live.seen.events) == [
                "harbour/smoke-1",
                "maple/smoke-1",
            ]
            await until(lambda: live.dead_letters())
            assert [(d["topic"], d["site"]) for d in live.dead_letters()] == [
                ("zigbee2mqtt/smoke_99", "maple")
            ]
            found = {p.name: p for p in parts(live.daemon, clock.now())}
            pine = found[f"mqtt 127.0.0.1:{brokers[1].port} (pine)"]
            assert pine.state == "degraded"
            assert "pine unheard" in pine.detail
            assert found[f"mqtt 127.0.0.1:{brokers[0].port} (harbour)"].state == "ok"
            # Pine's guard and head office are told once the outage lasts; nobody else
            await until(lambda: live.daemon.links[1].down_since is not None)
            clock.advance(BROKER_TELL_S + 1)
            await until(lambda: "+8613700000101" in texts(fake) and "+8613700000199" in texts(fake))
            told = [b for b in texts(fake)["+8613700000101"] if "MQTT" in b]
            assert len(told) == 1
            assert "pine" in told[0]
            assert not any("MQTT" in b for b in texts(fake).get("+8613700000100", []))
            await live.settled()
            await until(lambda: "+8613700000100" in texts(fake) and "+8613700000102" in texts(fake))
            # each fire's PA broadcast goes to the controller on its own site's broker
            await until(lambda: all(len(h[1]) == 1 for h in heard))
            for client, _ in heard:
                client.loop_stop()
                client.disconnect()
            assert not any("火警" in b for b in texts(fake).get("+8613700000101", []))
            brokers[1].start()
            await until(lambda: live.daemon.links[1].mqtt.connected.is_set(), 30)
            await until(lambda: any("已恢复" in b for b in texts(fake)["+8613700000101"]))
    finally:
        await fake.close()
        for broker in brokers:
            broker.stop()


# -- upgrading ---------------------------------------------------------------------------


async def test_a_store_written_before_sites_belongs_to_the_one_site_it_served(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Yesterday's store, with residents and an incident but no site on its residents,
    opened by today's one-site configuration unchanged: its residents are that site's
    (texted by the next fire), its incidents too."""
    import alertd.store.sqlite as sqlite_store
    from alertd.store.schema import MIGRATIONS

    before = next(
        n for n, m in enumerate(MIGRATIONS, 1) if m.name.startswith("residents belong to a site")
    )
    with monkeypatch.context() as before_sites:
        before_sites.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[: before - 1])
        old = SqliteStore(tmp_path / "alertd.db")
        old.conn.execute(
            "INSERT INTO residents (building, floor, unit, name, phone, language, vulnerable, "
            "notes, updated_at) VALUES ('7', '3', '0301', 'Old Resident', '+8613800000301', "
            "'zh', 0, '', '2026-01-01T00:00:00+00:00')"
        )
        old.close()
    fake = await FakeTwilio().start()
    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,building,floor,unit\n"
        "smoke-1,zigbee2mqtt,zigbee2mqtt/hv/smoke_1,7,3,0301\n"
    )
    (tmp_path / "alertd.yaml").write_text(
        "site: {name: Harbour View, timezone: Asia/Shanghai}\n"
        f"mqtt: {{port: {broker.port}, client_id: upgrade-{tmp_path.name[-8:]}}}\n"
        "storage: {path: alertd.db, synchronous: NORMAL}\n"
        f"devices: devices.csv\nplaybooks: {SHIPPED}\n"
        "ingest: {tick_s: 0.05}\ndelivery: {poll_s: 0.05}\n"
        f"twilio: {{account_sid: AC{'0' * 32}, auth_token: t, "
        f"from_number: '+15005550006', api_base_url: '{fake.base_url}'}}\n"
    )
    try:
        async with Live(load_config(tmp_path / "alertd.yaml")) as live:
            pub = Publisher(broker, f"upgrade-pub-{tmp_path.name[-8:]}")
            try:
                await asyncio.to_thread(pub.publish, "zigbee2mqtt/hv/smoke_1", '{"smoke": true}')
            finally:
                pub.close()
            await live.seen.until(lambda evs: len(evs) == 1)
            assert live.seen.events[0].device_id == "smoke-1"  # one site: ids as they were
            await live.settled()
            await until(lambda: "+8613800000301" in texts(fake))
    finally:
        await fake.close()
    store = SqliteStore(tmp_path / "alertd.db")
    try:
        assert store.conn.execute("SELECT site FROM residents").fetchall() == [("Harbour View",)]
        assert store.conn.execute("SELECT site FROM incidents").fetchall() == [("Harbour View",)]
    finally:
        store.close()


# -- operations by site ------------------------------------------------------------------


def test_check_reports_each_sites_gaps_and_whatever_belongs_to_no_site(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from alertd.cli import main

    (tmp_path / "devices.csv").write_text(
        "device_id,profile,topic,site,building\n"
        "smoke-1,zigbee2mqtt,z/h/smoke,harbour,7\n"
        "smoke-2,zigbee2mqtt,z/p/smoke,pine,7\n"
        "smoke-3,zigbee2mqtt,z/m/smoke,maple,7\n"  # a site nobody configured
        "smoke-4,zigbee2mqtt,z/x/smoke,,7\n"  # which one?
    )
    # Harbour View's team covers security round the clock; Pine Garden's has nobody
    (tmp_path / "harbour.yaml").write_text(
        "people:\n  Wang: {phone: '+8613700000001', roles: [security, maintenance, supervisor]}\n"
        "oncall:\n  security:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
        "  maintenance:\n    - {who: Wang, start: '00:00', end: '12:00'}\n"
        "    - {who: Wang, start: '12:00', end: '00:00'}\n"
    )
    (tmp_path / "pine.yaml").write_text(
        "people:\n  Zhou: {phone: '+8613700000002', roles: [maintenance, supervisor]}\n"
        "oncall:\n  maintenance:\n    - {who: Zhou, start: '00:00', end: '12:00'}\n"
        "    - {who: Zhou, start: '12:00', end: '00:00'}\n"
    )
    (tmp_path / "alertd.yaml").write_text(
        "sites:\n"
        "  harbour: {name: Harbour View, staff: harbour.yaml}\n"
        "  pine: {name: Pine Garden, staff: pine.yaml}\n"
        "storage: {path: alertd.db}\n"
        f"devices: devices.csv\nplaybooks: {SHIPPED}\n"
        "panels:\n"
        "  gst: {protocol: contact_id, port: /dev/null, place: {site: Pine Garden}}\n"
    )
    store = SqliteStore(tmp_path / "alertd.db")
    import_residents(
        store.conn,
        [Resident("7", "3", "0301", "Left Over", "+8613800000301", "zh", False, site="maple")],
        datetime.now(UTC),
    )
    store.close()
    result = CliRunner().invoke(main, ["check", "--config", str(tmp_path / "alertd.yaml")])
    assert result.exit_code == 1
    said = result.output
    assert "devices.csv:4: row skipped: unknown site 'maple' (one of: harbour, pine)" in said
    assert "devices.csv:5: row skipped: which site? (one of: harbour, pine)" in said
    assert "panels.gst.place.site: 'Pine Garden' is a name: write the site's id 'pine'" in said
    assert "1 resident(s) of site 'maple', which is not configured: never texted" in said
    # the fire playbook calls security on call: Pine Garden has nobody, Harbour View has Wang
    assert "role 'security', which nobody in the staff file at pine holds" in said
    assert "at harbour" not in said
    assert "2 sites" in said


async def test_sites_lists_each_sites_devices_residents_staff_and_state(
    tmp_path: Path, broker: Broker
) -> None:
    from click.testing import CliRunner

    from alertd.cli import main

    fake = await FakeTwilio().start()
    try:
        config = write_sites(tmp_path, broker, fake)
        listed = CliRunner().invoke(main, ["sites", "--config", str(config)])
    finally:
        await fake.close()
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line.split() for line in listed.output.splitlines()[1:3]}
    broker_at = f"127.0.0.1:{broker.port}"
    # two devices, three residents, their team and the company's two, nothing open; no
    # daemon answers, so no state
    assert rows["harbour"] == [
        *("harbour", "Harbour", "View", "Asia/Shanghai", "2", "3", "3", "0", broker_at, "-")
    ]
    assert rows["pine"] == [
        *("pine", "Pine", "Garden", "Europe/London", "2", "3", "3", "0", broker_at, "-")
    ]


# -- the engine keeps sites apart --------------------------------------------------------


def at_site(site: str, kind: Kind, device: str, state: State = State.ACTIVE) -> Event:
    """An event at building 3 of `site` (every estate has one)."""
    from tests.test_playbooks import event

    e = event(kind, state, device=device)
    return dataclasses.replace(e, location=dataclasses.replace(e.location, site=site))


def decide(engine: Engine, events: list[Event]) -> list[Incident]:
    from alertd.engine.state import IncidentIndex

    index, opened = IncidentIndex([]), []
    for n, e in enumerate(events):
        _, decisions = engine.on_event(e, index, e.occurred_at, 100 + n)
        for d in decisions:
            if d.incident is not None:
                index.put(d.incident)
                opened.append(d.incident)
    return opened


def test_correlation_and_inhibition_never_cross_sites() -> None:
    from alertd.engine.inhibit import InhibitRule
    from tests.test_incident_rules import PLAYBOOKS
    from tests.test_playbooks import TZ

    # a rule that compares the building alone: Pine's building 3 is not Harbour's
    rule = InhibitRule(source=[Kind.POWER_LOSS], target=[Kind.SENSOR_OFFLINE], equal=["building"])
    engine = Engine(PLAYBOOKS, TZ, inhibit=[rule])
    opened = decide(
        engine,
        [
            at_site("harbour", Kind.POWER_LOSS, "harbour/mains-3"),
            at_site("pine", Kind.SENSOR_OFFLINE, "pine/cam-3"),  # not explained by Harbour's
            at_site("harbour", Kind.FIRE_ALARM, "harbour/smoke-3"),
            at_site("pine", Kind.FIRE_ALARM, "pine/smoke-3"),  # not joined to Harbour's fire
        ],
    )
    assert [(i.playbook, i.location.site) for i in opened] == [
        ("power-loss", "harbour"),
        ("sensor-offline", "pine"),
        ("fire-alarm", "harbour"),
        ("fire-alarm", "pine"),
    ]


def test_a_site_limits_a_playbook_or_replaces_it_with_its_own() -> None:
    from tests.test_incident_rules import PLAYBOOKS
    from tests.test_playbooks import TZ

    leak = PLAYBOOKS["water-leak"]
    harbour_only = leak.model_copy(
        update={"match": leak.match.model_copy(update={"sites": ["harbour"]})}
    )
    pine_own = leak.model_copy(update={"severity": Severity.CRITICAL})  # same name, its own
    engine = Engine(
        {**PLAYBOOKS, "water-leak": harbour_only}, TZ, overrides={"pine": {"water-leak": pine_own}}
    )
    opened = decide(
        engine,
        [
            at_site("harbour", Kind.LEAK, "harbour/leak-1"),
            at_site("maple", Kind.LEAK, "maple/leak-1"),  # the shared one serves harbour alone
            at_site("pine", Kind.LEAK, "pine/leak-1"),
        ],
    )
    assert [(i.location.site, i.severity) for i in opened] == [
        ("harbour", Severity.MAJOR),
        ("pine", Severity.CRITICAL),  # Pine's own playbook of that name
    ]
    # later decisions (timers, acknowledgements, the all-clear) find the same playbook
    assert engine.book(opened[1]) is pine_own
    assert engine.book(opened[0]) is harbour_only


async def test_a_reload_takes_each_sites_files_and_a_broken_one_holds_back_its_site_alone(
    sites: tuple[Live, FakeTwilio], broker: Broker, tmp_path: Path
) -> None:
    live, fake = sites
    (tmp_path / "pine" / "devices.csv").write_text(
        DEVICES["pine"] + "smoke-2,zigbee2mqtt,zigbee2mqtt/pine/smoke_2,7,9,0901,hall\n"
    )
    (tmp_path / "harbour" / "devices.csv").write_text(
        DEVICES["harbour"] + "smoke-9,no_such_profile,zigbee2mqtt/harbour/smoke_9,7,9,0901\n"
    )
    (tmp_path / "harbour" / "staff.yaml").write_text("people: {Wang: {phone: [oops\n")
    await live.daemon.reload()
    said = "\n".join(live.daemon.problems)
    assert "harbour/devices.csv:4: row skipped: unknown profile" in said
    assert "(site harbour keeps its devices)" in said
    assert "staff file not reloaded" in said
    assert "harbour/staff.yaml" in said
    pub = Publisher(broker, "reload-sites")
    try:  # Pine's new detector is heard; Harbour View's devices and team are as they were
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/pine/smoke_2", '{"smoke": true}')
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/harbour/smoke_1", '{"smoke": true}')
        await live.seen.until(lambda evs: len(evs) == 2)
    finally:
        pub.close()
    assert sorted(e.device_id for e in live.seen.events) == ["harbour/smoke-1", "pine/smoke-2"]
    await live.settled()
    await until(lambda: "+8613700000001" in texts(fake))  # Wang, of the team kept


async def test_declaring_by_hand_asks_which_site_when_there_are_several(
    sites: tuple[Live, FakeTwilio],
) -> None:
    from click.testing import CliRunner

    from alertd.cli import main

    live, _ = sites
    config = str(live.config.storage.path.parent / "alertd.yaml")
    base = ["declare", "fire", "--building", "7", "--by", "Li", "--config", config]
    asked = await asyncio.to_thread(CliRunner().invoke, main, base)
    assert asked.exit_code == 2
    assert "which site? (one of: harbour, pine)" in asked.output
    done = await asyncio.to_thread(CliRunner().invoke, main, [*base, "--site", "Pine Garden"])
    assert done.exit_code == 0, done.output
    await live.seen.until(lambda evs: len(evs) == 1)
    assert live.seen.events[0].location.site == "pine"


async def test_the_command_line_by_site(sites: tuple[Live, FakeTwilio], broker: Broker) -> None:
    """Import for one site, list one site's incidents, grant an account sites."""
    from click.testing import CliRunner

    from alertd.cli import main

    live, _ = sites
    root = live.config.storage.path.parent
    config = ["--config", str(root / "alertd.yaml")]

    def run(*args: str, stdin: str | None = None) -> Any:
        return CliRunner().invoke(main, [*args, *config], input=stdin)

    (root / "pine.csv").write_text(
        "building,floor,unit,name,phone,language\n7,3,0301,Pine Upstairs,13900000301,zh\n"
        "7,2,0201,Pine Below,13900000201,zh\n7,9,0901,Pine Far,13900000901,en\n"
        "7,5,0501,Pine New,13900000501,zh\n"
    )
    done = await asyncio.to_thread(
        run, "residents", "import", str(root / "pine.csv"), "--site", "pine"
    )
    assert done.exit_code == 0, done.output
    assert (
        "1 added, 1 changed, 2 unchanged, 0 moved out of 3" in done.output
    )  # 0901: vulnerable no more
    wrong = await asyncio.to_thread(
        run, "residents", "import", str(root / "pine.csv"), "--site", "elm"
    )
    assert wrong.exit_code == 2
    assert "unknown site 'elm'" in wrong.output
    pub = Publisher(broker, "cli-sites")
    try:
        await asyncio.to_thread(pub.publish, "zigbee2mqtt/pine/leak_1", '{"water_leak": true}')
        await live.seen.until(lambda evs: len(evs) == 1)
    finally:
        pub.close()
    await live.settled()
    listed = await asyncio.to_thread(run, "incidents", "list", "--site", "harbour")
    assert listed.output.strip() == ""
    listed = await asyncio.to_thread(run, "incidents", "list", "--site", "Pine Garden")
    assert "pine" in listed.output
    assert "water leak" in listed.output.lower() or "漏水" in listed.output
    added = await asyncio.to_thread(
        run, "users", "add", "hv", "--role", "duty", "--staff", "Wang", "--sites", "harbour",
        "--password-stdin", stdin="a long password 1\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    granted = await asyncio.to_thread(run, "users", "sites", "hv", "harbour,Pine Garden")
    assert granted.exit_code == 0, granted.output
    assert "account hv sees harbour, pine" in granted.output
    refused = await asyncio.to_thread(run, "users", "sites", "hv", "elm")
    assert refused.exit_code == 2
    listing = await asyncio.to_thread(run, "users", "list")
    assert "harbour, pine" in listing.output


# -- what a typo, a hand-made request or a shared broker must not do --------------------


def test_a_typo_in_a_site_cell_moves_nobody_of_that_flat_out(tmp_path: Path) -> None:
    from alertd.directory.importing import apply, plan

    (tmp_path / "alertd.yaml").write_text("sites: {harbour: {}, pine: {}}\n")
    sites = sites_of(load_config(tmp_path / "alertd.yaml"))
    store = SqliteStore(tmp_path / "alertd.db")
    both = read_residents(RESIDENTS.encode(), "CN", name="r.csv", site=sites.resident_site())
    apply(store.conn, both, datetime.now(UTC), allow_removals=False)
    again = read_residents(
        RESIDENTS.replace("pine,7,2,0201", "pien,7,2,0201").encode(),
        "CN",
        name="r.csv",
        site=sites.resident_site(),
    )
    assert [p.where for p in again.problems] == ["r.csv:6"]
    assert plan(store.conn, again).moved_out == 0  # Pine Below is not moved out for it
    store.close()


async def test_a_site_with_a_sender_of_its_own_never_takes_the_accounts_other_half(
    tmp_path: Path,
) -> None:
    from integrations.twilio.sink import Sender, TwilioSink

    (tmp_path / "alertd.yaml").write_text(
        "twilio: {account_sid: AC00000000000000000000000000000000, auth_token: t, "
        "messaging_service_sid: MG0000000000000000000000000000000a}\n"
        "sites: {harbour: {}, pine: {from_number: '+15005550007'}}\n"
    )
    config = load_config(tmp_path / "alertd.yaml")
    harbour, pine = sites_of(config)
    assert (pine.from_number, pine.messaging_service_sid) == ("+15005550007", None)
    assert harbour.messaging_service_sid == "MG0000000000000000000000000000000a"
    assert config.twilio is not None
    senders = {s.id: Sender(s.from_number, s.messaging_service_sid) for s in (harbour, pine)}
    sink = TwilioSink(config.twilio, "sms", None, senders)
    try:
        assert sink._sender("pine") == {"from_": "+15005550007"}
        assert sink._sender("harbour") == {"messaging_service_sid": harbour.messaging_service_sid}
    finally:
        await sink.close()


async def test_a_hand_made_declaration_at_a_site_not_configured_fails_once(
    sites: tuple[Live, FakeTwilio],
) -> None:
    from alertd.store import incidents as incidents_db

    live, _ = sites
    store = SqliteStore(live.config.storage.path)
    try:
        incidents_db.add_command(
            store.conn,
            "declare",
            None,
            "Li",
            "",
            {"kind": "fire.alarm", "site": "elm", "building": "7", "command": "hand-1"},
            datetime.now(UTC),
        )
    finally:
        store.close()
    await live.daemon.incidents.tick()
    await live.daemon.incidents.tick()  # and it is not tried again
    store = SqliteStore(live.config.storage.path)
    try:
        ((state, result),) = store.conn.execute("SELECT state, result FROM commands").fetchall()
        assert store.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    finally:
        store.close()
    assert state == "failed"
    assert "unknown site 'elm' (one of: harbour, pine)" in result


def test_two_sites_on_one_broker_with_other_credentials_are_said(tmp_path: Path) -> None:
    from alertd.sites import site_problems

    (tmp_path / "alertd.yaml").write_text(
        "sites:\n  harbour: {mqtt: {host: 10.0.0.5, username: harbour}}\n"
        "  pine: {mqtt: {host: 10.0.0.5, username: pine}}\n"
    )
    (problem,) = site_problems(load_config(tmp_path / "alertd.yaml"), "alertd.yaml")
    assert problem.where == "alertd.yaml sites.pine.mqtt"
    assert "one connection serves both, with site 'harbour''s settings" in problem.message


def test_devices_offline_now_are_of_the_accounts_sites_alone(tmp_path: Path) -> None:
    from alertd.console.analytics import Period, analyse

    store = SqliteStore(tmp_path / "alertd.db")
    store.conn.executemany(
        "INSERT INTO device_state (device_id, kind, active, since, event_id, seq) "
        "VALUES (?, ?, 1, ?, 0, 0)",
        [
            (d, "sensor.offline", "2026-12-01T00:00:00+00:00")
            for d in ("harbour/a", "pine/b", "gst", "facp")
        ],
    )
    now = datetime.now(UTC)
    period = Period(now.replace(year=2025), now, sites=("harbour",))
    # panels' ids carry no site: facp is Harbour View's panel, gst Pine Garden's
    device_sites = {"harbour/a": "harbour", "pine/b": "pine", "gst": "pine", "facp": "harbour"}
    tables = analyse(store.conn, period, ZoneInfo("Asia/Shanghai"), set(), {}, device_sites)
    assert sorted(row[0] for row in tables["offline_now"].rows) == ["facp", "harbour/a"]
    store.close()
