"""The console as the desk and supervisors use it: the daemon and `alertd web` as their
own processes, a real Mosquitto, the real twilio SDK against the fake Twilio, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from alertd.directory.phones import mask
from alertd.store.stores import open_reader
from tests.broker import Broker, free_port
from tests.fake_twilio import FakeTwilio
from tests.helpers import alertd, start_daemon
from tests.mqtt_tools import publish, until
from tests.test_duty_desk import DEVICES, LI, RESIDENTS, WANG, ZHANG, Desk, write_desk
from tests.test_playbooks import SHIPPED

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """The README's pictures, in Chinese and in English (`name` and `name-en`), made
    again only when asked (ALERTD_SCREENSHOTS=1): a test run leaves the work tree as it
    was."""
    if not os.environ.get("ALERTD_SCREENSHOTS"):
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / name, full_page=full_page)
    parts = urlsplit(page.url)
    here = parts.path + (f"?{parts.query}" if parts.query else "")
    base = f"{parts.scheme}://{parts.netloc}"
    await page.goto(f"{base}/lang/en?next={quote(here)}")
    english = name.replace(".png", "-en.png")
    await page.screenshot(path=SCREENSHOTS / english, full_page=full_page)
    await page.goto(f"{base}/lang/zh?next={quote(here)}")


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
    #: the PostgreSQL store's, when it is not the SQLite file `store`
    store_url: str | None
    #: the daemon's processes, the running one last (a test may stop and start it)
    daemons: list[subprocess.Popen[bytes]]
    log: Path

    async def restart_daemon(self) -> None:
        self.daemons.append(start_daemon(self.desk.config, self.log))
        size = self.log.stat().st_size
        await until(lambda: b"connected to MQTT" in self.log.read_bytes()[size:], 30)

    async def page(self, account: str) -> Page:
        return await signed_in(self.browser, self.url, account)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        return read(self.store, sql, *args, url=self.store_url)


async def signed_in(browser: Browser, url: str, account: str) -> Page:
    """A new browser context signed in as `account`."""
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(url + "/login")
    await page.fill("input[name=name]", account)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("#who")).to_have_text(account)
    return page


def read(store: Path, sql: str, *args: object, url: str | None = None) -> list[tuple[object, ...]]:
    """Rows of the store (the SQLite file, or PostgreSQL's at `url`), read as another
    process would."""
    reader = open_reader(store, url)
    try:
        return [tuple(row) for row in reader.conn.execute(sql, args).fetchall()]
    finally:
        reader.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, with nothing reaching out to the network."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            await browser.close()


def add_accounts(config: Path) -> None:
    for name, (role, staff) in ACCOUNTS.items():
        added = subprocess.run(
            [sys.executable, "-m", "alertd", "users", "add", name, "--role", role,
             "--staff", staff, "--password-stdin", "--config", str(config)],
            input=PASSWORD + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr


def start_web(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "alertd", "web", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


#: the tests that run on PostgreSQL too: `on_both_engines` before them
on_both_engines = pytest.mark.parametrize("console", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
async def console(
    tmp_path: Path, broker: Broker, request: pytest.FixtureRequest
) -> AsyncIterator[Console]:
    """The desk's daemon and console on a SQLite file, or (parameter "postgres") on a
    database of the throwaway PostgreSQL cluster."""
    url = request.getfixturevalue("pg_url") if getattr(request, "param", "") == "postgres" else None
    fake = await FakeTwilio().start()
    config, port = write_desk(tmp_path, broker, fake, f"console-{tmp_path.name[-10:]}", url)
    web_port = free_port()
    with config.open("a") as out:
        out.write(f"console: {{port: {web_port}, centre: 海景物业服务中心}}\n")
    await asyncio.to_thread(add_accounts, config)
    log = tmp_path / "alertd.log"
    daemons = [start_daemon(config, log)]
    web_log = tmp_path / "web.log"
    web = start_web(config, web_log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await until(lambda: b"alertd console on" in web_log.read_bytes(), 30)
        async with chromium() as browser:
            yield Console(
                Desk(config, fake, f"http://127.0.0.1:{port}"),
                f"http://127.0.0.1:{web_port}",
                browser,
                tmp_path / "alertd.db",
                url,
                daemons,
                log,
            )
    finally:
        for process in (web, *daemons):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 20)
        await fake.close()
    for text in (log.read_text(), web_log.read_text()):
        for resident in RESIDENTS:  # personal data stays out of the logs
            assert resident.phone not in text


@on_both_engines
async def test_a_smoke_alarm_flashes_on_the_open_board_and_an_ack_on_the_page_stops_escalation(
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
    # every cell of the flashing row readable on both of its colours (the severity too)
    cells, flash = await row.evaluate(
        """r => [Array.from(r.cells, c => getComputedStyle(c.querySelector('a') || c).color),
                 ['--flash-a', '--flash-b'].map(v =>
                     getComputedStyle(document.documentElement).getPropertyValue(v))]"""
    )
    assert min(contrast(c, f) for c in cells for f in flash) >= 4.5
    # the site as a row of buildings: building 3 in alarm, with its mark
    building = board.locator("#sites .bldg[data-building='3']")
    await expect(building).to_have_class(re.compile("alarm"))
    await expect(building).to_have_text("3 !")
    # and the building itself, floor by floor: the alarm's floor marked, then a floor
    # that joins, on the open board without a reload
    picture = board.locator("#pictures figure[data-incident='1'] svg.building")
    await expect(picture.locator("g.floor.alarm[data-floor='12']")).to_have_count(1)
    await expect(board.locator("#pictures figcaption")).to_contain_text("#1")
    await asyncio.to_thread(publish, broker, "zigbee2mqtt/b3/smoke_0502", '{"smoke": true}')
    await expect(picture.locator("g.flat[data-unit='0502'] text")).to_have_text("+")
    await screenshot(board, "board.png", full_page=True)
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
    await expect(building).to_have_class(re.compile("acknowledged"))
    # the timeline and the audit trail say who did it, from the console
    (who,) = console.rows(
        "SELECT actor FROM timeline WHERE incident_id = 1 AND type = 'acknowledged'"
    )
    assert who == ("Wang",)
    audit = console.rows("SELECT who, via, remote, os_user FROM audit WHERE action = 'ack'")
    assert audit == [("Wang", "web", "127.0.0.1", "account desk")]
    # the account is disabled while its board is open: the board stops and asks to sign in
    disabled = await asyncio.to_thread(
        alertd, "users", "disable", "desk", "--config", str(console.desk.config)
    )
    assert disabled.returncode == 0, disabled.stderr
    declared = await asyncio.to_thread(
        alertd, "declare", "gas", "--building", "7", "--by", "Li",
        "--config", str(console.desk.config),
    )  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    await expect(board).to_have_url(re.compile("/login"), timeout=10000)


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two colours given as CSS rgb() or #rrggbb."""

    def luminance(colour: str) -> float:
        colour = colour.strip()
        if colour.startswith("#"):
            digits = colour[1:] if len(colour) == 7 else "".join(c * 2 for c in colour[1:4])
            rgb = [int(digits[i : i + 2], 16) for i in (0, 2, 4)]
        else:
            rgb = [int(float(v)) for v in re.findall(r"[\d.]+", colour)[:3]]
        lin = [
            c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4
            for c in rgb
        ]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def test_a_fire_reaches_the_operator_on_another_incidents_page_and_a_drill_looks_apart(
    console: Console, broker: Broker
) -> None:
    drill = await asyncio.to_thread(
        alertd, "drill", "fire-alarm", "--building", "3", "--by", "Wang",
        "--config", str(console.desk.config),
    )  # fmt: skip
    assert drill.returncode == 0, drill.stderr
    page = await console.page("desk")
    await page.goto(f"{console.url}/incidents/1")
    banner = page.locator("#alarm-banner")
    drilled = banner.locator("a.alarm-item.drill[data-incident='1']")
    await expect(drilled).to_contain_text("演练")
    # sound: one click for the sign-in, remembered on the next page
    await page.click("#sound")
    await page.goto(f"{console.url}/devices")
    await expect(page.locator("#sound")).not_to_have_text("开启警报声音（本次登录点一次即可）")
    await page.goto(f"{console.url}/incidents/1")
    # a real fire while the operator is on the drill's page: on this page, no reload
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    real = banner.locator("a.alarm-item[data-incident='2']")
    await expect(real).to_be_visible(timeout=10000)
    await expect(real).to_contain_text("3号楼 12层 1203")
    await expect(real).not_to_have_class(re.compile("drill"))
    assert await page.evaluate("document.body.classList.contains('alarm-on')")
    # the flash: both its colours far from the page's background and under white text
    style = await page.evaluate(
        """() => {
            const root = getComputedStyle(document.documentElement);
            const flash = (q) => getComputedStyle(document.querySelector(q)).animationName;
            return [root.getPropertyValue('--flash-a'), root.getPropertyValue('--flash-b'),
                    root.getPropertyValue('--flash-text'),
                    getComputedStyle(document.body).backgroundColor,
                    flash('a.alarm-item.drill'), flash('a.alarm-item:not(.drill)')];
        }"""
    )
    flash_a, flash_b, text, background, drill_flash, real_flash = style
    for colour in (flash_a, flash_b):
        assert contrast(colour, background) >= 4.5
        assert contrast(colour, text) >= 4.5
    assert (drill_flash, real_flash) == ("flash-drill", "flash")
    # staff read the timeline in the page's language, never the engine's matcher trace
    await page.goto(f"{console.url}/incidents/2")
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("报警信号")
    await expect(timeline).not_to_contain_text("is not one of")
    assert await page.locator("#timeline details.trace").count() == 0
    boss = await console.page("boss")
    await boss.goto(f"{console.url}/incidents/2")
    trace = boss.locator("#timeline details.trace").first
    await trace.locator("summary").click()
    await expect(trace).to_contain_text("fire-alarm: matched")
    # acknowledged: it leaves every page's banner
    await page.goto(f"{console.url}/incidents/2")
    await page.click("button[data-action=ack]")
    await expect(real).to_have_count(0, timeout=10000)
    assert not await page.evaluate("document.body.classList.contains('alarm-on')")
    # the ack button goes once acknowledged
    await expect(page.locator("#status")).to_have_text("已确认")
    await expect(page.locator("button[data-action=ack]")).to_have_count(0)
    # an error page keeps the navigation and says what to do
    answer = await page.goto(f"{console.url}/incidents/9999")
    assert answer is not None
    assert answer.status == 404
    await expect(page.locator("header.top nav a[href='/']")).to_be_visible()
    await expect(page.locator("#error")).to_have_text("没有事件 9999")
    await expect(page.locator("main")).to_contain_text("没有这个页面或事件；请从看板进入。")


async def test_the_link_in_a_staff_text_opens_a_phone_page_that_acknowledges_with_it_alone(
    console: Console, broker: Broker
) -> None:
    from datetime import UTC, datetime, timedelta

    from alertd.links import Links, _b64, _unb64

    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: any("/m/" in b for b in console.desk.sms_to(WANG)))
    (text,) = [b for b in console.desk.sms_to(WANG) if "/m/" in b][:1]
    token = re.findall(r"/m/([\w.-]+)", text)[0]
    # residents' texts never carry a link
    await until(lambda: console.desk.sms_to(ZHANG))
    assert not any("/m/" in b for b in console.desk.sms_to(ZHANG))
    # a phone, not signed in: the link alone
    context = await console.browser.new_context(
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    phone = await context.new_page()
    await phone.goto(f"{console.url}/m/{token}")
    await expect(phone.locator("#place")).to_contain_text("3号楼")
    await expect(phone.locator("#alarms-at")).to_contain_text("3号楼 12层 1203")
    await expect(phone.locator("#door-checks")).to_contain_text("Zhang Xiulan")
    assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await expect(phone.locator("button[data-action=on_site]")).to_have_count(0)
    await screenshot(phone, "phone.png", full_page=True)
    await phone.click("button[data-action=ack]")
    await expect(phone.locator("#status")).to_have_text("已确认")
    await expect(phone.locator("button[data-action=ack]")).to_have_count(0)
    # the audit says who, and how
    acks = console.rows("SELECT who, via, os_user FROM audit WHERE action = 'ack'")
    assert acks == [("Wang", "phone", "link")]
    assert console.rows("SELECT who FROM audit WHERE action = 'phone_view'")
    # the link alone does nothing else
    assert (await context.request.get(f"{console.url}/m/{token}")).status == 200
    refused = await context.request.post(
        f"{console.url}/m/{token}", form={"action": "note", "text": "x"}
    )
    assert refused.status == 403
    # another incident's or another person's link, made from this one, or an expired
    # one: refused, nothing written
    payload, signature = token.split(".")
    number, expires, who = _unb64(payload).decode().split(":", 2)
    key = bytes.fromhex(str(console.rows("SELECT value FROM secrets")[0][0]))
    expired = Links(key, console.url).token(1, "Wang", datetime.now(UTC) - timedelta(days=2))
    for forged in (
        f"{_b64(f'2:{expires}:{who}'.encode())}.{signature}",
        f"{_b64(f'{number}:{expires}:Li'.encode())}.{signature}",
        expired,
        "nonsense",
    ):
        answer = await context.request.post(f"{console.url}/m/{forged}", form={"action": "ack"})
        assert answer.status == 403, forged
    assert len(console.rows("SELECT id FROM audit WHERE action = 'ack'")) == 1
    # signed in as the person it was sent to: on site and notes too
    desk = await console.page("desk")
    await desk.goto(f"{console.url}/m/{token}")
    await desk.click("button[data-action=on_site]")
    await expect(desk.locator("#flash")).to_contain_text("已完成")
    assert console.rows("SELECT who, via FROM audit WHERE action = 'on_site'") == [
        ("Wang", "phone")
    ]
    await context.close()


async def test_the_building_picture_marks_the_alarm_the_joined_floor_and_the_residents(
    console: Console, broker: Broker
) -> None:
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: console.rows("SELECT id FROM incidents WHERE id = 1"))
    await asyncio.to_thread(publish, broker, "zigbee2mqtt/b3/smoke_0502", '{"smoke": true}')
    await until(lambda: console.rows("SELECT id FROM timeline WHERE type = 'join'"))
    await until(lambda: console.desk.sms_to(ZHANG))
    assert "事件 #1" in await console.desk.text(ZHANG, "2")  # she needs help
    page = await console.page("desk")
    await page.goto(f"{console.url}/incidents/1")
    picture = page.locator("#building svg.building")
    # the floors from the directory and the devices file, top floor first
    floors = await picture.locator("g.floor").evaluate_all("gs => gs.map(g => g.dataset.floor)")
    assert floors == ["12", "8", "5", "4"]
    # the alarm's floor and the floor that joined, each marked (and said without colour)
    assert await picture.locator("g.floor.alarm").evaluate_all(
        "gs => gs.map(g => g.dataset.floor)"
    ) == ["12", "5"]
    first = picture.locator("g.flat[data-unit='1203']")
    assert "alarm" in (await first.get_attribute("class") or "")
    await expect(first.locator("text")).to_have_text("!")
    joined = picture.locator("g.flat[data-unit='0502']")
    await expect(joined.locator("text")).to_have_text("+")
    assert re.search(r"加入于 \d\d:\d\d", await joined.locator("title").text_content() or "")
    # the vulnerable residents, and who answered 2
    zhang = picture.locator("g.flat[data-unit='0805']")
    await expect(zhang.locator("text")).to_have_text("2V")
    assert "help" in (await zhang.get_attribute("class") or "")
    await expect(picture.locator("g.flat[data-unit='0405'] text")).to_have_text("V")
    await expect(page.locator("#building .legend")).to_contain_text("2 回复需要帮助")
    await screenshot(page, "incident-building.png", full_page=True)
    # a detector that stops answering is marked offline in its flat, the alarm kept
    offline = "zigbee2mqtt/b3/smoke_0502/availability"
    await asyncio.to_thread(publish, broker, offline, '{"state": "offline"}')
    gone = "SELECT 1 FROM device_state WHERE kind = 'sensor.offline' AND active = 1"
    await until(lambda: console.rows(gone))
    for _ in range(50):  # the page is shared by the desks for up to a second
        await page.reload()
        if await joined.locator("text").text_content() == "+x":
            break
        await asyncio.sleep(0.2)
    await expect(joined.locator("text")).to_have_text("+x")
    assert "alarm" in (await joined.get_attribute("class") or "")


