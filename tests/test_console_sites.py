"""The console of a company with several estates: an account granted one site sees and
acts on that site alone, by any URL (enforced on the server: 403, nothing written); a
head-office account sees them all on one board. The daemon and `alertd web` as their own
processes, a real Mosquitto, the fake Twilio, Debian's Chromium."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import start_daemon
from tests.mqtt_tools import Publisher, until
from tests.test_console import PASSWORD, chromium, read, signed_in, start_web
from tests.test_sites import write_sites

pytestmark = pytest.mark.slow
#: account -> (role, staff member, sites)
ACCOUNTS = {
    "hv-desk": ("duty", "Wang", "harbour"),
    "hv-boss": ("supervisor", "Wang", "harbour"),
    "hq": ("supervisor", "Li", "all"),
}


@dataclass
class Sites:
    url: str
    browser: Browser
    store: Path

    async def page(self, account: str) -> Page:
        return await signed_in(self.browser, self.url, account)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        return read(self.store, sql, *args)


def add_accounts(config: Path) -> None:
    for name, (role, staff, granted) in ACCOUNTS.items():
        added = subprocess.run(
            [sys.executable, "-m", "alertd", "users", "add", name, "--role", role,
             "--staff", staff, "--sites", granted, "--password-stdin", "--config", str(config)],
            input=PASSWORD + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr


@pytest.fixture
async def sites(tmp_path: Path, broker: Broker) -> AsyncIterator[Sites]:
    fake = await FakeTwilio().start()
    config = write_sites(tmp_path, broker, fake)
    web_port = free_port()
    with config.open("a") as out:
        out.write(f"console: {{port: {web_port}}}\n")
    await asyncio.to_thread(add_accounts, config)
    log, web_log = tmp_path / "alertd.log", tmp_path / "web.log"
    daemon = start_daemon(config, log)
    web = start_web(config, web_log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await until(lambda: b"alertd console on" in web_log.read_bytes(), 30)
        pub = Publisher(broker, f"console-sites-{tmp_path.name[-8:]}")
        try:  # a fire at Harbour View (incident 1), then a leak at Pine Garden (2)
            await asyncio.to_thread(pub.publish, "zigbee2mqtt/harbour/smoke_1", '{"smoke": true}')
            await until(lambda: incidents(tmp_path / "alertd.db") == 1, 30)
            await asyncio.to_thread(pub.publish, "zigbee2mqtt/pine/leak_1", '{"water_leak": true}')
            await until(lambda: incidents(tmp_path / "alertd.db") == 2, 30)
        finally:
            pub.close()
        async with chromium() as browser:
            yield Sites(f"http://127.0.0.1:{web_port}", browser, tmp_path / "alertd.db")
    finally:
        for process in (web, daemon):
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 20)
        await fake.close()


def incidents(store: Path) -> int:
    return int(str(read(store, "SELECT count(*) FROM incidents")[0][0]))


async def first_board_event(sites: Sites, page: Page, query: str = "") -> str:
    """The board stream's first update, as the account's browser would get it: the
    board's rows and the alarm banner every page shows."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    query = "?rows=1" + (f"&{query.lstrip('?')}" if query else "")
    async with (
        aiohttp.ClientSession(cookies=cookies) as session,
        session.get(f"{sites.url}/board/stream{query}") as answer,
    ):
        async for line in answer.content:
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                return str(data["html"]) + str(data["banner"])
    raise AssertionError("the stream ended without an update")


