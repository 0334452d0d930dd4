"""Timeline lines as staff read them, in both languages; the engine's trace apart."""

from __future__ import annotations

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
         "Bldg 3, 12F, 1203 kitchen：报警", "Alarm at Bldg 3, 12F, 1203 kitchen"),
        ("acknowledged", "by SMS: OK 12", "通过短信回复确认", "Acknowledged by SMS reply"),
        ("delivery", "message 7 not delivered: Twilio undelivered (error 30003)",
         "消息 7 未送达：Twilio undelivered (error 30003)",
         "Message 7 not delivered: Twilio undelivered (error 30003)"),
        ("join", "new: device:smoke-3-05; announced", "新的报警：探测器 smoke-3-05（已通知）",
         "Another alarm: detector smoke-3-05 (announced)"),
        ("check_in", "Bldg 3, 8F, 0805: need help (2)", "Bldg 3, 8F, 0805：需要帮助（“2”）",
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


def test_the_matcher_trace_is_kept_apart_from_the_line() -> None:
    line = "fire.alarm active at s1 (Bldg 3): new incident [fire-alarm: matched; x: kind y]"
    assert split_trace(line) == (
        "fire.alarm active at s1 (Bldg 3): new incident",
        "fire-alarm: matched; x: kind y",
    )
    assert split_trace("a note [with brackets] inside") == ("a note [with brackets] inside", "")
