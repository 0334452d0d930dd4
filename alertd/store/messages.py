"""Message rows through their life: pending -> sending -> sent (-> delivered | failed by
receipt), or retried, expired, or failed. A row is marked `sending` in its own commit
before the request goes out, so after a crash exactly those rows are the ones that may
have been sent twice; they are counted."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alertd.directory.phones import mask
from alertd.outbox.sink import Message, Result
from alertd.store import directory as directory_db
from alertd.store import incidents as incidents_db
from alertd.store.sql import (
    VALUES_ROWS,
    among,
    dict_rows,
    insert,
    iso,
    no_limit,
    parse_iso,
    postgres,
    transaction,
    values,
)

INFLIGHT = "in flight when alertd stopped: sent again, may be a duplicate"


@dataclass(frozen=True, slots=True)
class Outcome:
    message: Message
    result: Result
    retry_at: datetime | None = None
    #: the staff SMS failed: try a voice call to the same person
    fallback_call: bool = False


def recover_inflight(conn: sqlite3.Connection, now: datetime) -> int:
    """Messages a stopped alertd (or a dead owner) was sending go out again; each incident
    says on its timeline how many, since their recipients may get them twice."""
    with transaction(conn):
        again = conn.execute(
            "UPDATE messages SET status = 'pending', reason = ? WHERE status = 'sending' "
            "RETURNING incident_id",
            (INFLIGHT,),
        ).fetchall()
        for incident, n in sorted(Counter(row[0] for row in again).items()):
            text = (
                f"{n} message(s) were being sent when alertd stopped: sent again, some may "
                "arrive twice"
            )
            incidents_db.note(conn, incident, now, "in_flight", "alertd", text)
    return len(again)


#: the channels whose provider reports on a message afterwards (Twilio's status callbacks):
#: only their sends can have a receipt that came first
RECEIPTED = frozenset({"sms", "call"})
#: staff alerts of life-safety incidents (see alertd/outbox/expand.py `priority`)
URGENT_PRIORITY = 1


def expire(conn: sqlite3.Connection, now: datetime) -> int:
    """Pending messages past their expiry become `expired` (they are never taken: see
    `take_due`). It reads every pending row, so the dispatcher runs it now and then, not
    on every claim."""
    return conn.execute(
        "UPDATE messages SET status = 'expired', reason = 'expired before it could "
        "be sent', updated_at = ? WHERE status = 'pending' AND expires_at < ?",
        (iso(now), iso(now)),
    ).rowcount


#: a lane's due, unexpired messages along one of its indexes (PostgreSQL's planner
#: picks its own)
_CANDIDATES = (
    "SELECT id, channel, recipient, body, language, expires_at, attempts, incident_id, "
    "priority, due_at, site FROM messages {} WHERE status = 'pending' AND channel = ? "
    "AND due_at <= ? AND (expires_at IS NULL OR expires_at >= ?)"
)


def take_due(
    conn: sqlite3.Connection,
    now: datetime,
    wants: dict[str, tuple[int, int]],
    starve_s: float,
    values: bool = False,
) -> list[Message]:
    """Inside the caller's transaction: take due, unexpired messages of each lane, most
    urgent first, and mark them sending: `wants[channel]` is (any, staff alerts of
    life-safety incidents beyond that). A message gains one priority level for every
    `starve_s` it has waited, so no priority starves for long. Each query reads about as
    many rows as it returns, however long the backlog: the most urgent along the lane's
    priority index, the longest waiting along its age index."""
    if not wants:
        return []
    at = iso(now)
    found: dict[str, dict[int, tuple[Any, ...]]] = {channel: {} for channel in wants}
    pg = postgres(conn)
    for row in conn.execute(  # every lane's candidates in one statement (see `values`)
        " UNION ALL ".join(
            f"SELECT * FROM ({_CANDIDATES.format('' if pg else 'INDEXED BY ' + index)} "
            f"ORDER BY {order} LIMIT ?) AS c"
            for _ in wants
            for index, order in (
                ("messages_lane", "priority, id"),
                ("messages_lane_age", "due_at, id"),
            )
        ),
        [
            arg
            for channel, (n, extra) in wants.items()
            for limit in (n + extra, n)
            for arg in (channel, at, at, limit)
        ],
    ):
        found[row[1]][row[0]] = row
    rows: list[tuple[Any, ...]] = []
    for channel, (n, extra) in wants.items():
        candidates = found[channel].values()
        ranked = sorted(
            candidates,
            key=lambda r: (r[8] - (now - parse_iso(r[9])).total_seconds() / starve_s, r[0]),
        )
        taken = ranked[:n]
        taken += [r for r in ranked[n:] if r[8] <= URGENT_PRIORITY][:extra]
        rows += taken
    if rows:
        taking, args = among(conn, "id", [r[0] for r in rows])
        conn.execute(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = ? "
            f"WHERE {taking}",
            [at, *args],
        )
    texts = _template_values(conn, [r[0] for r in rows if r[1] == "sms"]) if values else {}
    return [
        Message(
            mid,
            channel,
            recipient,
            body,
            language,
            max(1, int((parse_iso(expires) - now).total_seconds())) if expires else None,
            attempts + 1,
            incident,
            rank,
            site,
            *_in_language(texts.get(mid), language),
        )
        for mid, channel, recipient, body, language, expires, attempts, incident, rank, _, site in (
            rows
        )
    ]


def _template_values(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[Any, ...]]:
    """The template name, values and drill flag of each message's action."""
    if not ids:
        return {}
    taking, args = among(conn, "m.id", ids)
    return {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT m.id, o.template, o.params, o.drill FROM messages AS m "
            f"JOIN outbox AS o ON o.id = m.outbox_id WHERE {taking}",
            args,
        )
    }