#: the product's and the trade's own words, the same in both languages
SAME_IN_BOTH = {"alertd", "SMS", "CSV", "PA"}


def names_of_the_desk() -> set[str]:
    """What the desk's files name (devices, their profiles and topics, staff and their
    roles, residents and their notes, playbooks, accounts): data, not the console's words."""
    names = {"HV", *ACCOUNTS}
    for row in DEVICES.splitlines()[1:]:
        device, profile, topic, *_ = row.split(",")
        names |= {device, profile, topic}
    names |= {"Wang", "Li", "security", "supervisor"}
    for r in RESIDENTS:
        names |= {*r.name.split(), *re.findall(r"\w+", r.notes)}
    for book in SHIPPED.glob("*.yaml"):
        names |= set(re.findall(r"(?m)^name:\s*['\"]?([\w-]+)", book.read_text()))
    return names


def foreign_words(text: str, lang: str, names: set[str]) -> list[str]:
    """Words of the other language in a page's text, once names are set aside: a zh page
    holds no Latin word, an en page no Chinese."""
    if lang == "zh":  # a word with two letters or more (not `12F`), a device id whole
        tokens = (t.rstrip(".:/'-") for t in re.findall(r"[A-Za-z0-9][\w'./:-]*", text))
        found = [t for t in tokens if len(re.findall("[A-Za-z]", t)) > 1]
    else:
        found = re.findall(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+", text)
    return sorted({w for w in found if w not in names and w not in SAME_IN_BOTH})


async def test_every_page_speaks_one_language(console: Console, broker: Broker) -> None:
    """Every page, in Chinese then in English, holds no word of the other language once
    names (the desk's devices, people, roles, playbooks) and quoted records (what people
    wrote, the texts as sent) are set aside."""
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: any("/m/" in b for b in console.desk.sms_to(WANG)))
    token = re.findall(r"/m/([\w.-]+)", console.desk.sms_to(WANG)[-1])[0]
    await asyncio.to_thread(publish, broker, "zigbee2mqtt/b3/smoke_0502", '{"smoke": true}')
    await until(lambda: console.rows("SELECT id FROM timeline WHERE type = 'join'"))
    assert "事件 #1" in await console.desk.text(ZHANG, "2")  # a roll-call answer on the page
    names = names_of_the_desk()
    data = [str(t) for (t,) in console.rows("SELECT title FROM incidents")]
    data += ["海景物业服务中心", "中文", "English"]
    page = await console.page("boss")
    paths = ["/", "/incidents/1", "/incidents/1/report", "/declare", "/devices", "/directory",
             "/audit", "/analytics", f"/m/{token}", "/incidents/9999"]  # fmt: skip
    for lang in ("zh", "en"):
        await page.goto(f"{console.url}/lang/{lang}?next=/")
        for path in paths:
            await page.goto(console.url + path)
            # what people wrote and the record's own words are quoted, not translated
            text = await page.evaluate(
                """() => { const body = document.body.cloneNode(true);
                body.querySelectorAll('[data-quoted]').forEach(e => e.remove());
                document.documentElement.appendChild(body);
                const text = body.innerText; body.remove(); return text; }"""
            )
            for item in data:
                text = text.replace(item, " ")
            found = foreign_words(text, lang, names)
            lines = [line for line in text.splitlines() if any(w in line for w in found)]
            assert found == [], (lang, path, lines[:8])


