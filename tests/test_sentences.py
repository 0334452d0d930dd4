"""Timeline lines as staff read them, in both languages; the engine's trace apart."""

from __future__ import annotations

import re

import pytest

from alertd.incidents.sentences import say, split_trace


@pytest.mark.parametrize(
    ("kind", "text", "zh", "en"),
    [
        ("action", "steps step 1: call to oncall:security", "给值班的 security 打电话",
         "Calling security on call"),
        ("action", "steps step 4: sms to building", "给本楼住户发短信",
         "Texting the building's residents"),
        ("step", "step 5: waiting up to 120 s for an acknowledgement", "等待确认，最多 2 分钟",
         "Waiting up to 2 min for an acknowledgement"),
        ("escalation", "not acknowledged: notifying role:supervisor",
         "无人确认，通知全部 supervisor", "Nobody acknowledged: telling every supervisor"),
        ("event", "fire.alarm active at smoke-3-12 (Bldg 3, 12F, 1203 kitchen): new incident",
         "3号楼 12层 1203 厨房：火警", "Fire alarm at Bldg 3, 12F, 1203 kitchen"),
        ("event", "leak restore at leak-3-01 (Bldg 3, B1, plant room): restore of incident 4",
         "3号楼 B1层 机房：漏水恢复正常", "Water leak at Bldg 3, B1, plant room: normal again"),
        ("inhibited", "sensor.offline active at smoke-3-12 (Bldg 3, 12F) is explained by this "
         "incident: no incident of its own",
         "3号楼 12层：设备离线，属于本事件，不另开事件",
         "Device offline at Bldg 3, 12F: part of this incident, none of its own"),
        ("acknowledged", "by SMS: OK 12 (first: Wang at 2026-12-01 03:12:09 +08:00)",
         "再次确认（最先确认：Wang，2026-12-01 03:12:09 +08:00）",
         "Acknowledged again (first: Wang at 2026-12-01 03:12:09 +08:00)"),
        ("reopened", "the condition came back", "报警再次出现", "The alarm came back"),
        ("step", "mode restart: the steps start again", "各步骤从头开始", "The steps start again"),
        ("step", "step 2: waiting 30 s", "等待 0.5 分钟", "Waiting 0.5 min"),
        ("timer", "playbook water-leak is gone", "预案 water-leak 已删除，计时取消",
         "Playbook water-leak is gone: its timers are dropped"),
        ("command_failed", "command 9 failed: boom", "操作 9 未完成：boom",
         "Action 9 not done: boom"),
        ("follow_up", "follow-up due 2026-12-02 10:00:00 +08:00",
         "回访时间：2026-12-02 10:00:00 +08:00", "Follow-up due 2026-12-02 10:00:00 +08:00"),
        ("all_clear", "all-clear sent by staff: checked (still active: smoke-3-12 fire.alarm)",
         "值班人员已发送解除通知：checked（仍在报警：smoke-3-12（火警））",
         "The all-clear sent by staff: checked (still in alarm: smoke-3-12 (Fire alarm))"),
        ("still_active", "still active: leak-1 leak, smoke-3-12 fire.alarm",
         "仍在报警：leak-1（漏水）、smoke-3-12（火警）",
         "Still in alarm: leak-1 (Water leak), smoke-3-12 (Fire alarm)"),
        ("restore_eta", "expected restore 2026-12-01 18:30:00 +08:00: grid repair",
         "预计恢复时间：2026-12-01 18:30:00 +08:00（grid repair）",
         "Expected restore 2026-12-01 18:30:00 +08:00: grid repair"),
        ("suppressed", "steps step 4: sms to building (a drill)", "演练：不给本楼住户发短信",
         "A drill: no text to the building's residents"),
        ("no_recipients", "no recipients for call to oncall:security: sent to role security",
         "值班的 security无人可接收，已改发给全部 security",
         "No recipients for security on call: sent to every security"),
        ("in_flight", "3 message(s) were being sent when alertd stopped: sent again, some may "
         "arrive twice", "alertd 停止时有 3 条消息正在发送：已重发，个别人可能收到两次",
         "3 message(s) were being sent when alertd stopped: sent again, some may arrive twice"),
        ("pa_ack", "building 3: played", "3号楼广播已播放：played", "PA played in Bldg 3: played"),
        ("visited", "visited 0405 all fine", "已上门检查 0405：all fine",
         "Door checked at 0405: all fine"),
        ("help_request", "Bldg 3, 8F, 0805 张阿姨 asked for help: '2'",
         "3号楼 8层 0805 张阿姨 求助：'2'", "Bldg 3, 8F, 0805 张阿姨 asks for help: '2'"),
        ("reply", "+86 139****0001: STOP (by aliyun)", "+86 139****0001 退订了安全短信",
         "+86 139****0001 opted out of safety texts"),
        ("acknowledged", "by SMS: OK 12", "通过短信回复确认", "Acknowledged by SMS reply"),
        ("delivery", "message 7 not delivered: Twilio undelivered (error 30003)",
         "消息 7 未送达：Twilio undelivered (error 30003)",
         "Message 7 not delivered: Twilio undelivered (error 30003)"),
        ("join", "new: device:smoke-3-05; announced", "新的报警：探测器 smoke-3-05（已通知）",
         "Another alarm: detector smoke-3-05 (announced)"),
        ("check_in", "Bldg 3, 8F, 0805: need help (2)", "3号楼 8层 0805：需要帮助（“2”）",
         'Bldg 3, 8F, 0805: needs help ("2")'),
        # people's own words stay as they were written
        ("note", "伤员已送医 / casualty taken", "伤员已送医 / casualty taken",
         "伤员已送医 / casualty taken"),
    ],
)  # fmt: skip
def test_each_line_reads_as_a_sentence_in_the_pages_language(
    kind: str, text: str, zh: str, en: str
) -> None:
    assert say(kind, text, "zh") == zh
    assert say(kind, text, "en") == en