def _in_language(
    found: tuple[Any, ...] | None, language: str
) -> tuple[str, dict[str, str] | None, bool]:
    if not found or not found[0]:
        return "", None, bool(found and found[2])
    template, params, drill = found
    per_language = json.loads(params) if params else {}
    return template, per_language.get(language) or per_language.get("zh"), bool(drill)


def write_outcomes(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    now: datetime,
    lanes: Sequence[tuple[str, str, str]] = (),
    receipts: list[tuple[str, str]] | None = None,
) -> set[str]:
    """Outcomes of sends, and lanes that changed state (channel, state, reason), inside the
    caller's transaction. Returns the channels that have a message pending again (to
    retry, or a call instead of a failed SMS). `receipts` gets (channel, final status)
    of receipts that came before their sends and are applied now."""
    back: set[str] = set()
    for channel, state, reason in lanes:
        set_lane(conn, channel, state, reason, now)
    sent = [o for o in outcomes if o.result.outcome == "sent"]
    _mark_sent(
        conn,
        [
            {"id": o.message.id, "provider_id": o.result.provider_id, "reason": o.result.reason}
            for o in sent
        ],
        now,
    )
    for o in sent:
        if o.result.moved and o.message.incident is not None:
            incidents_db.note(
                conn,
                o.message.incident,
                now,
                "delivery",
                "alertd",
                f"message {o.message.id} to {mask(o.message.recipient)}: {o.result.reason}",
            )
    _early(
        conn,
        [
            o.result.provider_id
            for o in sent
            if o.result.provider_id and o.message.channel in RECEIPTED
        ],
        now,
        receipts if receipts is not None else [],
    )
    for o in outcomes:
        r = o.result
        if r.outcome == "sent":
            continue
        if r.outcome in ("throttled", "unavailable"):
            back.add(o.message.channel)
            # the provider's state, not this message's: it waits, the try not counted
            conn.execute(
                "UPDATE messages SET status = 'pending', attempts = attempts - 1, "
                "due_at = ?, reason = ?, updated_at = ? WHERE id = ?",
                (iso(o.retry_at or now), r.reason, iso(now), o.message.id),
            )
        elif r.outcome == "retryable" and o.retry_at is not None:
            back.add(o.message.channel)
            conn.execute(
                "UPDATE messages SET status = 'pending', due_at = ?, reason = ?, "
                "updated_at = ? WHERE id = ?",
                (iso(o.retry_at), r.reason, iso(now), o.message.id),
            )
        else:
            reason = r.reason if r.outcome == "permanent" else f"gave up: {r.reason}"
            conn.execute(
                "UPDATE messages SET status = 'failed', reason = ?, updated_at = ? WHERE id = ?",
                (reason, iso(now), o.message.id),
            )
            if r.flag:
                directory_db.flag_unreachable(conn, o.message.recipient, r.flag)
            if o.fallback_call:
                back.add("call")
                conn.execute(
                    "INSERT INTO messages (outbox_id, incident_id, channel, "
                    "recipient, recipient_kind, recipient_ref, language, body, priority, "
                    "due_at, expires_at, updated_at, site) SELECT outbox_id, incident_id, "
                    "'call', recipient, recipient_kind, recipient_ref, language, body, 0, ?, "
                    "expires_at, ?, site FROM messages WHERE id = ? ON CONFLICT DO NOTHING",
                    (iso(now), iso(now), o.message.id),
                )
    return back


