"""What the console's pages show, read from the store. Plain queries returning plain
rows; what a role may see is applied here (masks, names), never only in a template."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertd.console.roles import Role, may
from alertd.directory.phones import mask
from alertd.store.sqlite import dict_rows

#: timeline lines whose text names residents or staff (hidden from viewers)
NAMING = frozenset({"vulnerable_list", "help_request", "check_in", "reply", "acknowledged"})
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


def board(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Open and acknowledged incidents, most severe and unacknowledged first; then those
    resolved or closed while a detector is still in alarm, until it clears."""
    columns = (
        "id, status, severity, title, site, building, floor, unit, zone, opened_at, "
        "acknowledged_at, acknowledged_by, drill, playbook"
    )
    rows = dict_rows(
        conn,
        f"SELECT {columns}, 0 AS held FROM incidents WHERE status IN ('open', 'acknowledged') "
        f"UNION ALL SELECT {columns}, 1 FROM incidents WHERE active != '[]' "
        "AND status IN ('resolved', 'closed')",
    )
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


def roll_call(conn: sqlite3.Connection, incident_id: int, role: Role) -> RollCall:
    told = dict_rows(
        conn,
        "SELECT DISTINCT m.recipient AS phone, r.id AS resident_id, r.building, r.floor, "
        "r.unit, r.name, r.vulnerable FROM messages m LEFT JOIN residents r "
        "ON r.id = CAST(m.recipient_ref AS INTEGER) "
        "WHERE m.incident_id = ? AND m.recipient_kind = 'resident'",
        (incident_id,),
    )
    answers: dict[str, tuple[str, str]] = {}
    for actor, kind, text, at in conn.execute(
        "SELECT actor, type, text, at FROM timeline WHERE incident_id = ? AND type IN "
        "('check_in', 'reply', 'help_request') ORDER BY id",
        (incident_id,),
    ):
        if kind == "check_in":
            answers[actor] = ("need_help" if "need help" in text else "safe", at)
        elif actor not in answers or answers[actor][0] != "need_help":
            answers.setdefault(actor, ("reply", at))
    call = RollCall([], [], [])
    for r in sorted(told, key=lambda r: (r["building"] or "", r["floor"] or "", r["unit"] or "")):
        state, at = answers.get(r["phone"], ("", ""))
        r["answered_at"] = at
        r["phone"] = phone(r["phone"], role)
        if not may(role, "names"):
            r["name"] = ""
        {"need_help": call.need_help, "safe": call.safe}.get(state, call.silent).append(r)
    return call


def door_checks(
    conn: sqlite3.Connection, incident: dict[str, Any], role: Role
) -> list[dict[str, Any]]:
    """The vulnerable residents of the incident's building (its floor, when known), in
    door-check order, each with the visit recorded on the timeline, if any."""
    where, args = "building = ?", [incident["building"]]
    if incident["floor"]:
        where, args = where + " AND floor = ?", [*args, incident["floor"]]
    rows = dict_rows(
        conn,
        f"SELECT building, floor, unit, name, notes FROM residents WHERE moved_out IS NULL "
        f"AND vulnerable = 1 AND {where} ORDER BY CAST(floor AS INTEGER), floor, unit, id",
        args,
    )
    visits = {
        text.removeprefix("visited ").split(" ")[0]: (actor, at)
        for text, actor, at in conn.execute(
            "SELECT text, actor, at FROM timeline WHERE incident_id = ? AND type = 'visited'",
            (incident["id"],),
        )
    }
    for r in rows:
        r["visited"] = visits.get(r["unit"])
        _for_role(r, role, "door_notes")
    return rows


