"""Templates shared by the console and the CLI: the printable incident report
(`alertd report --format html` prints the page the console serves) and the preview of
a declared emergency."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import jinja2

from alertd.config import Config
from alertd.console import views
from alertd.console.i18n import refusal, words
from alertd.console.roles import Role
from alertd.directory.staff import Staff
from alertd.engine.wording import place, stamp
from alertd.events import Location
from alertd.incidents.report import drill_score
from alertd.incidents.sentences import audience, conditions, say
from alertd.playbooks.schema import Playbook
from alertd.store import Conn
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db

TEMPLATES = Path(__file__).parent / "templates"


def environment(tz: tzinfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["local"] = lambda text: stamp(datetime.fromisoformat(text), tz) if text else "—"
    env.filters["minutes"] = _minutes
    env.globals["say"] = say
    env.globals["audience"] = audience
    env.globals["conditions"] = conditions
    env.globals["refusal"] = refusal
    env.globals["drill_score"] = drill_score
    env.globals["place"] = lambda row, lang: (
        place(Location("", row["building"], row["floor"], row["unit"], row.get("zone", "")), lang)
        or "—"
    )
    return env


def _minutes(pair: tuple[str | None, str | None]) -> str:
    start, end = pair
    if not start or not end:
        return "—"
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return f"{delta.total_seconds() / 60:.1f} min"


def report_context(
    conn: Conn,
    config: Config,
    number: int,
    role: Role,
    books: Mapping[str, Playbook],
) -> dict[str, Any] | None:
    incident = incidents_db.find(conn, number)
    if incident is None:
        return None
    timeline = views.timeline(conn, number, role)
    outbox = messages_db.outbox_of(conn, number)
    for row in outbox:
        texts = json.loads(row["texts"])
        row["zh"], row["en"] = (views.scrub(texts.get(k, ""), role) for k in ("zh", "en"))
    counts = messages_db.progress(conn, number)
    by_channel = messages_db.by_channel(conn, number)
    roll = views.roll_call(conn, number, role)
    book = books.get(incident["playbook"])
    return {
        "incident": incident,
        "timeline": timeline,
        "delivered": incidents_db.timeline_count(conn, number, "delivery"),
        "outbox": outbox,
        "counts": counts,
        "by_channel": by_channel,
        "roll": roll,
        "ack_target_s": book.ack_target_s if book else None,
        "all_clear": next((r["at"] for r in timeline if r["type"] == "all_clear"), None),
    }


def report_html(
    conn: Conn,
    config: Config,
    number: int,
    lang: str,
    books: Mapping[str, Playbook],
) -> str | None:
    """The report as a whole page, as the console serves it (the supervisor's view)."""
    from alertd.sites import sites_of

    context = report_context(conn, config, number, Role.SUPERVISOR, books)
    if context is None:
        return None
    site = sites_of(config).get(context["incident"]["site"])
    centre = site.centre if site else config.console.centre or config.site.name
    return (
        environment(site.tz if site else config.site.tz)
        .get_template("report.html")
        .render(w=words(lang), lang=lang, centre=centre, **context)
    )


def declare_preview(
    conn: Conn,
    books: Mapping[str, Playbook],
    unit_format: str | None,
    kind: str,
    where: dict[str, str],
    people: Staff | None = None,
) -> dict[str, Any]:
    """What declaring would do: the playbook that runs, how many residents it texts at
    once (its first steps' audiences, as the outbox would expand them) and whom it calls,
    by name."""
    from alertd.outbox.expand import residents
    from alertd.playbooks.schema import Notify, Sms, WaitAck

    book = next((b for b in books.values() if kind in {k.value for k in b.match.kinds}), None)
    if book is None:
        return {"playbook": None, "residents": 0, "staff": []}
    incident = {"id": 0, **where, "units": json.dumps([where["unit"]] if where["unit"] else [])}
    texted: set[str] = set()
    staff: list[dict[str, Any]] = []
    for step in book.steps:
        if isinstance(step, WaitAck):
            break  # what follows waits for an acknowledgement
        if isinstance(step, Sms):
            found = residents(conn, step.sms, incident, False, unit_format)
            texted.update(r.address for r in found)
        elif isinstance(step, Notify):
            r = step.notify
            target = (
                f"oncall:{r.oncall}" if r.oncall else f"role:{r.role}" if r.role else
                f"person:{r.person}"
            )  # fmt: skip
            named = _people(people, r.oncall, r.role, r.person, where.get("site", ""))
            staff.append({"channel": step.channel, "target": target, "named": named})
    return {"playbook": book.name, "residents": len(texted), "staff": staff}


def _people(
    people: Staff | None, oncall: str | None, role: str | None, person: str | None, site: str
) -> list[str]:
    """Who a step reaches now, by name: the one on call (else everyone with the role, as
    the outbox falls back), everyone with a role, or the person named."""
    if person:
        return [person]
    if people is None:
        return []
    if oncall:
        now = people.on_call(oncall, datetime.now(UTC), site or None)
        return [now] if now else people.with_role(oncall, site or None)
    return people.with_role(role, site or None) if role else []
