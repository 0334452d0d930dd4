"""The console as the desk and supervisors use it: the daemon and `alertd web` as their
own processes, a real Mosquitto, the real twilio SDK against the fake Twilio, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from alertd.store import SqliteStore
from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import alertd
from tests.mqtt_tools import until
from tests.test_delivery_crash import start
from tests.test_duty_desk import LI, RESIDENTS, WANG, ZHANG, Desk, publish, write_desk

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
PASSWORD = "correct horse battery"
#: account -> (role, staff member)
ACCOUNTS = {
    "desk": ("duty", "Wang"),
    "boss": ("supervisor", "Li"),
    "guest": ("viewer", ""),
    "root": ("admin", "Li"),
}
SMOKE = "zigbee2mqtt/b3/smoke_1203"


@dataclass
class Console:
    desk: Desk
    url: str
    browser: Browser
    store: Path

    async def page(self, account: str) -> Page:
        """A new browser context signed in as `account`."""
        context = await self.browser.new_context(locale="zh-CN")
        page = await context.new_page()
        await page.goto(self.url + "/login")
        await page.fill("input[name=name]", account)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("#who")).to_have_text(account)
        return page

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


@pytest.fixture
async def console(tmp_path: Path, broker: Broker) -> AsyncIterator[Console]:
    fake = await FakeTwilio().start()
    config, port = write_desk(tmp_path, broker, fake, f"console-{tmp_path.name[-10:]}")
    web_port = free_port()
    with config.open("a") as out:
        out.write(f"console: {{port: {web_port}, centre: 海景物业服务中心}}\n")
    for name, (role, staff) in ACCOUNTS.items():
        added = subprocess.run(
            [sys.executable, "-m", "alertd", "users", "add", name, "--role", role,
             "--staff", staff, "--password-stdin", "--config", str(config)],
            input=PASSWORD + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    log = tmp_path / "alertd.log"
    daemon = start(config, log)
    web_log = tmp_path / "web.log"
    with web_log.open("ab") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "alertd", "web", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await until(lambda: b"alertd console on" in web_log.read_bytes(), 30)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            try:
                yield Console(
                    Desk(config, fake, f"http://127.0.0.1:{port}"),
                    f"http://127.0.0.1:{web_port}",
                    browser,
                    tmp_path / "alertd.db",
                )
            finally:
                await browser.close()
    finally:
        for process in (web, daemon):
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 20)
        await fake.close()
    for text in (log.read_text(), web_log.read_text()):
        for resident in RESIDENTS:  # personal data stays out of the logs
            assert resident.phone not in text


async def test_a_smoke_alarm_flashes_on_the_open_board_and_an_ack_from_the_page_stops_the_escalation(
    console: Console, broker: Broker
) -> None:
    board = await console.page("desk")
    await expect(board.locator("#board-rows")).to_contain_text("当前没有未结束的事件")
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    # the board updates itself (server-sent events): no reload
    row = board.locator("tr.alarm[data-incident='1']")
    await expect(row).to_be_visible(timeout=5000)
    await expect(row).to_contain_text("3号楼 12层 1203")
    assert await board.evaluate("document.body.classList.contains('alarm-on')")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await board.screenshot(path=SCREENSHOTS / "board.png")
    # the escalation is waiting for an acknowledgement
    assert console.rows(
        "SELECT kind FROM timers WHERE incident_id = 1 AND state = 'pending' AND kind = 'escalate'"
    )
    page = await console.page("desk")
    await page.goto(f"{console.url}/incidents/1")
    await page.click("button[data-action=ack]")
    await expect(page.locator("#status")).to_have_text("已确认")
    # the daemon cancelled the escalation: the supervisor is never told
    assert not console.rows(
        "SELECT kind FROM timers WHERE incident_id = 1 AND state = 'pending' AND kind = 'escalate'"
    )
    assert console.desk.sms_to(LI) == []
    # the open board stops flashing, and shows who acknowledged
    await expect(board.locator("tr[data-incident='1']")).to_contain_text("Wang")
    await expect(board.locator("tr.alarm")).to_have_count(0)
    assert not await board.evaluate("document.body.classList.contains('alarm-on')")
    # the timeline and the audit trail say who did it, from the console
    (who,) = console.rows(
        "SELECT actor FROM timeline WHERE incident_id = 1 AND type = 'acknowledged'"
    )
    assert who == ("Wang",)
    audit = console.rows("SELECT who, via, remote, os_user FROM audit WHERE action = 'ack'")
    assert audit == [("Wang", "web", "127.0.0.1", "account desk")]