def _mark_sent(conn: sqlite3.Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    """Sent messages with their provider ids, as few statements as can be."""
    if postgres(conn):
        for start in range(0, len(rows), VALUES_ROWS):
            chunk = rows[start : start + VALUES_ROWS]
            conn.execute(
                "UPDATE messages SET status = 'sent', provider_id = r.provider_id, "
                "reason = r.reason, updated_at = ? "
                f"FROM (VALUES {','.join(['(?, ?, ?)'] * len(chunk))}) "
                "AS r(id, provider_id, reason) WHERE messages.id = r.id",
                [iso(now), *(v for row in chunk for v in row.values())],
            )
        return
    for columns, select, args in values(rows):
        conn.execute(
            f"WITH r({columns}) AS ({select}) UPDATE messages SET status = 'sent', "
            "provider_id = r.provider_id, reason = r.reason, updated_at = ? "
            "FROM r WHERE messages.id = r.id",
            [*args, iso(now)],
        )


def due_count(conn: sqlite3.Connection, now: datetime, channels: Sequence[str]) -> int:
    if not channels:
        return 0
    lanes = ",".join("?" * len(channels))
    return int(
        conn.execute(
            "SELECT count(*) FROM messages WHERE status = 'pending' AND due_at <= ? AND "
            f"(expires_at IS NULL OR expires_at >= ?) AND channel IN ({lanes})",
            (iso(now), iso(now), *channels),
        ).fetchone()[0]
    )


def set_lane(
    conn: sqlite3.Connection, channel: str, state: str, reason: str, now: datetime
) -> None:
    """A lane's state, for `alertd outbox` and health (another process reads it)."""
    conn.execute(
        "INSERT INTO delivery_lanes (channel, state, reason, since) VALUES (?,?,?,?) "
        "ON CONFLICT (channel) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
        "since = excluded.since",
        (channel, state, reason, iso(now)),
    )


def lanes(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    return [
        (str(c), str(st), str(r), str(at))
        for c, st, r, at in conn.execute(
            "SELECT channel, state, reason, since FROM delivery_lanes ORDER BY channel"
        )
    ]


def progress(conn: sqlite3.Connection, incident_id: int) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT status, count(*) FROM messages WHERE incident_id = ? GROUP BY status",
            (incident_id,),
        ).fetchall()
    )