async def test_an_action_while_the_daemon_is_down_is_queued_and_applied_when_it_is_back(
    console: Console, broker: Broker
) -> None:
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: console.rows("SELECT id FROM incidents WHERE id = 1"))
    page = await console.page("desk")
    await page.goto(f"{console.url}/incidents/1")
    daemon = console.daemons[-1]
    daemon.send_signal(signal.SIGTERM)  # a restart after an upgrade, at the wrong moment
    await asyncio.to_thread(daemon.wait, 20)
    await page.click("button[data-action=ack]")
    # the desk is told it is not done yet, and nothing pretends otherwise
    await expect(page.locator("#flash")).to_contain_text("已排队", timeout=20000)
    await expect(page.locator("#status")).to_have_text("未确认")
    await console.restart_daemon()
    await until(lambda: console.rows("SELECT 1 FROM incidents WHERE status = 'acknowledged'"))
    (audit,) = console.rows("SELECT who, detail FROM audit WHERE action = 'ack'")
    assert audit == ("Wang", "-> queued")
    await page.reload()  # at once: the page shared by the desks is not an old one
    await expect(page.locator("#status")).to_have_text("已确认")


class Client:
    """A signed-in HTTP client without a browser: what a script or a forged form can do."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def sign_in(self, account: str, password: str = PASSWORD) -> int:
        async with self.http.get(self.url + "/login") as page:
            token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert token is not None
        form = {"name": account, "password": password, "csrf": token.group(1), "next": "/"}
        async with self.http.post(self.url + "/login", data=form) as answer:
            found = re.search(r'<meta name="csrf" content="([^"]+)"', await answer.text())
            self.csrf = found.group(1) if found else ""
            return answer.status

    async def post(self, path: str, form: dict[str, str], *, csrf: bool = True) -> int:
        data = {**form, **({"csrf": self.csrf} if csrf else {})}
        async with self.http.post(self.url + path, data=data, allow_redirects=False) as answer:
            return answer.status

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as answer:
            return answer.status, await answer.text()

    async def answer(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Status, Location and text of a POST (a GET without a form), not followed."""
        if form is None:
            call = self.http.get(self.url + path, allow_redirects=False)
        else:
            data = {**form, "csrf": self.csrf}
            call = self.http.post(self.url + path, data=data, allow_redirects=False)
        async with call as got:
            return got.status, got.headers.get("Location", ""), await got.text()


