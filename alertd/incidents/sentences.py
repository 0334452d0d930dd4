"""Timeline lines as people say them, in the page's language: "给值班的 security 打电话",
"Waiting up to 2 min for an acknowledgement". The engine writes its lines for the
record (English, exact); these are what staff read. A line no pattern knows is shown as
it was written (a note, a reason: people's own words)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from alertd.engine.wording import kind_words, reword_place

Say = Callable[[re.Match[str], str], str]


def audience(target: str, lang: str) -> str:
    """Whom a step reaches (`oncall:security`, `building`), as people say it."""
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


def _whom(target: str, lang: str, names: str) -> tuple[str, str]:
    """Whom a step reached and, aside, the role they were reached as: the people by name
    once the console knows them ("Wang", "security on call"), else the role alone."""
    said = audience(target, lang)
    if not names or target.startswith("person:"):
        return said, ""
    return names, f"（{said}）" if lang == "zh" else f" ({said})"


def _action(m: re.Match[str], lang: str, names: str = "") -> str:
    channel, (who, aside) = m["channel"], _whom(m["target"], lang, names)
    if lang == "zh":
        to = f"给{who}" + (" " if who[-1:].isascii() else "")  # a Latin name, then a space
        return {
            "call": f"{to}打电话{aside}",
            "notify": f"{to}发短信{aside}",
            "sms": f"{to}发短信{aside}",
            "email": f"{to}发邮件{aside}",
            "pa": "启动楼内广播",
            "webhook": f"通知工作群 {m['target']}",
        }.get(channel, f"{channel} → {who}{aside}")
    return {
        "call": f"Calling {who}{aside}",
        "notify": f"Texting {who}{aside}",
        "sms": f"Texting {who}{aside}",
        "email": f"Emailing {who}{aside}",
        "pa": "PA broadcast started",
        "webhook": f"Posting to the group {m['target']}",
    }.get(channel, f"{channel} to {who}{aside}")


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


def conditions(listed: str, lang: str) -> str:
    """`smoke-3-12 fire.alarm, leak-1 leak` (the detectors still in alarm) as people say
    them: `smoke-3-12 (Fire alarm), leak-1 (Water leak)` in English."""
    said = []
    for item in listed.split(", "):
        device, _, kind = item.partition(" ")
        words = kind_words(kind, lang) if kind else ""
        said.append(f"{device}（{words}）" if lang == "zh" and words else
                    f"{device} ({words})" if words else device)  # fmt: skip
    return ("、" if lang == "zh" else ", ").join(said)


_ANSWERS = {"need help": ("需要帮助", "needs help"), "safe": ("安全", "safe"),
            "other": ("回复", "replied")}  # fmt: skip


def _said(zh: str, en: str, **said_as: Callable[[str, str], str]) -> Say:
    """A sentence made from the line's parts: `{target}` in the text is the line's
    `target` as written, or as `said_as["target"]` says it in the page's language."""

    def sentence(m: re.Match[str], lang: str) -> str:
        parts = {
            name: said_as[name](value, lang) if name in said_as else value
            for name, value in m.groupdict(default="").items()
        }
        return (zh if lang == "zh" else en).format(**parts)

    return sentence


def _in_minutes(seconds: str, _lang: str) -> str:
    """Seconds as minutes, in either language: `2`, `0.5`."""
    s = float(seconds)
    return f"{s / 60:g}" if s >= 60 else f"{s / 60:.1f}"


def _escalation(m: re.Match[str], lang: str, names: str = "") -> str:
    who, aside = _whom(m["target"], lang, names)
    if lang == "zh":
        return f"无人确认，通知{who}{aside}"
    return f"Nobody acknowledged: telling {who}{aside}"


#: the lines that can name whom they reached (the console knows it from the messages)
NAMED = {"action": _action, "escalation": _escalation}


ANSWER = re.compile(r"(?P<who>.*): (?P<what>need help|safe|other) \((?P<said>.*)\)$", re.S)


def _answer(m: re.Match[str], lang: str) -> str:
    """A resident's or staff member's answer to a roll call: who, what it means, and
    their words as they wrote them."""
    who = reword_place(m["who"], lang)
    if lang == "zh":
        return f"{who}：{_ANSWERS[m['what']][0]}（“{m['said']}”）"
    return f'{who}: {_ANSWERS[m["what"]][1]} ("{m["said"]}")'


