"""Message rows through their life: pending -> sending -> sent (-> delivered | failed by
receipt), or retried, expired, or failed. A row is marked `sending` in its own commit
before the request goes out, so after a crash exactly those rows are the ones that may
have been sent twice; they are counted."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from alertd.outbox.sink import Message, Result
from alertd.store.sqlite import iso, parse_iso

INFLIGHT = "in flight when alertd stopped: sent again, may be a duplicate"
#: Twilio error codes that no retry can fix, and what they mean for the directory
PERMANENT = {
    21211: "invalid number",
    21614: "not a mobile number",
    21610: "unsubscribed (STOP)",
    21408: "region not enabled",
    21612: "cannot route to this number",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    message: Message
    result: Result
    retry_at: datetime | None = None
    #: the staff SMS failed: try a voice call to the same person
    fallback_call: bool = False


def recover_inflight(conn: sqlite3.Connection) -> int:
    cur = conn.execute(
        "UPDATE messages SET status = 'pending', reason = ? WHERE status = 'sending'", (INFLIGHT,)
    )
    return cur.rowcount


def claim(conn: sqlite3.Connection, now: datetime, limit: int) -> list[Message]:
    """Expire what is too late, then take due messages (urgent first) and mark them sending."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "UPDATE messages SET status = 'expired', reason = 'expired before it could "
            "be sent', updated_at = ? WHERE status = 'pending' AND expires_at < ?",
            (iso(now), iso(now)),
        )
        rows = conn.execute(
            "SELECT id, channel, recipient, body, language, expires_at, attempts, incident_id "
            "FROM messages WHERE status = 'pending' AND due_at <= ? ORDER BY priority, id "
            "LIMIT ?",
            (iso(now), limit),
        ).fetchall()
        conn.executemany(
            "UPDATE messages SET status = 'sending', attempts = attempts + 1, "
            "updated_at = ? WHERE id = ?",
            [(iso(now), r[0]) for r in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
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
        )
        for mid, channel, recipient, body, language, expires, attempts, incident in rows
    ]


def record(conn: sqlite3.Connection, outcomes: list[Outcome], now: datetime) -> None:
    conn.execute("BEGIN")
    try:
        for o in outcomes:
            r = o.result
            if r.outcome == "sent":
                conn.execute(
                    "UPDATE messages SET status = 'sent', provider_id = ?, reason = ?, "
                    "updated_at = ? WHERE id = ?",
                    (r.provider_id, r.reason, iso(now), o.message.id),
                )
            elif r.outcome == "retryable" and o.retry_at is not None:
                conn.execute(
                    "UPDATE messages SET status = 'pending', due_at = ?, reason = ?, "
                    "updated_at = ? WHERE id = ?",
                    (iso(o.retry_at), r.reason, iso(now), o.message.id),
                )
            else:
                reason = r.reason if r.outcome == "permanent" else f"gave up: {r.reason}"
                conn.execute(
                    "UPDATE messages SET status = 'failed', reason = ?, updated_at = ? "
                    "WHERE id = ?",
                    (reason, iso(now), o.message.id),
                )
                if r.outcome == "permanent":
                    _flag(conn, o.message, reason)
                if o.fallback_call:
                    conn.execute(
                        "INSERT OR IGNORE INTO messages (outbox_id, incident_id, channel, "
                        "recipient, recipient_kind, recipient_ref, language, body, priority, "
                        "due_at, expires_at, updated_at) SELECT outbox_id, incident_id, 'call', "
                        "recipient, recipient_kind, recipient_ref, language, body, 0, ?, "
                        "expires_at, ? FROM messages WHERE id = ?",
                        (iso(now), iso(now), o.message.id),
                    )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _flag(conn: sqlite3.Connection, message: Message, reason: str) -> None:
    """A permanent failure is kept on the directory entry: no more attempts to that number."""
    if "unsubscribed" in reason:
        conn.execute("UPDATE residents SET opted_out = 1 WHERE phone = ?", (message.recipient,))
    else:
        conn.execute(
            "UPDATE residents SET undeliverable = ? WHERE phone = ?", (reason, message.recipient)
        )


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


def apply_status(
    conn: sqlite3.Connection, provider_id: str, status: str, error_code: int | None, now: datetime
) -> tuple[int, str] | None:
    """A delivery receipt: the message row follows it; a failure goes on the timeline.
    Returns (incident, recipient), or None for a message alertd did not send."""
    row = conn.execute(
        "SELECT id, incident_id, recipient FROM messages WHERE provider_id = ?", (provider_id,)
    ).fetchone()
    if row is None:
        return None
    mid, incident, recipient = row
    final = {"delivered": "delivered", "undelivered": "failed", "failed": "failed"}.get(status)
    conn.execute("BEGIN")
    try:
        if final is not None:
            reason = f"Twilio {status}" + (f" (error {error_code})" if error_code else "")
            conn.execute(
                "UPDATE messages SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
                (final, reason, iso(now), mid),
            )
            text = (
                f"message {mid} delivered"
                if final == "delivered"
                else f"message {mid} not delivered: {reason}"
            )
            conn.execute(
                "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?,?,?,?,?)",
                (incident, iso(now), "delivery", "twilio", text),
            )
            if final == "failed" and error_code in PERMANENT:
                _flag(
                    conn,
                    Message(mid, "sms", recipient, "", ""),
                    f"{PERMANENT[error_code]} (Twilio {error_code})",
                )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return incident, recipient


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
        conn.execute(
            "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?,?,?,?,?)",
            (incident, iso(now), kind, phone, text),
        )
    return incident


def set_opt_out(conn: sqlite3.Connection, phone: str, opted_out: bool) -> int:
    return conn.execute(
        "UPDATE residents SET opted_out = ? WHERE phone = ?", (int(opted_out), phone)
    ).rowcount


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


def incident_summary(conn: sqlite3.Connection, incident_id: int) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT status, title FROM incidents WHERE id = ?", (incident_id,)
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def resident_by_phone(conn: sqlite3.Connection, phone: str) -> dict[str, str] | None:
    row = conn.execute(
        "SELECT building, floor, unit, name, notes, vulnerable, phone FROM residents "
        "WHERE phone = ? AND moved_out IS NULL ORDER BY id LIMIT 1",
        (phone,),
    ).fetchone()
    if row is None:
        return None
    keys = ("building", "floor", "unit", "name", "notes", "vulnerable", "phone")
    return {k: str(v) for k, v in zip(keys, row, strict=True)}
