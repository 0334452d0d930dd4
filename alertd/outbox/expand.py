"""Expansion: an outbox action ("sms building 3") becomes one message row per recipient,
in the recipient's language, vulnerable residents first, before anything is sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alertd.directory.staff import Staff
from alertd.directory.units import below
from alertd.events import Severity
from alertd.links import Links
from alertd.store import Conn
from alertd.store import directory as directory_db
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db
from alertd.store.sql import iso

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Local:
    """What expansion needs of an incident's site."""

    unit_format: str | None = None
    #: who is told when a life-safety staff step finds nobody
    fallback_role: str = "front_desk"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    kind: str  # resident | staff | system
    ref: str
    language: str
    priority: int  # 0 goes first


def _flats_below(
    conn: Conn,
    site: str,
    building: str,
    units: list[str],
    floor: str,
    unit_format: str | None,
) -> list[str]:
    """The flat under each unit: of the candidate numbers, those the directory knows
    (else the most likely one)."""
    out: list[str] = []
    for unit in units:
        candidates = below(unit, floor, unit_format)
        if not candidates:
            continue
        known = directory_db.known_units(conn, site, building, candidates)
        out += [c for c in candidates if c in known] or candidates[:1]
    return out


def residents(
    conn: Conn,
    audience: str,
    incident: dict[str, Any],
    vulnerable_first: bool,
    unit_format: str | None = None,
) -> list[Recipient]:
    """The residents of the incident's site (never of another) that `audience` means."""
    site, building, floor = incident["site"], incident["building"], incident["floor"]
    units = json.loads(incident.get("units") or "[]") or (
        [incident["unit"]] if incident["unit"] else []
    )
    if audience == "site":
        rows = directory_db.textable(conn, site)
    elif audience == "building":
        rows = directory_db.textable(conn, site, building=building)
    elif audience == "floor":
        rows = directory_db.textable(conn, site, building=building, floor=floor)
    elif audience == "notified":
        rows = directory_db.textable(conn, site, told_about=incident["id"])
    else:
        if audience == "unit_below":
            units = _flats_below(conn, site, building, units, floor, unit_format)
        if not units:
            return []
        rows = directory_db.textable(conn, site, building=building, units=units)
    return [
        Recipient(
            phone, "resident", str(rid), language, 0 if vulnerable_first and vulnerable else 1
        )
        for rid, phone, language, vulnerable in rows
    ]


#: a staff text with the door-check list stays within what one (concatenated) SMS carries
STAFF_BODY_MAX = 600
MORE = {
    "zh": "……另有 {n} 户，完整名单：alertd incidents show {id}",
    "en": "... and {n} more: alertd incidents show {id}",
}
#: the same where the text ends with the link to the phone page, which lists them all
MORE_LINKED = {
    "zh": "……另有 {n} 户，完整名单见下方链接",
    "en": "... and {n} more: the whole list at the link below",
}
NONE = {"zh": "（本楼没有登记的独居、老人或行动不便住户）", "en": " (none registered here)"}


def vulnerable_residents(conn: Conn, incident: dict[str, Any]) -> list[str]:
    """`1203 张秀兰 (独居)` for each vulnerable resident of the incident's building
    (its floor, when the incident is as precise as that), in door-check order."""
    rows = directory_db.vulnerable(conn, incident["site"], incident["building"], incident["floor"])
    return [
        f"{r['unit']} {r['name']}".strip() + (f" ({r['notes']})" if r["notes"] else "")
        for r in rows
    ]


def with_list(text: str, entries: list[str], language: str, incident_id: int, link: int = 0) -> str:
    """The text followed by as many entries as fit, then "and N more". `link`: the
    characters kept for the phone page's link that follows (0: no link)."""
    if not entries:
        return text + NONE[language]
    sep = "；" if language == "zh" else "; "
    words = (MORE_LINKED if link else MORE)[language]
    body = text + " "
    for shown, entry in enumerate(entries):
        left = len(entries) - shown
        more = words.format(n=left - 1, id=incident_id)
        last = left == 1
        if len(body) + len(entry) + (0 if last else len(sep) + len(more)) + link > STAFF_BODY_MAX:
            return body.rstrip(sep) + words.format(n=left, id=incident_id)
        body += entry + ("" if last else sep)
    return body


def staff_for(
    staff: Staff | None, target: str, now: datetime, site: str, *, email: bool = False
) -> list[Recipient]:
    """The staff of `site` (its team and the company's people who cover it)."""
    if staff is None:
        return []
    how, _, name = target.partition(":")
    if how == "person":
        names = [name] if name in staff.people and staff.covers(name, site) else []
    elif how == "oncall":
        who = staff.on_call(name, now, site)
        # nobody on call: everyone with the role
        names = [who] if who else staff.with_role(name, site)
    else:
        names = staff.with_role(name, site)
    return [
        Recipient(address, "staff", n, staff.people[n].language, 0)
        for n in names
        if (address := staff.people[n].email if email else staff.people[n].phone)
    ]