def incident(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    found = dict_rows(conn, "SELECT * FROM incidents WHERE id = ?", (incident_id,))
    return found[0] if found else None


def incident_site(conn: sqlite3.Connection, incident_id: int) -> str | None:
    row = conn.execute("SELECT site FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return str(row[0]) if row else None


def incident_version(conn: sqlite3.Connection, incident_id: int) -> tuple[Any, ...] | None:
    """What changes when anything a person did or said about the incident changes: its
    state and its newest timeline line other than a delivery receipt."""
    row = conn.execute(
        "SELECT status, acknowledged_at, resolved_at, (SELECT max(id) FROM timeline "
        "WHERE incident_id = ?1 AND type != 'delivery') FROM incidents WHERE id = ?1",
        (incident_id,),
    ).fetchone()
    return tuple(row) if row else None


def timeline(conn: sqlite3.Connection, incident_id: int, role: Role) -> list[dict[str, Any]]:
    """What happened, without the delivery receipts (one per resident texted: the
    deliveries table shows them)."""
    rows = dict_rows(
        conn,
        "SELECT id, at, type, actor, text, event_id FROM timeline WHERE incident_id = ? "
        "AND type != 'delivery' ORDER BY id",
        (incident_id,),
    )
    names = may(role, "names")
    for r in rows:
        if r["actor"].startswith("+"):  # a resident's or staff member's reply
            r["actor"] = phone(r["actor"], role)
        if not names:
            r["actor"] = r["actor"] if r["actor"] in ("alertd", "resident") else "—"
            if r["type"] in NAMING:
                r["text"] = "—"
    return rows


def deliveries(
    conn: sqlite3.Connection, incident_id: int, role: Role, limit: int | None = None
) -> list[dict[str, Any]]:
    """One row per recipient: channel, who, status, tries and why it failed; staff
    first, then failures (a 5,000-resident fan-out is shown `limit` rows at a time)."""
    rows = dict_rows(
        conn,
        "SELECT m.id, m.channel, m.recipient, m.recipient_kind, m.recipient_ref, m.status, "
        "m.attempts, m.reason, m.updated_at, m.language FROM messages m "
        "WHERE m.incident_id = ? ORDER BY m.recipient_kind != 'staff', "
        "m.status NOT IN ('failed', 'expired'), m.priority, m.id LIMIT ?",
        (incident_id, -1 if limit is None else limit),
    )
    for r in rows:
        if r["recipient"].startswith("+"):
            r["recipient"] = phone(r["recipient"], role)
        if r["recipient_kind"] != "staff" and not may(role, "names"):
            r["recipient_ref"] = ""
        if r["recipient_kind"] == "staff" and not may(role, "names"):
            r["recipient_ref"] = "staff"
    return rows


def devices(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Each device's last sighting, battery and active conditions (offline since)."""
    out: dict[str, dict[str, Any]] = {}
    for device, seen, values in conn.execute(
        'SELECT device_id, last_seen, "values" FROM device_seen'
    ):
        parsed = json.loads(values or "{}")
        out[device] = {"last_seen": seen, "battery": parsed.get("battery"), "active": {}}
    for device, kind, since in conn.execute(
        "SELECT device_id, kind, since FROM device_state WHERE active = 1"
    ):
        out.setdefault(device, {"last_seen": None, "battery": None, "active": {}})
        out[device]["active"][kind] = since
    return out


def residents(
    conn: sqlite3.Connection,
    role: Role,
    building: str = "",
    limit: int = 500,
    sites: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    where, args = ("AND building = ?", [building]) if building else ("", [])
    if sites is not None:
        where, args = (
            where + " AND site IN (SELECT value FROM json_each(?))",
            [
                *args,
                json.dumps(sites),
            ],
        )
    rows = dict_rows(
        conn,
        "SELECT id, site, building, floor, unit, name, phone, language, vulnerable, notes, "
        f"opted_out, undeliverable FROM residents WHERE moved_out IS NULL {where} "
        "ORDER BY site, building, CAST(floor AS INTEGER), unit, id LIMIT ?",
        (*args, limit),
    )
    for r in rows:
        r["phone"] = phone(r["phone"], role)
        _for_role(r, role)
    return rows


def full_phone(conn: sqlite3.Connection, resident_id: int) -> tuple[str, str, str] | None:
    """(phone, unit, site) of one resident, for an audited reveal."""
    row = conn.execute(
        "SELECT phone, building || '-' || unit, site FROM residents WHERE id = ?", (resident_id,)
    ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


def age_s(opened_at: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(opened_at)).total_seconds()
