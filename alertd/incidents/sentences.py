"""Timeline lines as people say them, in the page's language: "给值班的 security 打电话",
"Waiting up to 2 min for an acknowledgement". The engine writes its lines for the
record (English, exact); these are what staff read. A line no pattern knows is shown as
it was written (a note, a reason: people's own words)."""

from __future__ import annotations

import re
from collections.abc import Callable

Say = Callable[[re.Match[str], str], str]


def _target(target: str, lang: str) -> str:
    kind, _, name = target.partition(":")
    zh = lang == "zh"
    if kind == "oncall":
        return f"值班的 {name}" if zh else f"{name} on call"
    if kind == "role":
        return f"全部 {name}" if zh else f"every {name}"
    if kind in ("person", "email"):
        return name
    return {
        "building": ("本楼住户", "the building's residents"),
        "floor": ("本层住户", "the floor's residents"),
        "unit": ("本户住户", "the flat's residents"),
        "notified": ("已通知的住户", "the residents told"),
    }.get(target, (target, target))[0 if zh else 1]


def _action(m: re.Match[str], lang: str) -> str:
    channel, who = m["channel"], _target(m["target"], lang)
    if lang == "zh":
        to = f"给{who}" + (" " if who[-1:].isascii() else "")  # a Latin name, then a space
        return {
            "call": f"{to}打电话",
            "notify": f"{to}发短信",
            "sms": f"{to}发短信",
            "email": f"{to}发邮件",
            "pa": "启动楼内广播",
            "webhook": f"通知工作群 {m['target']}",
        }.get(channel, f"{channel} → {who}")
    return {
        "call": f"Calling {who}",
        "notify": f"Texting {who}",
        "sms": f"Texting {who}",
        "email": f"Emailing {who}",
        "pa": "PA broadcast started",
        "webhook": f"Posting to the group {m['target']}",
    }.get(channel, f"{channel} to {who}")


def _news(listed: str, lang: str) -> str:
    """`device:smoke-3-05, floor:5` as people say it."""
    said = []
    for item in listed.split(", "):
        kind, _, name = item.partition(":")
        zh = {"device": f"探测器 {name}", "floor": f"{name}层", "unit": f"{name}户",
              "zone": f"区域 {name}"}  # fmt: skip
        en = {"device": f"detector {name}", "floor": f"floor {name}", "unit": f"flat {name}",
              "zone": f"zone {name}"}  # fmt: skip
        said.append((zh if lang == "zh" else en).get(kind, item))
    return ("、" if lang == "zh" else ", ").join(said)


_ANSWERS = {"need help": ("需要帮助", "needs help"), "safe": ("安全", "safe"),
            "other": ("回复", "replied")}  # fmt: skip


def _fixed(zh: str, en: str) -> Say:
    return lambda m, lang: zh if lang == "zh" else en


def _minutes(seconds: str) -> str:
    s = float(seconds)
    return f"{s / 60:g}" if s >= 60 else f"{s / 60:.1f}"


