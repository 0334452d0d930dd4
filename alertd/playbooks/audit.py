"""Playbooks against the staff file: every person a playbook notifies exists, every role
is held by somebody, and the roles that life-safety steps call on call are covered for
the coming week. What `alertd check` reports with file:line, so that a typo in either
file is found before a smoke alarm finds it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from alertd.directory.staff import Staff
from alertd.events import LIFE_SAFETY, Location, Severity
from alertd.playbooks.loader import Playbooks
from alertd.playbooks.schema import Escalation, Notify, Playbook, Recipient, WaitAck
from alertd.problems import Problem

if TYPE_CHECKING:
    from alertd.engine.state import Incident

STEP = timedelta(minutes=15)


def recipients(pb: Playbook) -> Iterator[tuple[tuple[str | int, ...], Recipient]]:
    """Each recipient with the key path of where it is written."""
    sequences: list[tuple[tuple[str | int, ...], list[object]]] = [
        (("steps",), list(pb.steps)),
        (("on_restore", "steps"), list(pb.on_restore.steps)),
        (("follow_up", "steps"), list(pb.follow_up.steps) if pb.follow_up else []),
        (("on_eta",), list(pb.on_eta)),
        (("on_join", "steps"), list(pb.on_join.steps) if pb.on_join else []),
        (("on_help",), list(pb.on_help)),
    ]
    for at, steps in sequences:
        for i, step in enumerate(steps):
            if isinstance(step, Notify):
                yield (*at, i, "notify"), step.notify
            elif isinstance(step, WaitAck):
                for j, escalation in enumerate(step.escalate):
                    assert isinstance(escalation, Escalation)
                    yield (*at, i, "escalate", j, "to"), escalation.to


def gaps(
    staff: Staff, role: str, start: datetime, days: int = 7, site: str | None = None
) -> list[tuple[datetime, datetime]]:
    """When nobody is on call for `role` (at `site`) in the coming `days` (15-minute
    resolution)."""
    out: list[tuple[datetime, datetime]] = []
    at, end = start, start + timedelta(days=days)
    while at < end:
        if staff.on_call(role, at, site) is None:
            if out and out[-1][1] == at:
                out[-1] = (out[-1][0], at + STEP)
            else:
                out.append((at, at + STEP))
        at += STEP
    return out


#: what `on_help` templates get besides an incident's values
SAMPLE_RESIDENT = {
    "resident_name": "Zhang Xiulan",
    "resident_note": "lives alone",
    "resident_phone": "+8613800000805",
    "resident_text": "2",
}


def sample(now: datetime) -> Incident:
    """An incident with every value a template can use."""
    from alertd.engine.state import Incident

    return Incident(
        12,
        "sample",
        "building:HV/3",
        "open",
        Severity.CRITICAL,
        Location("HV", "3"),
        "火警 3号楼 12层 1203 厨房 / Fire alarm, Bldg 3, 12F, 1203 kitchen",
        now,
        now,
        origin=Location("HV", "3", "12", "1203", "kitchen"),
        expected_restore_at=now,
    )


def templates(books: Playbooks, now: datetime) -> list[Problem]:
    """Every template rendered with a sample incident: a misspelt variable (`{{ locaton }}`)
    or an expression that fails is found here, not in a text at 3 a.m. (the daemon still
    sends such a text, with the raw wording, rather than nothing)."""
    from zoneinfo import ZoneInfo

    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    from alertd.engine.templates import context

    env = SandboxedEnvironment(undefined=StrictUndefined)
    values = context(sample(now), now, ZoneInfo("Asia/Shanghai"), extra=SAMPLE_RESIDENT)
    problems = []
    for name, pb in books.enabled.items():
        lines = books.lines[name]
        for key, template in pb.templates.items():
            for language in ("zh", "en"):
                try:
                    env.from_string(getattr(template, language)).render(values[language])
                except TemplateError as exc:
                    problems.append(
                        Problem(
                            lines.where(("templates", key, language)),
                            f"does not render with a sample incident: {exc}",
                        )
                    )
    return problems


def audit(
    books: Playbooks,
    staff: Staff,
    staff_file: str,
    now: datetime,
    site: str | None = None,
    tz: tzinfo | None = None,
) -> list[Problem]:
    """`site`: the playbooks as they serve that site, against its staff (its team and
    the company's people who cover it), gaps in its zone `tz`."""
    problems = []
    zone = tz or staff.tz
    there = f" at {site}" if site else ""
    checked_gaps: set[str] = set()
    for name, pb in books.enabled.items():
        if site is not None and pb.match.sites and site not in pb.match.sites:
            continue
        lines = books.lines[name]
        life_safety = any(kind in LIFE_SAFETY for kind in pb.match.kinds)
        for at, who in recipients(pb):
            where = lines.where(at)
            if who.person is not None and not (
                who.person in staff.people and staff.covers(who.person, site)
            ):
                problems.append(
                    Problem(where, f"notifies {who.person!r}, who is not in {staff_file}{there}")
                )
            role = who.role or who.oncall
            if role is not None and not staff.with_role(role, site):
                problems.append(
                    Problem(
                        where, f"notifies role {role!r}, which nobody in {staff_file}{there} holds"
                    )
                )
            elif who.oncall is not None and life_safety and who.oncall not in checked_gaps:
                checked_gaps.add(who.oncall)
                missing = gaps(staff, who.oncall, now, site=site)
                if missing:
                    shown = "; ".join(
                        f"{a.astimezone(zone):%a %m-%d %H:%M}-{b.astimezone(zone):%H:%M}"
                        for a, b in missing[:3]
                    )
                    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                    problems.append(
                        Problem(
                            where,
                            f"nobody is on call for {who.oncall!r}{there} in the next 7 days at "
                            f"{shown}{more} (a life-safety step: add shifts or overrides "
                            f"in {staff_file})",
                        )
                    )
    return problems