@on_both_engines
async def test_each_role_sees_and_does_only_what_it_may_even_by_direct_post(
    console: Console,
) -> None:
    full = ZHANG
    masked = mask(ZHANG)
    # a viewer: no actions, no names, no phones; not even by posting the form by hand
    viewer = await console.page("guest")
    assert await viewer.locator("nav a[href='/declare']").count() == 0
    await viewer.goto(console.url + "/directory")
    table = await viewer.locator("#residents").inner_text()
    assert "Zhang Xiulan" not in table
    assert full not in table
    assert masked not in table  # no number at all, not even masked
    assert "lives alone" not in table
    guest = Client(console.url)
    try:
        assert await guest.sign_in("guest") == 200
        assert await guest.post("/incidents/1/act", {"action": "ack"}) == 403
        assert await guest.post("/reveal", {"resident": "1", "reason": "curious"}) == 403
        form = {"kind": "fire.alarm", "building": "3", "confirm": "1"}
        assert await guest.post("/declare", form) == 403
        assert (await guest.get("/audit"))[0] == 403
        assert (await guest.get("/analytics"))[0] == 403
    finally:
        await guest.http.close()
    assert console.rows("SELECT * FROM commands") == []
    # duty: names, masked phones; one number revealed with a reason, audited
    duty = await console.page("desk")
    await duty.goto(console.url + "/directory")
    row = duty.locator("#residents tr", has_text="Zhang Xiulan")
    assert masked in await row.inner_text()
    assert full not in await duty.content()
    assert "lives alone" not in await duty.content()  # the notes are the supervisor's
    await row.locator("input[name=reason]").fill("ambulance asks for the number")
    await row.locator("form.reveal button").click()
    await expect(duty.locator("#revealed")).to_have_text(full)
    ((who, action, detail),) = console.rows(
        "SELECT who, action, detail FROM audit WHERE action = 'reveal_phone'"
    )
    assert (who, action) == ("Wang", "reveal_phone")
    assert "ambulance asks for the number" in detail
    # a supervisor: full phones and the vulnerable notes; the audit trail
    boss = await console.page("boss")
    await boss.goto(console.url + "/directory")
    row = boss.locator("#residents tr", has_text="Zhang Xiulan")
    assert full in await row.inner_text()
    assert "lives alone, wheelchair" in await row.inner_text()
    await boss.goto(console.url + "/audit")
    trail = await boss.locator("#audit").inner_text()
    assert "查看完整号码" in trail  # the action in the page's words
    assert "账号 desk" in trail
    # newest first, and filtered by action
    times = await boss.locator("#audit tbody tr td:first-child").all_inner_texts()
    assert times == sorted(times, reverse=True)
    await boss.select_option("#audit-filter select[name=action]", "reveal_phone")
    await boss.click("#audit-filter button")
    await expect(boss).to_have_url(re.compile("action=reveal_phone"))
    actions = await boss.locator("#audit tbody tr td:nth-child(5)").all_inner_texts()
    assert actions
    assert set(actions) == {"查看完整号码"}
    # an admin: everything a supervisor has
    admin = await console.page("root")
    assert await admin.locator("nav a[href='/audit']").count() == 1
    assert await admin.locator("nav a[href='/analytics']").count() == 1
    # a form posted without its CSRF token is refused and changes nothing
    desk = Client(console.url)
    try:
        assert await desk.sign_in("desk") == 200
        assert (
            await desk.post("/incidents/1/act", {"action": "note", "text": "x"}, csrf=False) == 403
        )
        assert (
            await desk.post(
                "/incidents/1/act", {"action": "note", "text": "x", "csrf": "forged"}, csrf=False
            )
            == 403
        )
    finally:
        await desk.http.close()
    assert console.rows("SELECT * FROM commands") == []
    # guessing passwords: the sixth try is refused even with the right password
    guesser = Client(console.url)
    try:
        for _ in range(5):
            assert await guesser.sign_in("boss", "wrong password!") == 401
        assert await guesser.sign_in("boss") == 429
    finally:
        await guesser.http.close()
    assert len(console.rows("SELECT * FROM audit WHERE action = 'login_failed'")) == 5