def test_an_action_names_whom_it_reached_when_the_page_may() -> None:
    line = "steps step 1: call to oncall:security"
    assert say("action", line, "zh", "Wang") == "给Wang 打电话（值班的 security）"
    assert say("action", line, "en", "Wang") == "Calling Wang (security on call)"
    escalated = "not acknowledged: notifying role:supervisor"
    assert (
        say("escalation", escalated, "zh", "Li, Zhou")
        == "无人确认，通知Li, Zhou（全部 supervisor）"
    )
    assert say("action", "steps step 2: call to person:Wang", "en", "Wang") == "Calling Wang"


def test_the_matcher_trace_is_kept_apart_from_the_line() -> None:
    line = "fire.alarm active at s1 (Bldg 3): new incident [fire-alarm: matched; x: kind y]"
    assert split_trace(line) == (
        "fire.alarm active at s1 (Bldg 3): new incident",
        "fire-alarm: matched; x: kind y",
    )
    assert split_trace("a note [with brackets] inside") == ("a note [with brackets] inside", "")


# lines whose text is people's own words (a note, a reason), shown as written
OWN_WORDS = {"note", "on_site", "resolved", "closed"}


def test_every_line_the_daemon_writes_has_its_sentence() -> None:
    """A new kind of timeline line must come with its sentence, or the Chinese page
    shows the engine's English."""
    from pathlib import Path

    from alertd.console.i18n import WORDS
    from alertd.incidents.sentences import PATTERNS

    source = "\n".join(p.read_text() for p in Path("alertd").rglob("*.py"))
    written = set(re.findall(r'Entry\(\s*"(\w+)"', source))
    written |= set(re.findall(r'note\(\s*conn,\s*\w+,\s*now,\s*"(\w+)"', source))
    assert {"event", "inhibited", "in_flight", "pa_ack"} <= written  # the scan finds them
    assert written - OWN_WORDS - {kind for kind, _, _ in PATTERNS} == set()
    # and what the line is about, in the catalogue
    assert {kind for kind in written if f"t_{kind}" not in WORDS} == set()
    # the phone page's short timeline names kinds that exist
    from alertd.console.web import PEOPLE

    assert PEOPLE - written - OWN_WORDS - {kind for kind, _, _ in PATTERNS} == set()


def test_every_refusal_of_the_console_is_said_in_chinese() -> None:
    """Each message the console refuses with (a 400, 403, 404) has its Chinese: the
    error page of a zh desk says what went wrong in its language."""
    from pathlib import Path

    from alertd.console.i18n import refusal
    from alertd.incidents import inputs

    source = Path("alertd/console/web.py").read_text()
    raised = re.findall(r'HTTP\w+\(text=(f?)"([^"]*)"', source)
    messages = [re.sub(r"\{[^}]*\}", "7", text) if f else text for f, text in raised]
    # `site: {exc}` wraps what the sites say: said below
    messages = [m for m in messages if not re.fullmatch(r"\w+: 7", m)]
    messages += ["site: unknown site 'x' (one of: hv, gd)", "site: which site? (one of: hv)"]
    for bad in ("x", 0, "nan"):  # what the shared checks say
        try:
            inputs.eta_minutes(bad)
        except ValueError as exc:
            messages.append(str(exc))
    messages += ["text: at most 2000 characters (got 200000)", "incident: no incident 0"]
    assert len(messages) > 25  # the scan finds them
    assert [m for m in messages if refusal(m, "zh") == m] == []
    assert refusal("no incident 9999", "zh") == "没有事件 9999"
    assert refusal("no incident 9999", "en") == "no incident 9999"


@pytest.mark.parametrize(
    ("answer", "zh"),
    [
        ("incident 4 is resolved already", "事件 4 已处理"),
        ("already acknowledged by Wang at 2026-12-08 09:12:00 +08:00",
         "已由 Wang 于 2026-12-08 09:12:00 +08:00 确认"),
        ("resolved; the all-clear waits until these clear: smoke-3-12 fire.alarm",
         "已处理；解除通知等待以下探测器恢复：smoke-3-12（火警）"),
        ("incident 4 is still active: smoke-3-12 fire.alarm. To resolve it anyway, confirm "
         "with a reason (console: tick and say why; CLI: --force --reason)",
         "事件 4 仍在报警：smoke-3-12（火警）。如仍要执行，请勾选确认并写明原因"),
        ("expected restore 2026-12-08 18:00:00 +08:00 recorded; playbook power-loss has no "
         "on_eta steps, so nobody was told",
         "已记录预计恢复时间 2026-12-08 18:00:00 +08:00；"
         "预案 power-loss 没有相应通知步骤，未通知任何人"),
        ("closed", "已关闭"),
        ("event made", "已报告，事件随即开始"),
    ],
)  # fmt: skip
def test_the_daemons_answer_to_an_action_is_said_in_the_pages_language(
    answer: str, zh: str
) -> None:
    from alertd.console.i18n import refusal

    assert refusal(answer, "zh") == zh
    assert refusal(answer, "en") == answer
