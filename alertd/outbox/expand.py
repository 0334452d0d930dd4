"""Expansion: an outbox action ("sms building 3") becomes one message row per recipient,
in the recipient's language, vulnerable residents first, before anything is sent."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alertd.directory.staff import Staff
from alertd.store.sqlite import iso

ACTIVE = "moved_out IS NULL AND opted_out = 0 AND undeliverable IS NULL"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    kind: str  # resident | staff | system
    ref: str
    language: str
    priority: int  # 0 goes first


def unit_below(floor: str, unit: str) -> str | None:
    """1203 on floor 12 -> 1103; None when the numbering does not say."""
    if not floor.isdigit() or not unit.startswith(floor) or int(floor) <= 1:
        return None
    return f"{int(floor) - 1}{unit[len(floor) :]}"


def residents(
    conn: sqlite3.Connection, audience: str, incident: dict[str, Any], vulnerable_first: bool
) -> list[Recipient]:
    building, floor = incident["building"], incident["floor"]
    units = json.loads(incident.get("units") or "[]") or (
        [incident["unit"]] if incident["unit"] else []
    )
    if audience == "site":
        where, args = "", []
    elif audience == "building":
        where, args = "AND building = ?", [building]
    elif audience == "floor":
        where, args = "AND building = ? AND floor = ?", [building, floor]
    else:
        if audience == "unit_below":
            units = [b for u in units if (b := unit_below(_floor_of(u, floor), u))]
        if not units:
            return []
        where = f"AND building = ? AND unit IN ({','.join('?' * len(units))})"
        args = [building, *units]
    rows = conn.execute(
        f"SELECT id, phone, language, vulnerable FROM residents WHERE {ACTIVE} {where} ORDER BY id",
        args,
    ).fetchall()
    return [
        Recipient(
            phone, "resident", str(rid), language, 0 if vulnerable_first and vulnerable else 1
        )
        for rid, phone, language, vulnerable in rows
    ]


def _floor_of(unit: str, floor: str) -> str:
    """The floor a unit number is on: the incident's floor, or the unit's leading digits."""
    return floor or (unit[:-2] if unit.isdigit() and len(unit) > 2 else "")


def staff_for(
    staff: Staff | None, target: str, now: datetime, *, email: bool = False
) -> list[Recipient]:
    if staff is None:
        return []
    how, _, name = target.partition(":")
    if how == "person":
        names = [name] if name in staff.people else []
    elif how == "oncall":
        who = staff.on_call(name, now)
        names = [who] if who else staff.with_role(name)  # nobody on call: everyone with the role
    else:
        names = staff.with_role(name)
    return [
        Recipient(address, "staff", n, staff.people[n].language, 0)
        for n in names
        if (address := staff.people[n].email if email else staff.people[n].phone)
    ]


def expand_pending(
    conn: sqlite3.Connection, staff: Staff | None, now: datetime, expire: timedelta
) -> int:
    """Expand every pending outbox action, each in its own transaction; returns the number
    of message rows written."""
    written = 0
    actions = conn.execute(
        "SELECT o.id, o.incident_id, o.channel, o.target, o.texts, o.vulnerable_first, "
        "i.building, i.floor, i.unit, i.units FROM outbox o JOIN incidents i "
        "ON i.id = o.incident_id WHERE o.status = 'pending' ORDER BY o.id"
    ).fetchall()
    for (
        oid,
        incident_id,
        channel,
        target,
        texts_json,
        vfirst,
        building,
        floor,
        unit,
        units,
    ) in actions:
        texts = json.loads(texts_json)
        incident = {"building": building, "floor": floor, "unit": unit, "units": units}
        if channel == "sms":
            recipients = residents(conn, target, incident, bool(vfirst))
            send_as = "sms"
        elif channel in ("notify", "call"):
            recipients = staff_for(staff, target, now)
            send_as = "sms" if channel == "notify" else "call"
        elif channel == "email":
            recipients = staff_for(staff, target, now, email=True)
            send_as = "email"
        else:  # pa, webhook: one system recipient named by the target
            recipients = [Recipient(f"{channel}:{target}:{building}", "system", target, "zh", 0)]
            send_as = channel
        expires = iso(now + expire)
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO messages (outbox_id, incident_id, channel, recipient, "
                "recipient_kind, recipient_ref, language, body, priority, due_at, expires_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        oid,
                        incident_id,
                        send_as,
                        r.address,
                        r.kind,
                        r.ref,
                        r.language,
                        texts.get(r.language) or texts["zh"],
                        r.priority,
                        iso(now),
                        expires,
                        iso(now),
                    )
                    for r in recipients
                ],
            )
            conn.execute(
                "UPDATE outbox SET status = ? WHERE id = ?",
                ("expanded" if recipients else "no recipients", oid),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        written += len(recipients)
    return written