async def test_the_roll_call_puts_a_resident_who_needs_help_on_top_and_the_report_prints(
    console: Console, broker: Broker, tmp_path: Path
) -> None:
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: len(console.desk.sms_to(ZHANG)) == 1)
    await until(lambda: len(console.desk.sms_to("+8613800000502")) == 1)
    await console.desk.text("+8613800000502", "1")  # Sam Lee is safe
    await console.desk.text(ZHANG, "2")  # Zhang Xiulan needs help
    page = await console.page("desk")
    await page.goto(f"{console.url}/incidents/1")
    first = page.locator("#roll-call tbody tr").first
    await expect(first).to_have_class(re.compile("roll-need_help"))
    await expect(first).to_contain_text("0805")
    await expect(first).to_contain_text("Zhang Xiulan")
    assert "需要帮助" in await first.inner_text()
    second = page.locator("#roll-call tbody tr").nth(1)
    await expect(second).to_contain_text("0502")
    await expect(second).to_have_class(re.compile("roll-safe"))
    # the door-check list: a tick per unit goes on the timeline
    door = page.locator("#door-checks tr[data-unit='0805']")
    await door.locator("button").click()
    await expect(page.locator("#door-checks tr[data-unit='0805']")).to_contain_text("✔")
    await expect(page.locator("#timeline")).to_contain_text("已上门检查 0805")
    # whom each step reached, by name, with the role they were reached as
    await expect(page.locator("#timeline")).to_contain_text("给Wang 打电话（值班的 security）")
    viewer = await console.page("guest")  # who may not see names reads the role alone
    await viewer.goto(f"{console.url}/incidents/1")
    await expect(viewer.locator("#timeline")).to_contain_text("给值班的 security 打电话")
    await expect(viewer.locator("#timeline")).not_to_contain_text("Wang")
    await screenshot(page, "incident.png", full_page=True)
    # a viewer sees the same incident without a name or a number in it
    viewer = await console.page("guest")
    for path in ("/incidents/1", "/incidents/1/report"):
        await viewer.goto(console.url + path)
        seen = await viewer.content()
        for hidden in ("Zhang Xiulan", "Sam Lee", "Wang", "lives alone", ZHANG):  # masked: yes
            assert hidden not in seen, (path, hidden)
    # the printable report: the same page as `alertd report --format html`, printed
    boss = await console.page("boss")
    await boss.goto(f"{console.url}/incidents/1/report")
    await expect(boss.locator("h1")).to_contain_text("事件报告 #1")
    pdf = await boss.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    (tmp_path / "report.pdf").write_bytes(pdf)
    served = await (await boss.request.get(f"{console.url}/incidents/1/report")).text()
    printed = await asyncio.to_thread(
        alertd, "report", "1", "--format", "html", "--config", str(console.desk.config)
    )
    assert printed.returncode == 0, printed.stderr
    assert "<h2>住户点名</h2>" in printed.stdout
    assert "1 需要帮助" in printed.stdout
    assert printed.stdout == served