DELIVERY_STATUSES = {
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "receiving",
    "received",
    "read",
    "canceled",
    "accepted",
    "scheduled",
}


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt, whichever provider sent it: the provider's integration says
    what it means (integrations/*/receipts)."""

    provider_id: str
    #: "delivered" and "failed" are final; anything else (queued, sent) is not
    status: str
    #: the provider's words, for the timeline ("Twilio undelivered (error 30003)")
    reason: str = ""
    #: why the number itself cannot be reached, when it cannot: kept in the directory
    unreachable: str = ""
    #: who sent it (the timeline's actor)
    provider: str = "twilio"


def apply_receipts(
    conn: sqlite3.Connection, receipts: Sequence[Receipt], now: datetime
) -> list[tuple[str, str]]:
    """Receipts in one commit (they arrive by the thousand during a fan-out and must not
    take the writer from urgent work). A receipt for a message whose send is not recorded
    yet is kept and applied when it is. Returns (channel, final status or "") of each
    that matched a message."""
    with transaction(conn):
        return [found for r in receipts if (found := _apply(conn, r, now)) is not None]


def _apply(conn: sqlite3.Connection, receipt: Receipt, now: datetime) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT id, incident_id, recipient, channel, status FROM messages WHERE provider_id = ?",
        (receipt.provider_id,),
    ).fetchone()
    if row is None:  # early: the send's own record is still on its way
        conn.execute(
            "INSERT INTO early_receipts (provider_id, status, reason, unreachable, provider, at) "
            "VALUES (?,?,?,?,?,?)",
            (
                receipt.provider_id,
                receipt.status,
                receipt.reason,
                receipt.unreachable,
                receipt.provider,
                iso(now),
            ),
        )
        return None
    mid, incident, recipient, channel, was = row
    final = receipt.status if receipt.status in ("delivered", "failed") else None
    if final is None or was == final:  # not final, or the same receipt again
        return channel, ""
    reason = receipt.reason or f"{receipt.provider} {receipt.status}"
    conn.execute(
        "UPDATE messages SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
        (final, reason, iso(now), mid),
    )
    text = (
        f"message {mid} delivered"
        if final == "delivered"
        else f"message {mid} not delivered: {reason}"
    )
    incidents_db.note(conn, incident, now, "delivery", receipt.provider, text)
    if final == "failed" and receipt.unreachable:
        directory_db.flag_unreachable(conn, recipient, receipt.unreachable)
    return channel, final


def _early(
    conn: sqlite3.Connection, provider_ids: list[str], now: datetime, out: list[tuple[str, str]]
) -> None:
    """Receipts that came before their sends were recorded, applied now (into `out`)."""
    if not provider_ids:
        return
    early, args = among(conn, "provider_id", provider_ids)
    arrival = "at" if postgres(conn) else "rowid"  # in the order they came
    rows = conn.execute(
        f"DELETE FROM early_receipts WHERE {early} "
        f"RETURNING {arrival}, provider_id, status, reason, unreachable, provider",
        args,
    ).fetchall()
    for _, *receipt in sorted(rows):
        found = _apply(conn, Receipt(*receipt), now)
        if found is not None and found[1]:
            out.append(found)


def latest_incident_for(conn: sqlite3.Connection, phone: str) -> int | None:
    row = conn.execute(
        "SELECT incident_id FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT 1", (phone,)
    ).fetchone()
    return int(row[0]) if row else None


def note_reply(
    conn: sqlite3.Connection, phone: str, kind: str, text: str, now: datetime
) -> int | None:
    """A resident's or staff member's reply goes on the incident they were last texted about."""
    incident = latest_incident_for(conn, phone)
    if incident is not None:
        incidents_db.note(conn, incident, now, kind, phone, text)
    return incident


def incidents_told(conn: sqlite3.Connection, phone: str) -> list[tuple[int, str, str]]:
    """(id, status, title) of the incidents still open or acknowledged that this number
    was messaged about, newest first."""
    return [
        (int(i), str(s), str(t))
        for i, s, t in conn.execute(
            "SELECT id, status, title FROM incidents WHERE status IN ('open', 'acknowledged') "
            "AND id IN (SELECT incident_id FROM messages WHERE recipient = ?) ORDER BY id DESC",
            (phone,),
        )
    ]


def incident_summary(conn: sqlite3.Connection, incident_id: int) -> tuple[str, str, str] | None:
    """(status, title, site) of an incident."""
    row = conn.execute(
        "SELECT status, title, site FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


def by_channel(conn: sqlite3.Connection, incident_id: int) -> list[tuple[str, str, int]]:
    """(channel, status, messages) of an incident."""
    return conn.execute(
        "SELECT channel, status, count(*) FROM messages WHERE incident_id = ? GROUP BY 1, 2 "
        "ORDER BY 1, 2",
        (incident_id,),
    ).fetchall()


def outbox_of(conn: sqlite3.Connection, incident_id: int) -> list[dict[str, Any]]:
    """An incident's outbox actions (what its steps asked to send), in order."""
    return dict_rows(conn, "SELECT * FROM outbox WHERE incident_id = ? ORDER BY id", (incident_id,))


def pending_actions(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Outbox actions not yet expanded, with what expansion needs of their incident."""
    return conn.execute(
        "SELECT o.id, o.incident_id, o.channel, o.target, o.texts, o.vulnerable_first, "
        "o.vulnerable_list, i.site, i.building, i.floor, i.unit, i.units, i.severity "
        "FROM outbox o JOIN incidents i "
        "ON i.id = o.incident_id WHERE o.status = 'pending' ORDER BY o.id"
    ).fetchall()


def add_messages(conn: sqlite3.Connection, messages: list[dict[str, Any]]) -> None:
    """Message rows, all at once; one already there (same action, channel and recipient)
    stays as it is."""
    insert(conn, "INSERT OR IGNORE INTO messages", messages)


def set_action_status(conn: sqlite3.Connection, ids: list[int], status: str) -> None:
    if ids:
        actions, args = among(conn, "id", ids)
        conn.execute(f"UPDATE outbox SET status = ? WHERE {actions}", [status, *args])


def latest_pa_incident(
    conn: sqlite3.Connection, building: str, sites: tuple[str, ...]
) -> int | None:
    """The incident of the newest PA broadcast to `building` (at `sites`; none: any)."""
    where, args = "", list[Any]()
    if sites:
        clause, args = among(conn, "site", sites)
        where = f" AND {clause}"
    row = conn.execute(
        f"SELECT incident_id FROM messages WHERE channel = 'pa' AND recipient LIKE ?{where} "
        "ORDER BY id DESC LIMIT 1",
        [f"pa:%:{building}", *args],
    ).fetchone()
    return int(row[0]) if row else None


def actions_with_totals(conn: sqlite3.Connection, incident_id: int) -> list[dict[str, Any]]:
    """An incident's outbox actions, each with its recipients, delivered and failed."""
    return dict_rows(
        conn,
        "SELECT o.*, count(m.id) AS recipients, count(m.id) FILTER (WHERE m.status = "
        "'delivered') AS delivered, count(m.id) FILTER (WHERE m.status IN ('failed', "
        "'expired')) AS failed "
        "FROM outbox o LEFT JOIN messages m ON m.outbox_id = o.id "
        "WHERE o.incident_id = ? GROUP BY o.id ORDER BY o.id",
        (incident_id,),
    )


def staff_reached(conn: sqlite3.Connection, incident_id: int) -> list[tuple[str, list[str]]]:
    """Each outbox action of the incident, as its timeline line says it (`steps step 1:
    call to oncall:security`, escalations as `escalation: notify to role:x`), with the
    staff members its messages went to, in order."""
    rows = conn.execute(
        "SELECT o.id, o.step, o.channel, o.target, m.recipient_ref FROM outbox o "
        "LEFT JOIN messages m ON m.outbox_id = o.id AND m.recipient_kind = 'staff' "
        "WHERE o.incident_id = ? ORDER BY o.id, m.id",
        (incident_id,),
    ).fetchall()
    actions: dict[int, tuple[str, list[str]]] = {}
    for oid, step, channel, target, name in rows:
        label = "escalation" if step.startswith("escalation") else step
        _, names = actions.setdefault(oid, (f"{label}: {channel} to {target}", []))
        if name and name not in names:
            names.append(name)
    return list(actions.values())


#: a resident's message to their directory entry (SQLite by its key; PostgreSQL will not
#: cast a staff member's name to a number, so it compares text)
_RESIDENT = {
    False: "r.id = CAST(m.recipient_ref AS INTEGER)",
    True: "CAST(r.id AS TEXT) = m.recipient_ref",
}


def residents_told(conn: sqlite3.Connection, incident_id: int) -> list[dict[str, Any]]:
    """Each resident texted about the incident: phone and, while they still live there,
    where and who."""
    return dict_rows(
        conn,
        "SELECT DISTINCT m.recipient AS phone, r.id AS resident_id, r.building, r.floor, "
        "r.unit, r.name, r.vulnerable FROM messages m LEFT JOIN residents r "
        f"ON {_RESIDENT[postgres(conn)]} "
        "WHERE m.incident_id = ? AND m.recipient_kind = 'resident'",
        (incident_id,),
    )


def recipients(
    conn: sqlite3.Connection, incident_id: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """One row per recipient: staff first, then failures."""
    return dict_rows(
        conn,
        "SELECT m.id, m.channel, m.recipient, m.recipient_kind, m.recipient_ref, m.status, "
        "m.attempts, m.reason, m.updated_at, m.language FROM messages m "
        "WHERE m.incident_id = ? ORDER BY m.recipient_kind != 'staff', "
        "m.status NOT IN ('failed', 'expired'), m.priority, m.id LIMIT ?",
        (incident_id, no_limit(conn) if limit is None else limit),
    )


def waiting_or_failed(
    conn: sqlite3.Connection, states: tuple[str, ...], limit: int
) -> list[tuple[Any, ...]]:
    """The newest `limit` messages in `states`, oldest first."""
    rows = conn.execute(
        f"SELECT id, incident_id, channel, recipient, status, attempts, reason, due_at "
        f"FROM messages WHERE status IN ({','.join('?' * len(states))}) ORDER BY id DESC "
        "LIMIT ?",
        (*states, limit),
    ).fetchall()
    return rows[::-1]


def totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Every message by status."""
    return dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())


def totals_by_channel(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    return [
        (str(c), str(s), int(n))
        for c, s, n in conn.execute(
            "SELECT channel, status, count(*) FROM messages GROUP BY channel, status"
        )
    ]