PATTERNS: list[tuple[str, re.Pattern[str], Say]] = [
    (
        "action",
        re.compile(r"(?:\w+ )?step \d+: (?P<channel>\w+) to (?P<target>\S+)$"),
        _action,
    ),
    (
        "step",
        re.compile(r"step \d+: waiting up to (?P<s>[\d.]+) s for an acknowledgement$"),
        lambda m, lang: (
            f"等待确认，最多 {_minutes(m['s'])} 分钟"
            if lang == "zh"
            else f"Waiting up to {_minutes(m['s'])} min for an acknowledgement"
        ),
    ),
    (
        "step",
        re.compile(r"step \d+: already acknowledged$"),
        _fixed("已有人确认，不再升级", "Already acknowledged"),
    ),
    (
        "escalation",
        re.compile(r"not acknowledged: notifying (?P<target>\S+)$"),
        lambda m, lang: (
            f"无人确认，通知{_target(m['target'], lang)}"
            if lang == "zh"
            else f"Nobody acknowledged: telling {_target(m['target'], lang)}"
        ),
    ),
    (
        "opened",
        re.compile(r"incident opened by (?P<book>\S+)$"),
        _fixed("事件开始", "Incident opened"),
    ),
    (
        "event",
        re.compile(
            r"(?P<kind>[\w.]+) (?P<state>active|restore) at (?P<device>\S+) \((?P<place>[^)]*)\)"
        ),
        lambda m, lang: (
            (f"{m['place']}：报警" if m["state"] == "active" else f"{m['place']}：恢复正常")
            if lang == "zh"
            else (
                f"Alarm at {m['place']}"
                if m["state"] == "active"
                else f"Normal again at {m['place']}"
            )
        ),
    ),
    (
        "vulnerable_list",
        re.compile(r"door-check list for (?P<target>\S+) \((?P<n>\d+)\): (?P<list>.*)$", re.S),
        lambda m, lang: (
            f"上门检查名单（{m['n']} 户）已发给{_target(m['target'], lang)}：{m['list']}"
            if lang == "zh"
            else f"Door-check list ({m['n']}) sent to {_target(m['target'], lang)}: {m['list']}"
        ),
    ),
    (
        "delivery",
        re.compile(r"message (?P<id>\d+) delivered$"),
        lambda m, lang: (
            f"消息 {m['id']} 已送达" if lang == "zh" else f"Message {m['id']} delivered"
        ),
    ),
    (
        "delivery",
        re.compile(r"message (?P<id>\d+) not delivered: (?P<why>.*)$", re.S),
        lambda m, lang: (
            f"消息 {m['id']} 未送达：{m['why']}"
            if lang == "zh"
            else f"Message {m['id']} not delivered: {m['why']}"
        ),
    ),
    (
        "join",
        re.compile(r"new: (?P<news>.*); announced$"),
        lambda m, lang: (
            f"新的报警：{_news(m['news'], lang)}（已通知）"
            if lang == "zh"
            else f"Another alarm: {_news(m['news'], lang)} (announced)"
        ),
    ),
    (
        "restored",
        re.compile(r"every condition is back to normal; all-clear after (?P<s>[\d.]+) s$"),
        lambda m, lang: (
            f"全部恢复正常，{m['s']} 秒后发送解除通知"
            if lang == "zh"
            else f"Everything back to normal; the all-clear in {m['s']} s"
        ),
    ),
    (
        "all_clear",
        re.compile(r"every condition is back to normal$"),
        _fixed("全部恢复正常", "Everything back to normal"),
    ),
    (
        "check_in",
        re.compile(r"(?P<who>.*): (?P<what>need help|safe|other) \((?P<said>.*)\)$", re.S),
        lambda m, lang: (
            f"{m['who']}：{_ANSWERS[m['what']][0]}（“{m['said']}”）"
            if lang == "zh"
            else f'{m["who"]}: {_ANSWERS[m["what"]][1]} ("{m["said"]}")'
        ),
    ),
    (
        "help_request",
        re.compile(r"(?P<who>.*) asked for help: (?P<said>.*)$", re.S),
        lambda m, lang: (
            f"{m['who']} 求助：{m['said']}"
            if lang == "zh"
            else f"{m['who']} asks for help: {m['said']}"
        ),
    ),
    (
        "resolved",
        re.compile(r"resolved$"),
        _fixed("已处理", "Resolved"),
    ),
    (
        "closed",
        re.compile(r"closed$"),
        _fixed("已关闭", "Closed"),
    ),
    (
        "acknowledged",
        re.compile(r"(?:acknowledged|by SMS: (?P<sms>.*)|by phone \(pressed 1\))$"),
        lambda m, lang: (
            ("通过短信回复确认" if m["sms"] is not None else "已确认")
            if lang == "zh"
            else ("Acknowledged by SMS reply" if m["sms"] is not None else "Acknowledged")
        ),
    ),
]


_TRACE = re.compile(r"(.*?)\s*(?:\[([^\[\]]*)\])?\s*$", re.S)


def split_trace(text: str) -> tuple[str, str]:
    """A line and the engine's matcher trace at its end ("[fire-alarm: matched; ...]"),
    which is for supervisors, behind "details"."""
    m = _TRACE.match(text)
    assert m is not None  # the pattern matches any text
    return m[1], m[2] or ""


def say(kind: str, text: str, lang: str) -> str:
    """The line as people read it: its sentence in `lang`, or the text as written."""
    for pattern_kind, pattern, sentence in PATTERNS:
        if pattern_kind == kind and (m := pattern.match(text)):
            return sentence(m, lang)
    return text