def priority(recipient: Recipient, severity: Severity) -> int:
    """Lower goes first, within a lane: staff of a life-safety incident (fire and gas
    before leak and power), then by the incident's severity, vulnerable residents before
    the others. Claims age waiting messages, so none starves (`delivery.starve_s`)."""
    rank = Severity.CRITICAL - severity
    if recipient.kind != "resident" and severity >= Severity.MAJOR:
        return rank
    return 10 + 2 * rank + recipient.priority


def _fallback(
    conn: Conn,
    staff: Staff | None,
    target: str,
    channel: str,
    incident_id: int,
    now: datetime,
    site: str,
    role: str,
) -> list[Recipient]:
    """Nobody for a staff step of a life-safety incident: never silent. The site's duty
    desk (`delivery.fallback_role`) is told instead, or all the site's staff when nobody
    holds that role either; logged at ERROR and put on the timeline."""
    email = channel == "email"
    recipients = staff_for(staff, f"role:{role}", now, site, email=email)
    instead = f"role {role}"
    if not recipients and staff is not None:
        recipients = [
            Recipient(address, "staff", name, person.language, 0)
            for name, person in staff.people.items()
            if staff.covers(name, site) and (address := person.email if email else person.phone)
        ]
        instead = "everyone in the staff file"
    said = (
        f"no recipients for {channel} to {target}: sent to {instead}"
        if recipients
        else f"NOBODY TO TELL: no recipients for {channel} to {target} and no staff to fall "
        "back on (is the staff file loaded?)"
    )
    log.error("incident %d: %s", incident_id, said)
    incidents_db.note(conn, incident_id, now, "no_recipients", "alertd", said)
    return recipients


def expand(
    conn: Conn,
    staff: Staff | None,
    now: datetime,
    expire: timedelta,
    sites: Mapping[str, Local] | None = None,
    default: Local = Local(),
    links: Links | None = None,
) -> set[str]:
    """Expand every pending outbox action, inside the caller's transaction (the commit that
    decides an event also expands and claims: a fire's staff alert waits for one fsync,
    not one per step). Returns the channels that got messages."""
    channels: set[str] = set()
    at = iso(now)
    expires = iso(now + expire)
    messages: list[dict[str, Any]] = []
    expanded: list[int] = []
    unreached: list[int] = []
    actions = messages_db.pending_actions(conn)
    for (
        oid,
        incident_id,
        channel,
        target,
        texts_json,
        vfirst,
        vlist,
        site,
        building,
        floor,
        unit,
        units,
        severity,
    ) in actions:
        texts = json.loads(texts_json)
        level = Severity[str(severity).upper()]
        local = (sites or {}).get(site) or default
        incident = {
            "id": incident_id,
            "site": site,
            "building": building,
            "floor": floor,
            "unit": unit,
            "units": units,
        }
        listed = vulnerable_residents(conn, incident) if vlist else None
        if listed is not None:
            # room for the link, with a staff name of up to 12 Chinese characters in it
            link = len(links.url(incident_id, "名" * 12, now)) + 1 if links is not None else 0
            texts = {
                lang: with_list(t, listed, lang, incident_id, link) for lang, t in texts.items()
            }
        if channel == "sms":
            recipients = residents(conn, target, incident, bool(vfirst), local.unit_format)
            send_as = "sms"
        elif channel in ("notify", "call", "email"):
            recipients = staff_for(staff, target, now, site, email=channel == "email")
            send_as = {"notify": "sms", "call": "call", "email": "email"}[channel]
            if not recipients and level >= Severity.MAJOR:
                recipients = _fallback(
                    conn, staff, target, channel, incident_id, now, site, local.fallback_role
                )
        else:  # pa, webhook: one system recipient named by the target
            recipients = [Recipient(f"{channel}:{target}:{building}", "system", target, "zh", 0)]
            send_as = channel
        messages += [
            {
                "outbox_id": oid,
                "incident_id": incident_id,
                "channel": send_as,
                "recipient": r.address,
                "recipient_kind": r.kind,
                "recipient_ref": r.ref,
                "language": r.language,
                "body": (texts.get(r.language) or texts["zh"])
                + (
                    f"\n{links.url(incident_id, r.ref, now)}"
                    if links is not None and send_as == "sms" and r.kind == "staff"
                    else ""
                ),
                "priority": priority(r, level),
                "due_at": at,
                "expires_at": expires,
                "updated_at": at,
                "site": site,
            }
            for r in recipients
        ]
        (expanded if recipients else unreached).append(oid)
        if listed is not None:
            incidents_db.note(
                conn,
                incident_id,
                now,
                "vulnerable_list",
                "alertd",
                f"door-check list for {target} ({len(listed)}): "
                + ("; ".join(listed) or "none registered"),
            )
        if recipients:
            channels.add(send_as)
    messages_db.add_messages(conn, messages)  # all the actions' at once
    messages_db.set_action_status(conn, expanded, "expanded")
    messages_db.set_action_status(conn, unreached, "no recipients")
    return channels
