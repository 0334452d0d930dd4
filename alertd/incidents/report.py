"""The incident report, in the shape the operations manual asks for: time, place, what
happened, measures taken and by whom, messages sent, restore times, response times."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, tzinfo
from typing import Any

from alertd.engine.wording import stamp
from alertd.incidents.sentences import say, split_trace


def _local(text: str | None, tz: tzinfo) -> str:
    return stamp(datetime.fromisoformat(text), tz) if text else "—"


def _minutes(start: str, end: str | None) -> str:
    took = took_s(start, end)
    return "—" if took is None else f"{took / 60:.1f} min"


def took_s(start: str, end: str | None) -> float | None:
    """Seconds from one stored time to another, None while the second has not come."""
    if not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def drill_in_time(incident: dict[str, Any], ack_target_s: float | None) -> bool | None:
    """Whether a drill was acknowledged within the playbook's deadline (None: not
    acknowledged, or no deadline to hold it to)."""
    took = took_s(incident["opened_at"], incident["acknowledged_at"])
    return None if took is None or ack_target_s is None else took <= ack_target_s


def drill_score(incident: dict[str, Any], ack_target_s: float | None, lang: str = "en") -> str:
    """How a drill went against the playbook's acknowledgement deadline, in `lang`."""
    zh = lang == "zh"
    took = took_s(incident["opened_at"], incident["acknowledged_at"])
    if took is None:
        return "未确认" if zh else "not acknowledged"
    verdict = ""
    if ack_target_s is not None:
        target, over = ack_target_s / 60, (took - ack_target_s) / 60
        if zh:
            verdict = (
                f"，达到 {target:.1f} 分钟目标"
                if over <= 0
                else f"，超出 {target:.1f} 分钟目标 {over:.1f} 分钟"
            )
        else:
            verdict = (
                f" - within the {target:.1f} min target"
                if over <= 0
                else f" - {over:.1f} min over the {target:.1f} min target"
            )
    resolved = took_s(incident["opened_at"], incident["resolved_at"])
    if zh:
        done = "未处理完毕" if resolved is None else f"{resolved / 60:.1f} 分钟处理完毕"
        return f"{took / 60:.1f} 分钟确认{verdict}；{done}"
    done = "—" if resolved is None else f"{resolved / 60:.1f} min"
    return f"acknowledged in {took / 60:.1f} min{verdict}; resolved in {done}"


#: a panel's clock this far from ours is worth showing (the event's own time is kept)
CLOCK_GAP_S = 60.0


def markdown(
    incident: dict[str, Any],
    timeline: list[dict[str, Any]],
    outbox: list[dict[str, Any]],
    tz: tzinfo,
    ack_target_s: float | None = None,
    event_times: dict[int, tuple[str, str]] | None = None,
) -> str:
    """`event_times`: event id -> (occurred_at, received_at) for the events on the
    timeline; the panel's time is shown where it differs from ours by over a minute."""
    i = incident
    place = " / ".join(
        p
        for p in (
            i["site"],
            i["building"] and f"building {i['building']}",
            i["floor"] and f"floor {i['floor']}",
            i["unit"],
            i["zone"],
        )
        if p
    )
    lines = [
        f"# Incident {i['id']}: {i['title']}" + (" (DRILL / 演练)" if i["drill"] else ""),
        "",
        f"- **Time:** opened {_local(i['opened_at'], tz)}, acknowledged "
        f"{_local(i['acknowledged_at'], tz)}, resolved {_local(i['resolved_at'], tz)}",
        f"- **Place:** {place or '—'}",
        f"- **Playbook:** {i['playbook']} · **severity:** {i['severity']} · "
        f"**status:** {i['status']}",
        f"- **Expected restore:** {_local(i['expected_restore_at'], tz)} · **actual restore:** "
        f"{_local(next((r['at'] for r in timeline if r['type'] == 'all_clear'), None), tz)}",
        f"- **Response times:** to acknowledge {_minutes(i['opened_at'], i['acknowledged_at'])}, "
        f"to resolve {_minutes(i['opened_at'], i['resolved_at'])}",
        *([f"- **Drill score:** {drill_score(i, ack_target_s)}"] if i["drill"] else []),
        "",
        "## What happened and what was done",
        "",
        "| time | what | by | details |",
        "|---|---|---|---|",
    ]
    delivered = {
        r["id"] for r in timeline if r["type"] == "delivery" and "not delivered" not in r["text"]
    }
    checkins = Counter(
        "need help" if "need help" in r["text"] else "safe"
        for r in timeline
        if r["type"] == "check_in"
    )
    for row in timeline:
        if row["id"] in delivered:
            continue  # counted below, not listed one by one
        said, trace = split_trace(str(row["text"]))
        text = say(row["type"], said, "en", row.get("who", "")) + (
            f" (rules: {trace})" if trace else ""
        )
        text = text.replace("|", "\\|")
        times = (event_times or {}).get(row.get("event_id") or 0)
        if times is not None:
            occurred, received = (datetime.fromisoformat(t) for t in times)
            if abs((received - occurred).total_seconds()) > CLOCK_GAP_S:
                text += f" (panel time {_local(times[0], tz)}, received {_local(times[1], tz)})"
        lines.append(f"| {_local(row['at'], tz)} | {row['type']} | {row['actor']} | {text} |")
    texted = [r for r in outbox if r["channel"] == "sms"]
    lines += [
        "",
        f"- **Residents texted:** {sum(r.get('recipients', 0) for r in texted)}, "
        f"{sum(r.get('delivered', 0) for r in texted)} delivered, "
        f"{sum(r.get('failed', 0) for r in texted)} failed; "
        f"{checkins.get('safe', 0)} answered safe, {checkins.get('need help', 0)} need help",
        f"- **Delivery receipts:** {len(delivered)} delivered",
        "",
        "## Messages",
        "",
        "| time | channel | to | recipients | delivered | failed | status | text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in outbox:
        text = json.loads(row["texts"]).get("zh", "").replace("|", "\\|")
        lines.append(
            f"| {_local(row['created_at'], tz)} | {row['channel']} | {row['target']} | "
            f"{row.get('recipients', '—')} | {row.get('delivered', '—')} | "
            f"{row.get('failed', '—')} | {row['status']} | {text} |"
        )
    return "\n".join(lines) + "\n"
