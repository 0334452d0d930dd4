"""Texting in mainland China, and a second provider when the first fails: the real
Aliyun and Tencent SDKs against local fakes that check their signatures, the real twilio
SDK against the fake Twilio, a real SQLite store and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from pydantic import SecretStr

from alertd.clock import FakeClock
from alertd.config import AliyunConfig, DeliveryConfig, TencentConfig, TwilioConfig
from alertd.directory.residents import Resident
from alertd.directory.staff import load_staff
from alertd.engine.state import Action, Decision, Incident
from alertd.events import Location, Severity
from alertd.outbox.dispatcher import Dispatcher
from alertd.outbox.inbound import Inbound
from alertd.outbox.providers import Providers
from alertd.outbox.registered import Templates
from alertd.outbox.sink import Message
from alertd.problems import InvalidInput
from alertd.store import Writer
from alertd.store import incidents as incidents_db
from alertd.store.directory import import_residents
from integrations.aliyun.push import AliyunPush
from integrations.aliyun.sink import AliyunSink
from integrations.tencent.pull import TencentPull
from integrations.tencent.sink import TencentSink
from integrations.twilio.sink import TwilioSink
from tests import fake_aliyun, fake_tencent
from tests.broker import Broker, free_port
from tests.fake_aliyun import FakeAliyun
from tests.fake_tencent import FakeTencent
from tests.fake_twilio import FakeTwilio
from tests.helpers import serve_locally, start_daemon
from tests.mqtt_tools import publish, until

SECURITY = "+8613900000001"
PUSH_TOKEN = "push-" + "0123456789abcdef" * 2
ALIYUN_TEMPLATES = """\
provider: aliyun
sign_name: 海景物业
templates:
  - text_of: staff_fire
    code: SMS_100001
    params: [incident, location, time]
    text: "火警 #${incident}：${location} 火警（${time}），请立即确认，回复 OK ${incident}。"
  - text_of: staff_fire
    drill: true
    code: SMS_100002
    params: [incident, location]
    text: "【演练】火警 #${incident}：${location}（演练，无需撤离）。"
  - text_of: resident_evacuate
    code: SMS_100003
    params: [building]
    text: "${building}号楼火警，请立即走楼梯撤离，勿乘电梯。已安全请回复1，需要协助请回复2。"
"""
TENCENT_TEMPLATES = """\
provider: tencent
sign_name: 海景物业
templates:
  - text_of: staff_fire
    code: "1900001"
    params: [incident, location, time]
    text: "火警 #{1}：{2} 火警报警（{3}），请立即前往确认。"
  - text_of: resident_evacuate
    code: "1900003"
    params: [building]
    text: "{1}号楼火警，请立即走楼梯撤离，勿乘电梯。已安全请回复1，需要协助请回复2。"