PATTERNS: list[tuple[str, re.Pattern[str], Say]] = [
    (
        "action",
        re.compile(r"(?:\w+ )?step \d+: (?P<channel>\w+) to (?P<target>\S+)$"),
        _action,
    ),
    (
        "step",
        re.compile(r"step \d+: waiting up to (?P<s>[\d.]+) s for an acknowledgement$"),
        _said(
            "等待确认，最多 {s} 分钟", "Waiting up to {s} min for an acknowledgement", s=_in_minutes
        ),
    ),
    (
        "step",
        re.compile(r"step \d+: already acknowledged$"),
        _said("已有人确认，不再升级", "Already acknowledged"),
    ),
    (
        "escalation",
        re.compile(r"not acknowledged: notifying (?P<target>\S+)$"),
        _escalation,
    ),
    (
        "opened",
        re.compile(r"incident opened by (?P<book>\S+)$"),
        _said("事件开始", "Incident opened"),
    ),
    (
        "event",
        re.compile(
            r"(?P<kind>[\w.]+) (?P<state>active|restore) at (?P<device>\S+) \((?P<place>[^)]*)\)"
        ),
        lambda m, lang: (
            f"{reword_place(m['place'], lang)}：{kind_words(m['kind'], lang)}"
            + ("" if m["state"] == "active" else "恢复正常")
            if lang == "zh"
            else f"{kind_words(m['kind'], lang)} at {m['place']}"
            + ("" if m["state"] == "active" else ": normal again")
        ),
    ),
    (
        "inhibited",
        re.compile(
            r"(?P<kind>[\w.]+) (?P<state>active|restore) at (?P<device>\S+) \((?P<place>[^)]*)\)"
            " is explained by this incident"
        ),
        lambda m, lang: (
            f"{reword_place(m['place'], lang)}：{kind_words(m['kind'], lang)}"
            + ("" if m["state"] == "active" else "恢复")
            + "，属于本事件，不另开事件"
            if lang == "zh"
            else f"{kind_words(m['kind'], lang)} at {m['place']}"
            + ("" if m["state"] == "active" else " over")
            + ": part of this incident, none of its own"
        ),
    ),
    (
        "vulnerable_list",
        re.compile(r"door-check list for (?P<target>\S+) \((?P<n>\d+)\): (?P<list>.*)$", re.S),
        _said(
            "上门检查名单（{n} 户）已发给{target}：{list}",
            "Door-check list ({n}) sent to {target}: {list}",
            target=audience,
        ),
    ),
    (
        "delivery",
        re.compile(r"message (?P<id>\d+) delivered$"),
        _said("消息 {id} 已送达", "Message {id} delivered"),
    ),
    (
        "delivery",
        re.compile(r"message (?P<id>\d+) not delivered: (?P<why>.*)$", re.S),
        _said("消息 {id} 未送达：{why}", "Message {id} not delivered: {why}"),
    ),
    (
        "join",
        re.compile(r"new: (?P<news>.*); announced$"),
        _said("新的报警：{news}（已通知）", "Another alarm: {news} (announced)", news=_news),
    ),
    (
        "restored",
        re.compile(r"every condition is back to normal; all-clear after (?P<s>[\d.]+) s$"),
        _said(
            "全部恢复正常，{s} 秒后发送解除通知",
            "Everything back to normal; the all-clear in {s} s",
        ),
    ),
    (
        "confirm",
        re.compile(r"every condition is back to normal; the all-clear goes out when staff"),
        _said(
            "全部恢复正常；值班人员点“处理完毕”后发送解除通知",
            "Everything back to normal; the all-clear goes out once staff resolve the incident",
        ),
    ),
    (
        "all_clear",
        re.compile(r"every condition is back to normal$"),
        _said("全部恢复正常", "Everything back to normal"),
    ),
    ("check_in", ANSWER, _answer),
    ("reply", ANSWER, _answer),
    (
        "reply",
        re.compile(r"(?P<who>.*): (?P<what>STOP|START) \(by (?P<provider>\w+)\)$"),
        lambda m, lang: (
            f"{m['who']} " + ("退订了安全短信" if m["what"] == "STOP" else "恢复接收安全短信")
            if lang == "zh"
            else f"{m['who']} "
            + ("opted out of safety texts" if m["what"] == "STOP" else "opted in again")
        ),
    ),
    (
        "help_request",
        re.compile(r"(?P<who>.*) asked for help: (?P<said>.*)$", re.S),
        _said("{who} 求助：{said}", "{who} asks for help: {said}", who=reword_place),
    ),
    (
        "resolved",
        re.compile(r"resolved$"),
        _said("已处理", "Resolved"),
    ),
    (
        "closed",
        re.compile(r"closed$"),
        _said("已关闭", "Closed"),
    ),
    (
        "acknowledged",
        re.compile(r".* \(first: (?P<who>.*) at (?P<at>[^)]*)\)$", re.S),
        _said("再次确认（最先确认：{who}，{at}）", "Acknowledged again (first: {who} at {at})"),
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
    (
        "reopened",
        re.compile(r"the condition came back$"),
        _said("报警再次出现", "The alarm came back"),
    ),
    (
        "step",
        re.compile(r"mode restart: the steps start again$"),
        _said("各步骤从头开始", "The steps start again"),
    ),
    (
        "step",
        re.compile(r"step \d+: waiting (?P<s>[\d.]+) s$"),
        _said("等待 {s} 分钟", "Waiting {s} min", s=_in_minutes),
    ),
    (
        "step",
        re.compile(r"running the steps again for a queued event$"),
        _said(
            "为期间新到的报警再次执行各步骤", "The steps again, for an alarm that came meanwhile"
        ),
    ),
    (
        "timer",
        re.compile(r"playbook (?P<book>\S+) is gone$"),
        _said("预案 {book} 已删除，计时取消", "Playbook {book} is gone: its timers are dropped"),
    ),
    (
        "timer_failed",
        re.compile(r"(?P<timer>\w+) timer could not be applied: (?P<why>.*)$", re.S),
        _said(
            "计时步骤无法执行（{timer}）：{why}", "A timed step could not be done ({timer}): {why}"
        ),
    ),
    (
        "command_failed",
        re.compile(r"command (?P<id>\d+) failed: (?P<why>.*)$", re.S),
        _said("操作 {id} 未完成：{why}", "Action {id} not done: {why}"),
    ),
    (
        "follow_up",
        re.compile(r"follow-up$"),
        _said("开始回访", "Follow-up started"),
    ),
    (
        "follow_up",
        re.compile(r"follow-up due (?P<at>.*)$"),
        _said("回访时间：{at}", "Follow-up due {at}"),
    ),
    (
        "all_clear_held",
        re.compile(r"resolved; the all-clear waits until these clear: (?P<list>.*)$", re.S),
        _said(
            "已处理；解除通知等待以下探测器恢复：{list}",
            "Resolved; the all-clear waits until these clear: {list}",
            list=conditions,
        ),
    ),
    (
        "still_active",
        re.compile(r"still active: (?P<list>.*)$", re.S),
        _said("仍在报警：{list}", "Still in alarm: {list}", list=conditions),
    ),
    (
        "all_clear",
        re.compile(
            r"all-clear sent by staff(?:: (?P<why>.*?))?(?: \(still active: (?P<list>.*)\))?$",
            re.S,
        ),
        lambda m, lang: (
            "值班人员已发送解除通知"
            + (f"：{m['why']}" if m["why"] else "")
            + (f"（仍在报警：{conditions(m['list'], lang)}）" if m["list"] else "")
            if lang == "zh"
            else "The all-clear sent by staff"
            + (f": {m['why']}" if m["why"] else "")
            + (f" (still in alarm: {conditions(m['list'], lang)})" if m["list"] else "")
        ),
    ),
    (
        "restore_eta",
        re.compile(
            r"expected restore (?P<at>[^:]+:\d\d:\d\d [+-]\d\d:\d\d)(?:: (?P<why>.*))?$", re.S
        ),
        lambda m, lang: (
            f"预计恢复时间：{m['at']}" + (f"（{m['why']}）" if m["why"] else "")
            if lang == "zh"
            else f"Expected restore {m['at']}" + (f": {m['why']}" if m["why"] else "")
        ),
    ),
    (
        "suppressed",
        re.compile(r".*: sms to (?P<target>\S+) \(a drill\)$"),
        _said("演练：不给{target}发短信", "A drill: no text to {target}", target=audience),
    ),
    (
        "no_recipients",
        re.compile(r"no recipients for (?P<channel>\w+) to (?P<target>\S+): sent to (?P<to>.*)$"),
        lambda m, lang: (
            f"{audience(m['target'], lang)}无人可接收，已改发给"
            + (f"全部 {m['to'][5:]}" if m["to"].startswith("role ") else "员工名单上的所有人")
            if lang == "zh"
            else f"No recipients for {audience(m['target'], lang)}: sent to "
            + (
                f"every {m['to'][5:]}"
                if m["to"].startswith("role ")
                else "everyone on the staff list"
            )
        ),
    ),
    (
        "no_recipients",
        re.compile(r"NOBODY TO TELL: no recipients for (?P<channel>\w+) to (?P<target>\S+) "),
        _said(
            "无人可通知：{target}没有接收人，也没有员工可改发（员工名单是否已加载？）",
            "NOBODY TO TELL: no recipients for {target} and no staff to fall back on (is the "
            "staff file loaded?)",
            target=audience,
        ),
    ),
    (
        "in_flight",
        re.compile(r"(?P<n>\d+) message\(s\) were being sent when alertd stopped"),
        _said(
            "alertd 停止时有 {n} 条消息正在发送：已重发，个别人可能收到两次",
            "{n} message(s) were being sent when alertd stopped: sent again, some may arrive twice",
        ),
    ),
    (
        "delivery",
        re.compile(r"message (?P<id>\d+) to (?P<to>[^:]+): (?P<why>.*)$", re.S),
        _said(
            "消息 {id}（{to}）改由下一个服务商发出：{why}",
            "Message {id} ({to}) sent by the next provider: {why}",
        ),
    ),
    (
        "pa_ack",
        re.compile(r"building (?P<b>[^:]+): (?P<said>.*)$", re.S),
        lambda m, lang: (
            f"{reword_place('Bldg ' + m['b'], lang)}广播已播放：{m['said']}"
            if lang == "zh"
            else f"PA played in Bldg {m['b']}: {m['said']}"
        ),
    ),
    (
        "visited",
        re.compile(r"visited (?P<unit>\S+) ?(?P<said>.*)$", re.S),
        lambda m, lang: (
            f"已上门检查 {m['unit']}" + (f"：{m['said']}" if m["said"] else "")
            if lang == "zh"
            else f"Door checked at {m['unit']}" + (f": {m['said']}" if m["said"] else "")
        ),
    ),
]


_ESCALATION = re.compile(r"not acknowledged: notifying (\S+)$")


def name_the_reached(lines: list[dict[str, Any]], reached: list[tuple[str, list[str]]]) -> None:
    """Each action and escalation line gets `who`: the staff its messages went to.
    `reached`: each outbox action as its line says it, with their names, in order (the
    same step run twice is two lines, matched in turn)."""
    queues: dict[str, list[list[str]]] = {}
    for said, names in reached:
        queues.setdefault(said, []).append(names)
    for line in lines:
        key = _ESCALATION.sub(r"escalation: notify to \1", line["text"])
        found = queues.get(key) if line["type"] in NAMED else None
        line["who"] = ", ".join(found.pop(0)) if found else ""


_TRACE = re.compile(r"(.*?)\s*(?:\[([^\[\]]*)\])?\s*$", re.S)


def split_trace(text: str) -> tuple[str, str]:
    """A line and the engine's matcher trace at its end ("[fire-alarm: matched; ...]"),
    which is for supervisors, behind "details"."""
    m = _TRACE.match(text)
    assert m is not None  # the pattern matches any text
    return m[1], m[2] or ""


def say(kind: str, text: str, lang: str, names: str = "") -> str:
    """The line as people read it: its sentence in `lang`, or the text as written.
    `names`: whom an action or escalation reached, for those who may see names."""
    for pattern_kind, pattern, sentence in PATTERNS:
        if pattern_kind == kind and (m := pattern.match(text)):
            named = NAMED.get(kind) if names else None
            return named(m, lang, names) if named else sentence(m, lang)
    return text
