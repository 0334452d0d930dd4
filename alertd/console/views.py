"""What the console's pages show, read from the store. Plain queries returning plain
rows; what a role may see is applied here (masks, names), never only in a template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertd.console.roles import Role, may
from alertd.directory.phones import mask
from alertd.incidents.sentences import name_the_reached, split_trace
from alertd.store import Conn
from alertd.store import devices as devices_db
from alertd.store import directory as directory_db
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db

#: timeline lines whose text names residents or staff (hidden from viewers)
NAMING = frozenset({"vulnerable_list", "help_request", "check_in", "reply", "acknowledged"})
#: timeline lines that are a resident's answer (the roll call)
REPLIES = ("check_in", "reply", "help_request")
SEVERITY_ORDER = {"critical": 4, "major": 3, "minor": 2, "warning": 1, "info": 0}


def phone(number: str, role: Role) -> str:
    """In full, masked, or (for a role that sees no names: viewers) not at all."""
    if not may(role, "names"):
        return "—"
    return number if may(role, "phones") else mask(number)


_NUMBER = re.compile(r"\+\d{8,15}")


def scrub(text: str, role: Role) -> str:
    """A message as sent (it may name a resident and give their number), as the role may
    read it: numbers masked, or nothing at all for a role that sees no names."""
    if not may(role, "names"):
        return "—"
    if may(role, "phones"):
        return text
    return _NUMBER.sub(lambda m: mask(m.group(0)), text)


def _for_role(resident: dict[str, Any], role: Role, notes: str = "notes") -> None:
    """A resident's row as the role may see it: no name for viewers, the vulnerable
    notes where the role has `notes` (the directory: supervisors; a door-check list:
    duty staff too)."""
    if not may(role, "names"):
        resident["name"] = ""
    if not may(role, notes):
        resident["notes"] = ""


def board(conn: Conn) -> list[dict[str, Any]]:
    """Open and acknowledged incidents, most severe and unacknowledged first; then those
    resolved or closed while a detector is still in alarm, until it clears."""
    rows = incidents_db.on_board(conn)
    rows.sort(
        key=lambda r: (
            r["held"],
            -SEVERITY_ORDER.get(r["severity"], 0),
            r["status"] != "open",
            r["id"],
        )
    )
    for r in rows:
        r["alarm"] = r["severity"] == "critical" and r["status"] == "open"
    return rows


@dataclass(frozen=True, slots=True)
class RollCall:
    """The residents texted about an incident and what they answered: help first."""

    need_help: list[dict[str, Any]]
    safe: list[dict[str, Any]]
    silent: list[dict[str, Any]]


def roll_call(conn: Conn, incident_id: int, role: Role) -> RollCall:
    told = messages_db.residents_told(conn, incident_id)
    answers: dict[str, tuple[str, str]] = {}
    for line in incidents_db.timeline(conn, incident_id, types=REPLIES):
        actor, kind, text, at = line["actor"], line["type"], line["text"], line["at"]
        if kind == "check_in":
            answers[actor] = ("need_help" if "need help" in text else "safe", at)
        elif actor not in answers or answers[actor][0] != "need_help":
            answers.setdefault(actor, ("reply", at))
    call = RollCall([], [], [])
    for r in sorted(told, key=lambda r: (r["building"] or "", r["floor"] or "", r["unit"] or "")):
        state, at = answers.get(r["phone"], ("", ""))
        r["answered_at"] = at
        # who asked for help was told staff would call them: the phone page dials them
        # (signed in as the person the incident's link was sent to; never with the link
        # alone, which can be forwarded)
        r["dial"] = r["phone"] if state == "need_help" and may(role, "names") else ""
        r["phone"] = phone(r["phone"], role)
        if not may(role, "names"):
            r["name"] = ""
        {"need_help": call.need_help, "safe": call.safe}.get(state, call.silent).append(r)
    return call


def door_checks(conn: Conn, incident: dict[str, Any], role: Role) -> list[dict[str, Any]]:
    """The vulnerable residents of the incident's building (its floor, when known), in
    door-check order, each with the visit recorded on the timeline, if any."""
    rows = directory_db.vulnerable(conn, incident["site"], incident["building"], incident["floor"])
    visits = {
        line["text"].removeprefix("visited ").split(" ")[0]: (line["actor"], line["at"])
        for line in incidents_db.timeline(conn, incident["id"], types=("visited",))
    }
    for r in rows:
        r["visited"] = visits.get(r["unit"])
        _for_role(r, role, "door_notes")
    return rows


def timeline(conn: Conn, incident_id: int, role: Role) -> list[dict[str, Any]]:
    """What happened, without the delivery receipts (one per resident texted: the
    deliveries table shows them)."""
    rows = incidents_db.timeline(conn, incident_id, receipts=False)
    names = may(role, "names")
    name_the_reached(rows, messages_db.staff_reached(conn, incident_id) if names else [])
    for r in rows:
        # the engine's matcher trace ("[fire-alarm: matched; water-leak: kind ...]"): for
        # supervisors and admins behind "details", never the line staff read
        text, trace = split_trace(r["text"])
        r["text"], r["trace"] = text, trace if may(role, "trace") else ""
        if r["actor"].startswith("+"):  # a resident's or staff member's reply
            r["actor"] = phone(r["actor"], role)
        if not names:
            r["actor"] = r["actor"] if r["actor"] in ("alertd", "resident") else "—"
            if r["type"] in NAMING:
                r["text"] = "—"
    return rows


def deliveries(
    conn: Conn, incident_id: int, role: Role, limit: int | None = None
) -> list[dict[str, Any]]:
    """One row per recipient: channel, who, status, tries and why it failed; staff
    first, then failures (a 5,000-resident fan-out is shown `limit` rows at a time)."""
    rows = messages_db.recipients(conn, incident_id, limit)
    for r in rows:
        if r["recipient"].startswith("+"):
            r["recipient"] = phone(r["recipient"], role)
        if r["recipient_kind"] != "staff" and not may(role, "names"):
            r["recipient_ref"] = ""
        if r["recipient_kind"] == "staff" and not may(role, "names"):
            r["recipient_ref"] = "staff"
    return rows


def devices(conn: Conn) -> dict[str, dict[str, Any]]:
    """Each device's last sighting, battery and active conditions (offline since)."""
    out: dict[str, dict[str, Any]] = {}
    for device, seen, values in devices_db.seen(conn):
        parsed = json.loads(values or "{}")
        out[device] = {"last_seen": seen, "battery": parsed.get("battery"), "active": {}}
    for device, kind, since in devices_db.active(conn):
        out.setdefault(device, {"last_seen": None, "battery": None, "active": {}})
        out[device]["active"][kind] = since
    return out


def residents(
    conn: Conn,
    role: Role,
    building: str = "",
    limit: int = 500,
    sites: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    rows = directory_db.listing(conn, sites=sites, building=building, limit=limit)
    for r in rows:
        r["phone"] = phone(r["phone"], role)
        _for_role(r, role)
    return rows


def full_phone(conn: Conn, resident_id: int) -> tuple[str, str, str] | None:
    """(phone, unit, site) of one resident, for an audited reveal."""
    return directory_db.phone_of(conn, resident_id)


def age_s(opened_at: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(opened_at)).total_seconds()