async def test_an_account_of_one_site_sees_and_acts_on_that_site_alone(sites: Sites) -> None:
    harbour, pine = 1, 2
    assert sites.rows("SELECT id, site FROM incidents ORDER BY id") == [
        (harbour, "harbour"),
        (pine, "pine"),
    ]
    desk = await sites.page("hv-desk")
    await expect(desk.locator("#board-rows tr")).to_have_count(1)
    await expect(desk.locator(f"#board-rows tr[data-incident='{harbour}']")).to_be_visible()
    assert f'data-incident="{pine}"' not in await first_board_event(sites, desk)
    await desk.goto(f"{sites.url}/incidents/{harbour}")
    csrf = await desk.locator("input[name=csrf]").first.get_attribute("value") or ""
    api = desk.request
    commands = len(sites.rows("SELECT id FROM commands"))
    audit = len(sites.rows("SELECT id FROM audit"))
    # every way to Pine Garden's incident, by hand: refused, and nothing written
    for url in (f"/incidents/{pine}", f"/incidents/{pine}/report",
                f"/incidents/{pine}/building", "/board/stream?site=pine"):  # fmt: skip
        answer = await api.get(sites.url + url)
        assert answer.status == 403, url
    resident = sites.rows("SELECT id FROM residents WHERE site = 'pine' LIMIT 1")[0][0]
    posts = {
        f"/incidents/{pine}/act": {"action": "ack"},
        f"/incidents/{pine}/act ": {"action": "resolve", "force": "1", "text": "dry now"},
        "/reveal": {"resident": str(resident), "reason": "to call them"},
        "/declare": {"kind": "fire.alarm", "site": "pine", "building": "7", "confirm": "1",
                     "nonce": "web-1-abc"},
        "/drill": {"playbook": "fire-alarm", "site": "pine", "building": "7"},
    }  # fmt: skip
    for url, form in posts.items():
        answer = await api.post(
            sites.url + url.strip(), form={**form, "csrf": csrf}, headers={"X-CSRF-Token": csrf}
        )
        assert answer.status == 403, (url, await answer.text())
    assert len(sites.rows("SELECT id FROM commands")) == commands
    assert len(sites.rows("SELECT id FROM audit")) == audit
    # its own site's incident it may act on
    answer = await api.post(
        f"{sites.url}/incidents/{harbour}/act",
        form={"action": "ack", "csrf": csrf},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.ok


async def test_a_supervisor_of_one_site_gets_its_figures_and_audit_alone(sites: Sites) -> None:
    boss = await sites.page("hv-boss")
    api = boss.request
    kinds = await (await api.get(f"{sites.url}/analytics/by_kind.csv")).text()
    assert "fire-alarm" in kinds
    assert "water-leak" not in kinds
    by_site = await (await api.get(f"{sites.url}/analytics/by_site.csv")).text()
    assert [line.split(",")[0] for line in by_site.splitlines()] == ["site", "harbour"]
    assert (await api.get(f"{sites.url}/analytics?site=pine")).status == 403
    devices = await (await api.get(f"{sites.url}/devices")).text()
    assert "harbour/smoke-1" in devices
    assert "pine/" not in devices
    directory = await (await api.get(f"{sites.url}/directory")).text()
    assert "Harbour Upstairs" in directory
    assert "Pine" not in directory
    await boss.goto(f"{sites.url}/audit")
    assert "pine" not in (await boss.locator("main").inner_text()).lower()
    # an import may not touch another site's directory: its rows are refused by line,
    # and choosing that site is refused outright
    await boss.goto(f"{sites.url}/directory")
    csrf = await boss.locator("input[name=csrf]").first.get_attribute("value") or ""
    upload = {
        "name": "both.csv",
        "mimeType": "text/csv",
        "buffer": (
            b"site,building,floor,unit,name,phone,language\n"
            b"harbour,7,3,0301,Harbour Upstairs,13800000301,zh\n"
            b"pine,7,3,0301,Pine Upstairs,13900000301,zh\n"
        ),
    }
    preview = await api.post(
        f"{sites.url}/directory/import", multipart={"csrf": csrf, "file": upload}
    )
    said = await preview.text()
    assert "both.csv:3: row skipped: site &#39;pine&#39; is not one of this account&#39;s" in said
    chosen = await api.post(
        f"{sites.url}/directory/import", multipart={"csrf": csrf, "site": "pine", "file": upload}
    )
    assert chosen.status == 403


async def test_head_office_sees_every_site_on_one_board_and_can_pick_one(sites: Sites) -> None:
    hq = await sites.page("hq")
    rows = hq.locator("#board-rows tr")
    await expect(rows).to_have_count(2)
    await expect(hq.locator("#board-rows td.site")).to_have_text(["Harbour View", "Pine Garden"])
    await hq.select_option("#site-filter select[name=site]", "pine")
    await hq.click("#site-filter button")
    await expect(rows).to_have_count(1)
    await expect(hq.locator("#board-rows td.site")).to_have_text(["Pine Garden"])
    by_site = await (await hq.request.get(f"{sites.url}/analytics/by_site.csv")).text()
    assert [line.split(",")[0] for line in by_site.splitlines()] == ["site", "harbour", "pine"]
    # a site's incident page and report: its time zone and its service centre
    from zoneinfo import ZoneInfo

    from alertd.engine.wording import stamp

    ((opened,),) = sites.rows("SELECT opened_at FROM incidents WHERE site = 'pine'")
    london = stamp(datetime.fromisoformat(str(opened)), ZoneInfo("Europe/London"))
    for url in ("/incidents/2", "/incidents/2/report"):
        await hq.goto(sites.url + url)
        await expect(hq.locator("body")).to_contain_text(london)
        await expect(hq.locator(".centre").first).to_have_text("松园物业服务中心")
    # declaring asks for the site
    await hq.goto(f"{sites.url}/declare")
    await expect(hq.locator("form[action='/declare'] select[name=site] option")).to_have_text(
        ["—", "Harbour View", "Pine Garden"]
    )