"""
TEXTS = {"staff_fire": "【火警 #1】3号楼 火警", "resident_evacuate": "3号楼火警，请撤离"}


def values(incident: int = 1) -> dict[str, dict[str, str]]:
    one = {
        "incident": str(incident),
        "location": "3号楼 12层 1203",
        "time": "03:12",
        "building": "3",
    }
    return {"zh": one, "en": one}


@dataclass
class Rig:
    writer: Writer
    clock: FakeClock
    aliyun: FakeAliyun
    tencent: FakeTencent
    twilio: FakeTwilio
    providers: Providers
    dispatcher: Dispatcher
    path: Path
    inbound: Inbound
    push: web.AppRunner

    def pull(self) -> TencentPull:
        tencent = self.providers.sinks["tencent"]
        assert isinstance(tencent, TencentSink)
        return TencentPull(tencent.client, fake_tencent.APP_ID, self.inbound, 1.0)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()

    async def act(
        self, incident: int, channel: str, target: str, template: str, drill: bool = False
    ) -> None:
        decision = Decision(
            Incident(
                incident,
                "fire-alarm",
                f"building:HV/3/{incident}",
                "open",
                Severity.CRITICAL,
                Location("HV", "3", "12", "1203"),
                "fire",
                self.clock.now(),
                self.clock.now(),
                drill=drill,
            ),
            actions=[
                Action(
                    channel,
                    target,
                    {"zh": TEXTS[template], "en": TEXTS[template]},  # type: ignore[arg-type]
                    template=template,
                    values=values(incident),
                )
            ],
        )
        assert self.writer.store is not None
        await self.writer.call(
            incidents_db.save,
            self.writer.store.conn,
            [decision],
            self.clock.now(),
            incidents_db.Done(),
        )

    async def settle(self, rounds: int = 30, step_s: float = 120) -> None:
        for _ in range(rounds):
            await self.dispatcher.step()
            if not self.rows("SELECT count(*) FROM messages WHERE status = 'pending'")[0][0]:
                return
            self.clock.advance(step_s)

    def messages(self) -> list[tuple[object, ...]]:
        return self.rows("SELECT recipient, status, provider_id, reason FROM messages ORDER BY id")


def residents(n: int) -> list[Resident]:
    # +86137 and eight digits: 100,000 numbers
    return [
        Resident("3", "5", f"5{i:02d}", f"R{i}", f"+86137{i:08d}", "zh", False, site="HV")
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def rigged(
    tmp_path: Path,
    order: list[str],
    secret: str = fake_aliyun.KEY_SECRET,
    people: int = 100,
    cap: int = 50,
    **delivery: object,
) -> AsyncIterator[Rig]:
    """A rig sending through `order` to `people` residents (Aliyun's cap at `cap` texts
    a number a day), closed after."""
    aliyun, tencent, twilio = (
        await FakeAliyun().start(),
        await FakeTencent().start(),
        await FakeTwilio().start(),
    )
    (tmp_path / "aliyun.yaml").write_text(ALIYUN_TEMPLATES)
    (tmp_path / "tencent.yaml").write_text(TENCENT_TEMPLATES)
    writer = Writer(tmp_path / "alertd.db", synchronous="NORMAL")
    store = await writer.open()
    clock = FakeClock()
    await writer.call(import_residents, store.conn, residents(people), clock.now())
    (tmp_path / "staff.yaml").write_text(
        f"people:\n  Wang: {{phone: '{SECURITY}', roles: [security]}}\n"
    )
    staff = load_staff(tmp_path / "staff.yaml", "CN", ZoneInfo("Asia/Shanghai"))
    sinks = {
        "aliyun": lambda: AliyunSink(
            AliyunConfig(
                access_key_id=fake_aliyun.KEY_ID,
                access_key_secret=SecretStr(secret),
                endpoint=aliyun.endpoint,
                protocol="http",
                templates=tmp_path / "aliyun.yaml",
                per_number_day=cap,
            ),
            {"": Templates.load(tmp_path / "aliyun.yaml")},
            clock=clock,
        ),
        "tencent": lambda: TencentSink(
            TencentConfig(
                secret_id=fake_tencent.SECRET_ID,
                secret_key=SecretStr(fake_tencent.SECRET_KEY),
                sdk_app_id=fake_tencent.APP_ID,
                endpoint=tencent.endpoint,
                protocol="http",
                templates=tmp_path / "tencent.yaml",
            ),
            {"": Templates.load(tmp_path / "tencent.yaml")},
        ),
        "twilio": lambda: TwilioSink(
            TwilioConfig(
                account_sid="AC" + "0" * 32,
                auth_token=SecretStr("token"),
                from_number="+15005550006",
                api_base_url=twilio.base_url,
            )
        ),
    }
    providers = Providers({n: sinks[n]() for n in order}, order, clock, timeout_s=2, probe_s=60)
    config = DeliveryConfig.model_validate(
        {"concurrency": 20, "send_timeout_s": 10, "provider_timeout_s": 2, **delivery}
    )
    dispatcher = Dispatcher(writer, {"sms": providers}, clock, config, staff)
    await dispatcher.start()
    inbound = Inbound(writer, staff, clock)
    push, port = await serve_locally(AliyunPush(inbound, PUSH_TOKEN).app(web.Application()))
    aliyun.push_url = f"http://127.0.0.1:{port}/aliyun/{PUSH_TOKEN}"
    rig = Rig(
        writer,
        clock,
        aliyun,
        tencent,
        twilio,
        providers,
        dispatcher,
        tmp_path / "alertd.db",
        inbound,
        push,
    )
    try:
        yield rig
    finally:
        await push.cleanup()
        await dispatcher.close()
        await writer.close()
        for fake in (aliyun, tencent, twilio):
            await fake.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rigged(tmp_path, ["aliyun", "twilio"]) as rig:
        yield rig


async def test_a_staff_alert_goes_as_the_registered_template_under_the_sign_name(rig: Rig) -> None:
    await rig.act(1, "notify", "role:security", "staff_fire")
    await rig.settle()
    (request,) = rig.aliyun.sms
    assert request["PhoneNumbers"] == "13900000001"  # Aliyun's mainland form
    assert request["SignName"] == "海景物业"
    assert request["TemplateCode"] == "SMS_100001"
    assert json.loads(request["TemplateParam"]) == {
        "incident": "1",
        "location": "3号楼 12层 1203",
        "time": "03:12",
    }
    assert rig.aliyun.forged == 0  # the SDK's V3 signature verified
    assert rig.twilio.sms() == []
    ((recipient, status, provider_id, reason),) = rig.messages()
    assert (recipient, status, provider_id) == (SECURITY, "sent", "aliyun:alertd-1:13900000001")
    assert reason == "sent by aliyun"


async def test_a_drill_goes_as_the_drill_template_never_as_the_real_one(rig: Rig) -> None:
    await rig.act(1, "notify", "role:security", "staff_fire", drill=True)
    await rig.settle()
    (request,) = rig.aliyun.sms
    assert request["TemplateCode"] == "SMS_100002"


async def test_first_provider_failing_sends_a_fire_alert_by_the_second_once(rig: Rig) -> None:
    rig.aliyun.storm = fake_aliyun.Refusal("InternalError", status=500)
    await rig.act(1, "notify", "role:security", "staff_fire")
    await rig.settle()
    assert len(rig.aliyun.sms) == 1  # the SDK did not retry by itself
    (sent,) = rig.twilio.sms()
    assert sent["form"]["To"] == SECURITY
    ((_, status, _, reason),) = rig.messages()
    assert status == "sent"
    assert reason.startswith("aliyun: Aliyun 500 InternalError; sent by twilio")
    (note,) = rig.rows("SELECT text FROM timeline WHERE type = 'delivery'")
    assert note[0].startswith("message 1 to +86 139****0001: aliyun: Aliyun 500")


async def test_no_answer_from_the_first_provider_sends_a_fire_alert_anyway_and_says_so(
    rig: Rig,
) -> None:
    rig.aliyun.plan.append(fake_aliyun.HANG)
    await rig.act(1, "notify", "role:security", "staff_fire")
    await rig.settle()
    (sent,) = rig.twilio.sms()
    assert sent["form"]["To"] == SECURITY
    (note,) = rig.rows("SELECT text FROM timeline WHERE type = 'delivery'")
    assert "no answer within 2 s (it may have sent it: sent by the next provider anyway)" in note[0]


async def test_residents_texts_whose_batch_got_no_answer_are_looked_up_not_sent_twice(
    rig: Rig,
) -> None:
    rig.aliyun.plan.append(fake_aliyun.TAKE_AND_HANG)  # the first batch goes, unanswered
    await rig.act(1, "sms", "building", "resident_evacuate")
    await rig.settle()
    assert rig.twilio.sms() == []
    accepted = rig.aliyun.accepted
    assert len(accepted) == len(set(accepted)) == 100  # each resident once
    found = [r for _, _, _, r in rig.messages() if "not sent again" in str(r)]
    assert found  # the ones of the unanswered batch, found by QuerySendDetails
    assert {s for _, s, _, _ in rig.messages()} == {"sent"}


async def test_a_residents_text_is_never_sent_by_a_second_provider_after_a_5xx(rig: Rig) -> None:
    rig.aliyun.plan.extend([fake_aliyun.Refusal("InternalError", status=500)] * 5)
    await rig.act(1, "sms", "building", "resident_evacuate")
    await rig.settle()
    assert rig.twilio.sms() == []
    assert len(rig.aliyun.requests) > 5  # five refused, then sent again
    accepted = rig.aliyun.accepted
    assert len(accepted) == len(set(accepted)) == 100  # each resident once
    assert {s for _, s, _, _ in rig.messages()} == {"sent"}


async def test_a_staff_number_at_its_cap_here_is_texted_by_the_next_provider_and_shown(
    tmp_path: Path,
) -> None:
    async with rigged(tmp_path, ["aliyun", "twilio"], cap=2) as rig:
        for incident in (1, 2, 3):
            await rig.act(incident, "notify", "role:security", "staff_fire")
            await rig.settle()
        assert [r["PhoneNumbers"] for r in rig.aliyun.sms] == ["13900000001"] * 2
        (sent,) = rig.twilio.sms()
        assert sent["form"]["To"] == SECURITY
        reason = rig.messages()[-1][3]
        assert reason.startswith("aliyun: the number had 2 texts in a day by Aliyun, its cap")
        assert reason.endswith("sent by twilio")
        (note,) = rig.rows("SELECT text FROM timeline WHERE incident_id = 3")
        assert "its cap: not sent there; sent by twilio" in note[0]
        rig.clock.advance(24 * 3600)  # a day later Aliyun takes it again
        await rig.act(4, "notify", "role:security", "staff_fire")
        await rig.settle()
        assert len(rig.aliyun.sms) == 3


async def test_an_unapproved_template_stops_the_provider_loudly_and_flags_nobody(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.aliyun.approved = {"SMS_100001"}  # the residents' template was not approved
    await rig.act(1, "sms", "building", "resident_evacuate")
    await rig.settle()
    # those already in flight when the first refusal came (the lane's concurrency); then
    # the provider is stopped, not asked for every resident
    assert len(rig.aliyun.sms) <= 20
    assert "aliyun" in rig.providers.stopped
    assert "SMS provider aliyun stopped: the template is not approved" in caplog.text
    states = {name: (state, detail) for name, state, detail in rig.providers.states()}
    assert states["aliyun"][0] == "stopped"
    assert states["aliyun"][1].startswith("stopped: the template is not approved")
    assert states["twilio"] == ("ok", "")
    assert len({r["form"]["To"] for r in rig.twilio.sms()}) == 100
    assert rig.rows("SELECT count(*) FROM residents WHERE undeliverable IS NOT NULL")[0][0] == 0


async def test_a_number_at_its_daily_cap_is_texted_by_the_next_provider_not_flagged(
    tmp_path: Path,
) -> None:
    async with rigged(tmp_path, ["aliyun", "tencent"]) as rig:
        rig.aliyun.always["13700000007"] = fake_aliyun.Refusal("isv.BUSINESS_LIMIT_CONTROL")
        await rig.act(1, "sms", "building", "resident_evacuate")
        await rig.settle()
        (request,) = rig.tencent.sms
        assert request["PhoneNumberSet"] == ["+8613700000007"]
        assert request["TemplateId"] == "1900003"
        assert request["TemplateParamSet"] == ["3"]
        assert rig.tencent.forged == 0  # the SDK's TC3 signature verified
        assert "aliyun" not in rig.providers.stopped
        assert rig.rows("SELECT count(*) FROM residents WHERE undeliverable IS NOT NULL")[0][0] == 0
        accepted = rig.aliyun.accepted
        assert len(accepted) == len(set(accepted)) == 99
        assert "13700000007" not in accepted


async def test_a_wrong_secret_is_refused_by_the_signature_check(tmp_path: Path) -> None:
    async with rigged(tmp_path, ["aliyun", "twilio"], secret="not-the-secret") as rig:
        await rig.act(1, "notify", "role:security", "staff_fire")
        await rig.settle()
        assert rig.aliyun.forged == 1
        assert "the access key secret is wrong" in rig.providers.stopped["aliyun"][1]
        assert len(rig.twilio.sms()) == 1


def test_a_templates_file_whose_text_and_params_disagree_is_refused_with_where(
    tmp_path: Path,
) -> None:
    path = tmp_path / "aliyun.yaml"
    path.write_text(
        "provider: aliyun\nsign_name: 海景物业\ntemplates:\n"
        "  - text_of: staff_fire\n    code: SMS_1\n    params: [incident, locaton]\n"
        "    text: '火警 #${incident}：${location}'\n"
    )
    with pytest.raises(InvalidInput) as failed:
        Templates.load(path)
    said = str(failed.value)
    assert f"{path}:" in said
    assert "no value named 'locaton'" in said
    assert "do not match params" in said


def test_a_value_too_long_for_the_provider_is_cut_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliyun.yaml"
    path.write_text(ALIYUN_TEMPLATES)
    templates = Templates.load(path)
    entry = templates.find("staff_fire", "en", False)  # no English one: the Chinese
    assert entry is not None
    assert entry.code == "SMS_100001"
    filled = templates.fill(entry, {"incident": 1, "location": "长" * 50, "time": "03:12"})
    assert dict(filled.params)["location"] == "长" * 34 + "…"
    assert filled.cut == ("location",)
    assert filled.text(entry.text).startswith("【海景物业】火警 #1：长")


def test_check_names_each_playbook_text_with_no_registered_template(tmp_path: Path) -> None:
    """`alertd check` with a templates file that has the fire alarm's residents'
    evacuation text only: every other text is named, with its playbook, step and site,
    and the registered one is shown as a resident reads it."""
    done = _check(tmp_path, ALIYUN_TEMPLATES)
    assert done.returncode == 1
    assert (
        "site Harbour View: playbook 'fire-alarm' texts 'resident_all_clear' (at "
        "on_restore.steps.0), which has no registered aliyun template for a real alarm"
        in done.stderr
    )
    assert "playbook 'water-leak' texts 'staff_leak'" in done.stderr
    evacuate = "playbook 'fire-alarm' texts 'resident_evacuate' (at steps.3), which has no"
    assert f"{evacuate} registered aliyun template for a drill" in done.stderr
    assert f"{evacuate} registered aliyun template for a real" not in done.stderr
    shown = "site Harbour View aliyun SMS_100003 resident_evacuate (real alarm): 【海景物业】"
    assert shown + "3号楼火警，请立即走楼梯撤离" in done.stdout


@pytest.mark.parametrize(
    ("delivery", "said"),
    [
        ("{providers: [aliyn, twilio]}", "delivery.providers.0"),
        ("{providers: [tencent]}", "names 'tencent', which has no tencent: section"),
        ("{providers: [aliyun, aliyun]}", "delivery.providers names a provider twice"),
        (
            "{providers: [aliyun, twilio], provider_timeout_s: 8, send_timeout_s: 15}",
            "2 providers at delivery.provider_timeout_s (8) each exceed",
        ),
    ],
)
def test_a_providers_list_that_cannot_work_is_refused_at_load(
    tmp_path: Path, delivery: str, said: str
) -> None:
    from alertd.config import load_config

    (tmp_path / "aliyun.yaml").write_text(ALIYUN_TEMPLATES)
    (tmp_path / "alertd.yaml").write_text(
        f"delivery: {delivery}\n"
        "aliyun: {access_key_id: k, access_key_secret: s, templates: aliyun.yaml}\n"
        "twilio: {account_sid: AC00000000000000000000000000000000, auth_token: t, "
        "from_number: '+15005550006'}\n"
    )
    with pytest.raises(InvalidInput) as refused:
        load_config(tmp_path / "alertd.yaml")
    assert said in str(refused.value)


async def test_aliyuns_pushed_reports_and_replies_reach_the_messages_and_the_roll_call(
    rig: Rig,
) -> None:
    await rig.act(1, "notify", "role:security", "staff_fire")
    await rig.act(1, "sms", "building", "resident_evacuate")
    await rig.settle()
    assert await rig.aliyun.push_reports() == 200
    statuses = {s for _, s, _, _ in rig.messages()}
    assert statuses == {"delivered"}  # staff's alone, residents' by batch: each matched
    assert rig.rows("SELECT count(*) FROM timeline WHERE type = 'delivery'")[0][0] == 101

    assert await rig.aliyun.reply("+8613700000003", "1") == 200  # safe
    assert await rig.aliyun.reply("+8613700000004", "2") == 200  # needs help
    assert await rig.aliyun.reply("+8613700000005", "退订") == 200
    assert await rig.aliyun.reply(SECURITY, "OK 1") == 200
    check_ins = rig.rows("SELECT text FROM timeline WHERE type = 'check_in' ORDER BY id")
    assert [t for (t,) in check_ins] == [
        "+86 137****0003: safe (1)",
        "Bldg 3, 5F, 504: need help (2)",
    ]
    assert rig.rows("SELECT command FROM commands ORDER BY id") == [("help",), ("ack",)]
    assert rig.rows("SELECT opted_out FROM residents WHERE phone = '+8613700000005'") == [(1,)]


async def test_a_push_without_the_token_changes_nothing_and_a_bad_entry_is_kept(
    rig: Rig,
) -> None:
    await rig.act(1, "notify", "role:security", "staff_fire")
    await rig.settle()
    good = rig.aliyun.push_url
    rig.aliyun.push_url = good.replace(PUSH_TOKEN, "x" * len(PUSH_TOKEN))
    assert await rig.aliyun.push_reports() == 403
    assert {s for _, s, _, _ in rig.messages()} == {"sent"}

    rig.aliyun.push_url = good
    assert await rig.aliyun.push("report", [{"phone_number": "13900000001"}, "nonsense"]) == 200
    assert await rig.aliyun.push("report", {"not": "a list"}) == 400  # type: ignore[arg-type]
    letters = rig.rows("SELECT source, topic, reason FROM dead_letters ORDER BY id")
    assert letters == [
        ("aliyun", "report entry 0", "no out_id, success"),
        ("aliyun", "report entry 1", "not a JSON object"),
        ("aliyun", "report", "not a JSON array of entries"),
    ]


async def test_a_failed_report_about_the_number_flags_it_in_the_directory(rig: Rig) -> None:
    await rig.act(1, "sms", "building", "resident_evacuate")
    await rig.settle()
    for report in rig.aliyun.reports:
        if report["phone_number"] == "13700000009":
            report.update(success=False, err_code="MN:0001", err_msg="空号")
    assert await rig.aliyun.push_reports() == 200
    assert rig.rows("SELECT undeliverable FROM residents WHERE undeliverable IS NOT NULL") == [
        ("no such number (空号) (Aliyun MN:0001)",)
    ]
    failed = [r for _, s, _, r in rig.messages() if s == "failed"]
    assert failed == ["Aliyun MN:0001 (空号)"]


async def test_tencents_statuses_and_replies_are_pulled_into_the_same_path(
    tmp_path: Path,
) -> None:
    async with rigged(tmp_path, ["tencent", "twilio"]) as rig:
        await rig.act(1, "notify", "role:security", "staff_fire")
        await rig.act(1, "sms", "building", "resident_evacuate")
        await rig.settle()
        # residents' texts share the template's values: a few SendSms of many numbers
        assert len(rig.tencent.sms) < 20
        assert sorted(rig.tencent.texts) == sorted([SECURITY, *(r.phone for r in residents(100))])
        rig.tencent.reply("+8613700000003", "1")
        rig.tencent.reply(SECURITY, "OK")
        assert await rig.pull().once() == 103  # more than one page of statuses
        assert {s for _, s, _, _ in rig.messages()} == {"delivered"}
        assert rig.rows("SELECT text FROM timeline WHERE type = 'check_in'") == [
            ("+86 137****0003: safe (1)",)
        ]
        assert rig.rows("SELECT command, actor FROM commands") == [("ack", "Wang")]
        assert await rig.pull().once() == 0  # handed out once


async def test_a_5000_resident_evacuation_goes_by_batches_each_resident_once(
    tmp_path: Path,
) -> None:
    async with rigged(
        tmp_path, ["aliyun", "twilio"], people=5000, concurrency=200, sms_per_s=2000
    ) as rig:
        await rig.act(1, "sms", "building", "resident_evacuate")
        await rig.settle(rounds=200, step_s=1)
        batches = [r for r in rig.aliyun.requests if r["action"] == "SendBatchSms"]
        sizes = [len(json.loads(r["PhoneNumberJson"])) for r in batches]
        assert max(sizes) <= 100
        assert sum(sizes) == 5000
        assert len(batches) <= 100  # not one request per resident
        accepted = rig.aliyun.accepted
        assert len(accepted) == len(set(accepted)) == 5000
        assert rig.twilio.sms() == []
        # at the configured rate: 5,000 at 2,000/s take at least two seconds
        span = rig.aliyun.times[-1] - rig.aliyun.times[0]
        assert span >= 2.0
        assert await rig.aliyun.push_reports() == 200
        for i in range(0, 5000, 50):  # one resident in fifty answers
            assert await rig.aliyun.reply(f"+86137{i:08d}", "1") == 200
        assert rig.rows("SELECT count(*) FROM timeline WHERE type = 'check_in'") == [(100,)]
        assert rig.rows("SELECT count(*) FROM messages WHERE status = 'delivered'") == [(5000,)]


def _check(tmp_path: Path, templates: str) -> subprocess.CompletedProcess[str]:
    """`alertd check` on the shipped example configuration (its playbooks, devices and
    staff), texting by Aliyun, then Twilio, with `templates`."""
    import yaml

    shipped = Path(__file__).resolve().parent.parent / "config"
    config = yaml.safe_load((shipped / "alertd.example.yaml").read_text())
    for key in ("devices", "playbooks", "staff"):
        config[key] = str((shipped / config[key]).resolve())
    config["storage"]["path"] = str(tmp_path / "alertd.db")
    config["delivery"]["providers"] = ["aliyun", "twilio"]
    config["aliyun"] = {"access_key_id": "k", "access_key_secret": "s", "templates": "aliyun.yaml"}
    config["twilio"] = {"account_sid": "AC0", "auth_token": "t", "from_number": "+15005550006"}
    (tmp_path / "aliyun.yaml").write_text(templates)
    (tmp_path / "alertd.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return subprocess.run(
        [sys.executable, "-m", "alertd", "check", "--config", str(tmp_path / "alertd.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_templates_file_registers_every_shipped_text(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "config/templates.aliyun.example.yaml"
    done = _check(tmp_path, shipped.read_text())
    assert done.returncode == 0, done.stderr
    shown = "site Harbour View aliyun SMS_900000003 resident_evacuate (real alarm): 【海景物业】"
    assert shown + "3号楼火警" in done.stdout
    # the fire alarm's escalation repeats every 2 minutes until someone acknowledges
    assert (
        "playbook 'fire-alarm' repeats 'staff_fire_escalation' (at steps.4.escalate.0) every "
        "120 s until someone acknowledges: the same person reaches aliyun's cap of 50 texts "
        "a day after 1.7 h" in done.stderr
    )


def test_check_on_the_shipped_example_missing_one_text_names_playbook_step_and_site(
    tmp_path: Path,
) -> None:
    shipped = Path(__file__).resolve().parent.parent / "config/templates.aliyun.example.yaml"
    text = shipped.read_text()
    entry = text.index("  - text_of: staff_leak\n")  # the real alarm's, not the drill's
    missing = text[:entry] + text[text.index("  - text_of:", entry + 1) :]
    done = _check(tmp_path, missing)
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(problems) == 1
    assert (
        "site Harbour View: playbook 'water-leak' texts 'staff_leak' (at steps.0), which has no "
        "registered aliyun template for a real alarm" in problems[0]
    )


async def test_two_texts_to_one_number_in_a_batch_go_as_two_texts(tmp_path: Path) -> None:
    """Two messages for one resident that come together (two incidents' texts): neither
    provider's batch may carry the number once for both."""
    async with rigged(tmp_path, ["tencent", "aliyun"]) as rig:
        msgs = [
            Message(
                i,
                "sms",
                "+8613700000001",
                "x",
                "zh",
                template="resident_evacuate",
                values={"building": "3"},
            )
            for i in (1, 2)
        ]
        for name in ("tencent", "aliyun"):
            sink = rig.providers.sinks[name]
            results = await asyncio.gather(*(sink.send(m) for m in msgs))
            assert [r.outcome for r in results] == ["sent", "sent"]
            assert results[0].provider_id != results[1].provider_id
        assert rig.tencent.texts == ["+8613700000001"] * 2
        assert rig.aliyun.accepted == ["13700000001"] * 2


async def test_the_daemon_takes_aliyuns_pushes_at_its_public_address(
    tmp_path: Path, broker: Broker
) -> None:
    """`alertd run` texting by Aliyun: security's alert goes as the registered template,
    Aliyun's report marks it delivered, and security's `OK` pushed as an upstream message
    acknowledges the incident; a push without the token is refused."""
    import signal

    from bench.providers import write_config

    aliyun, twilio = await FakeAliyun().start(), await FakeTwilio().start()
    config = write_config(tmp_path, broker, aliyun, twilio, 1)
    port = free_port()
    with config.open("a") as out:
        out.write(f"http: {{host: 127.0.0.1, port: {port}, public_url: 'https://a.example'}}\n")
    text = config.read_text().replace(
        "protocol: http, ", f"protocol: http, push_token: {PUSH_TOKEN}, "
    )
    config.write_text(text)
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        await until(lambda: b"connected to MQTT" in log.read_bytes(), 30)
        await asyncio.to_thread(publish, broker, "z/smoke_0", '{"smoke": true}')
        await until(lambda: rig_sms(aliyun), 20)
        aliyun.push_url = f"http://127.0.0.1:{port}/aliyun/{'x' * len(PUSH_TOKEN)}"
        assert await aliyun.reply(SECURITY, "OK") == 403
        aliyun.push_url = f"http://127.0.0.1:{port}/aliyun/{PUSH_TOKEN}"
        assert await aliyun.push_reports() == 200
        # Aliyun merges reports: a push far larger than Twilio's 16 KB forms is taken
        merged = [{**aliyun.reports_sent[0], "out_id": f"alertd-9{i:04d}"} for i in range(500)]
        assert len(json.dumps(merged)) > 64 * 1024
        assert await aliyun.push("report", merged) == 200
        assert await aliyun.reply(SECURITY, "OK") == 200
        db = tmp_path / "alertd.db"

        def acknowledged() -> bool:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                row = conn.execute("SELECT status FROM incidents WHERE id = 1").fetchone()
                return row == ("acknowledged",)

        await until(acknowledged, 20)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            delivered = conn.execute(
                "SELECT count(*) FROM messages WHERE status = 'delivered' AND recipient = ?",
                (SECURITY,),
            ).fetchone()
        assert delivered == (1,)
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 20)
        await aliyun.close()
        await twilio.close()
    assert PUSH_TOKEN not in log.read_text()  # the secret stays out of the log


def rig_sms(aliyun: FakeAliyun) -> bool:
    return any(r["PhoneNumbers"] == SECURITY.removeprefix("+86") for r in aliyun.sms)