@on_both_engines
async def test_declare_with_its_preview_a_drill_and_the_supervisors_pages(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page("desk")
    await page.goto(console.url + "/declare")
    await page.select_option("select[name=kind]", "fire.alarm")
    await page.fill("input[name=building]", "3")
    await page.fill("input[name=text]", "caller: smoke in the stairwell")
    await page.click("#preview-button")
    # before anything is sent: how many people will be texted
    await expect(page.locator("#will-text")).to_have_text("4")
    # who will be called, by name, not only the role
    await expect(page.locator("#preview")).to_contain_text("值班的 security (Wang)")
    assert console.rows("SELECT * FROM commands") == []
    confirmation = await page.eval_on_selector(
        "form[action='/declare']", "f => Object.fromEntries(new FormData(f))"
    )
    # declared: the console goes to the new incident
    await page.click("#confirm")
    await expect(page).to_have_url(re.compile(r"/incidents/1$"))
    await expect(page.locator("h1")).to_contain_text("#1")
    # the confirmation sent twice (a double click, a resubmitted form): one incident
    again = await page.request.post(console.url + "/declare", form=confirmation)
    assert again.ok
    assert again.url.endswith("/incidents/1")
    # a drill from the same page: its incident too
    await page.goto(console.url + "/declare")
    await page.select_option("select[name=playbook]", "fire-alarm")
    await page.fill("form[action='/drill'] input[name=building]", "5")
    await page.click("form[action='/drill'] button")
    await expect(page).to_have_url(re.compile(r"/incidents/2$"))
    assert console.rows("SELECT drill FROM incidents WHERE id = 2") == [(1,)]
    # the drill went through ingest after the second confirmation: that one is decided too
    assert len(console.rows("SELECT id FROM incidents WHERE drill = 0")) == 1
    # the real emergency and the drill side by side on the board: both flash, one is marked
    await page.goto(console.url + "/")
    await expect(page.locator("#board-rows tr.alarm")).to_have_count(2)
    await expect(page.locator("#board-rows tr", has=page.locator(".tag"))).to_have_count(1)
    declared = console.rows("SELECT who, os_user FROM audit WHERE action = 'declare'")
    assert declared == [("Wang", "account desk")] * 2  # both confirmations are on record
    # a supervisor imports residents: the bad rows are named, the good ones kept
    boss = await console.page("boss")
    await boss.goto(console.url + "/directory")
    head = "building,floor,unit,name,phone,language,vulnerable,notes\n"
    known = "".join(
        f"{r.building},{r.floor},{r.unit},{r.name},{r.phone},{r.language},"
        f'{"yes" if r.vulnerable else "no"},"{r.notes}"\n'
        for r in RESIDENTS
    )
    upload = tmp_path / "new.csv"
    upload.write_text(
        head + known + "5,2,0201,Gao Lin,+8613800000201,zh,no,\n5,2,0202,Bad Phone,12345,zh,no,\n"
    )
    await boss.set_input_files("input[type=file]", str(upload))
    await boss.click("form[action='/directory/import'] button")
    # a preview first: nothing is written until it is applied
    await expect(boss.locator("#import-plan")).to_contain_text("新增 1，变更 0，未变 4")
    await expect(boss.locator("#import-problems")).to_contain_text("new.csv:7")
    assert await boss.locator("#import-caution").count() == 0
    assert "Gao Lin" not in await boss.locator("#residents").inner_text()
    await boss.click("#import-apply")
    await expect(boss.locator("#import-summary")).to_contain_text("新增 1")
    await expect(boss.locator("#residents")).to_contain_text("Gao Lin")
    # a one-row file would move the others out: it says so, and asks for a confirmation
    (tmp_path / "one.csv").write_text(head + "5,2,0201,Gao Lin,+8613800000201,zh,no,\n")
    await boss.set_input_files("input[type=file]", str(tmp_path / "one.csv"))
    await boss.click("form[action='/directory/import'] button")
    await expect(boss.locator("#import-caution")).to_contain_text(
        "将使 5 位住户中的 4 位（80%）搬离"
    )
    nonce = await boss.locator("#import-preview input[name=nonce]").input_value()
    csrf = await boss.locator("#import-preview input[name=csrf]").input_value()
    unconfirmed = await boss.request.post(
        console.url + "/directory/import/apply", form={"csrf": csrf, "nonce": nonce}
    )
    assert "将使 5 位住户中的 4 位" in await unconfirmed.text()  # refused, shown again
    assert len(console.rows("SELECT id FROM residents WHERE moved_out IS NULL")) == 5
    await boss.goto(console.url + "/directory")
    # the analytics of the month, with its charts and CSV
    await boss.goto(console.url + "/analytics")
    # kinds in the page's language; each bar's full name on hover, its label slanted
    await expect(boss.locator("#t-by_kind")).to_contain_text("火警")
    await expect(boss.locator("#t-by_kind")).not_to_contain_text("fire-alarm")
    assert await boss.locator("#t-by_kind svg g title").first.text_content() == "火警: 1"
    slant = await boss.locator("#t-by_kind svg text.label").first.get_attribute("transform")
    assert (slant or "").startswith("rotate(-40")
    await expect(boss.locator("#t-drills tbody tr")).to_have_count(1)
    assert await boss.locator("#t-by_hour svg rect").count() == 24
    await screenshot(boss, "analytics.png", full_page=True)
    csv_file = await boss.request.get(console.url + "/analytics/by_kind.csv")
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert (await csv_file.text()).splitlines() == ["playbook,incidents", "fire-alarm,1"]
    # a typo in the staff file: the directory names it (file:line) and still lists residents
    staff_file = console.desk.config.parent / "staff.yaml"
    good = staff_file.read_text()
    staff_file.write_text(good.replace("roles: [security]", "roles: [security"))
    await boss.goto(console.url + "/directory")
    await expect(boss.locator("#import-problems")).to_contain_text("staff.yaml:")
    await expect(boss.locator("#residents")).to_contain_text("Gao Lin")
    staff_file.write_text(good)
    await boss.goto(console.url + "/directory")
    await expect(boss.locator("#staff")).to_contain_text("Wang")
    # the devices, by building
    await boss.goto(console.url + "/devices?building=3")
    await expect(boss.locator("#devices tbody tr")).to_have_count(2)
    await expect(boss.locator("#devices")).to_contain_text("smoke-3-12")
    # long lists are searchable: every word must appear
    await boss.goto(console.url + "/devices?q=kitchen+1203")
    await expect(boss.locator("#devices tbody tr")).to_have_count(1)
    await boss.goto(console.url + "/directory?q=zhang")
    await expect(boss.locator("#residents tbody tr")).to_have_count(1)
    await expect(boss.locator("#residents")).to_contain_text("Zhang Xiulan")
    # English on request
    await boss.goto(console.url + "/lang/en?next=/analytics")
    await expect(boss.locator("h1")).to_have_text("Analytics")
    await expect(boss.locator("#t-by_kind")).to_contain_text("Fire alarm")


async def test_what_was_found_when_tried_at_the_desk(console: Console, broker: Broker) -> None:
    """A duty desk's night, as it went wrong when tried: an absurd number, a 200 KB note,
    two clicks that closed an alarm still in progress, a redirect to another site, a
    door-check list without its notes, a technician's number the desk could not call."""
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": true}')
    await until(lambda: console.rows("SELECT id FROM incidents WHERE id = 1"))
    desk = Client(console.url)
    try:
        assert await desk.sign_in("desk") == 200
        # numbers and text are bounded at the door: a 400 that says why, nothing written
        for minutes in ("10000000000", "nan", "-30", "1e400"):
            status, _, said = await desk.answer(
                "/incidents/1/act", {"action": "eta", "minutes": minutes}
            )
            assert status == 400, minutes
            assert "minutes:" in said
        status, _, said = await desk.answer(
            "/incidents/1/act", {"action": "note", "text": "x" * 200_000}
        )
        assert (status, said) == (400, "text: at most 2000 characters (got 200000)")
        assert console.rows("SELECT id FROM commands") == []
        # going back never leaves the console, however the path is written
        for asked in ("/%09/evil.example/x", "/%5Cevil.example", "%2F%2Fevil.example"):
            status, where, _ = await desk.answer(f"/lang/en?next={asked}")
            assert (status, where) == (303, "/"), asked
        # resolving while the detector is still in alarm is refused without a reason
        status, where, _ = await desk.answer("/incidents/1/act", {"action": "resolve"})
        assert status == 303
        assert "failed" in where
        assert console.rows("SELECT status FROM incidents") == [("open",)]
    finally:
        await desk.http.close()
    page = await console.page("desk")
    await page.goto(console.url + where)  # the refusal, as the desk reads it
    await expect(page.locator("#flash")).to_contain_text("事件 1 仍在报警：smoke-3-12（火警）")
    await expect(page.locator("#still-active")).to_contain_text("smoke-3-12（火警）")
    # the guard at the door sees what the door-check SMS says: who needs what
    await expect(page.locator("#door-checks")).to_contain_text("lives alone, wheelchair")
    confirm = page.locator("#confirm-resolve")
    await confirm.locator("input[name=force]").check()
    await confirm.locator("input[name=text]").fill("brigade on site: burnt toast")
    await confirm.locator("button").click()
    await expect(page.locator("#status")).to_have_text("已处理")
    # the board keeps it in sight until the detector clears
    await page.goto(console.url + "/")
    await expect(page.locator("tr[data-incident='1']")).to_contain_text("已处理，但探测器仍在报警")
    # the all-clear waits for the detector; the desk can send it, reading it first
    await page.goto(f"{console.url}/incidents/1")
    await expect(page.locator("#all-clear-texts")).to_contain_text("火警已解除")
    await page.click("#all-clear-button")
    await until(lambda: any("火警已解除" in b for b in console.desk.sms_to(ZHANG)))
    await expect(page.locator("#all-clear")).to_have_count(0)
    # the technician's number in full, to call
    await page.goto(console.url + "/directory")
    await expect(page.locator("#staff a[href='tel:+8613900000001']")).to_have_count(1)
    # the detector clears: the incident leaves the board
    await asyncio.to_thread(publish, broker, SMOKE, '{"smoke": false}')
    await page.goto(console.url + "/")
    await expect(page.locator("tr[data-incident='1']")).to_have_count(0)
    # a locked-out sign-in says until when
    guesser = Client(console.url)
    try:
        for _ in range(5):
            await guesser.sign_in("boss", "wrong password!")
        async with guesser.http.get(console.url + "/login") as got:
            token = re.search(r'name="csrf" value="([^"]+)"', await got.text())
        assert token is not None
        form = {"name": "boss", "password": PASSWORD, "csrf": token.group(1)}
        async with guesser.http.post(console.url + "/login", data=form) as refused:
            assert refused.status == 429
            assert re.search(r"请于 \d\d:\d\d:\d\d 后再试", await refused.text())
    finally:
        await guesser.http.close()
