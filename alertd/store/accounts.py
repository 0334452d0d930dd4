"""Console accounts, their sessions and the audit trail in the store. What an account
may do, and how passwords are hashed, is the console's (alertd/console/accounts.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alertd.store.sql import Conn, among, dict_rows, iso, unique_violation

#: id, name, role, staff, disabled, sites
USER = "id, name, role, staff, disabled, sites"


class NameTaken(ValueError):
    """An account of that name exists already."""


def add_user(
    conn: Conn,
    name: str,
    role: str,
    staff: str,
    password_hash: str,
    sites: str,
    now: datetime,
) -> int:
    try:
        row = conn.execute(
            "INSERT INTO users (name, role, staff, password_hash, created_at, updated_at, "
            "sites) VALUES (?,?,?,?,?,?,?) RETURNING id",
            (name, role, staff, password_hash, iso(now), iso(now), sites),
        ).fetchone()
    except Exception as exc:
        if unique_violation(exc):
            raise NameTaken(name) from None
        raise
    return int(row[0])


def users(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {USER} FROM users ORDER BY name").fetchall()


def user(conn: Conn, name: str) -> tuple[Any, ...] | None:
    """The account's row and, last, its password hash."""
    row = conn.execute(f"SELECT {USER}, password_hash FROM users WHERE name = ?", (name,))
    found: tuple[Any, ...] | None = row.fetchone()
    return found


def update_user(conn: Conn, user_id: int, now: datetime, **values: Any) -> None:
    """Set `values` (sites, disabled, password_hash) on the account."""
    allowed = {"sites", "disabled", "password_hash"}
    assert set(values) <= allowed, set(values) - allowed
    sets = ", ".join(f"{column} = ?" for column in values)
    conn.execute(
        f"UPDATE users SET {sets}, updated_at = ? WHERE id = ?",
        (*values.values(), iso(now), user_id),
    )


def end_sessions(conn: Conn, user_id: int) -> None:
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))


def add_session(
    conn: Conn,
    token_hash: str,
    user_id: int,
    csrf: str,
    now: datetime,
    expires_at: datetime,
    remote: str,
) -> None:
    """A new session; the expired ones go at the same time."""
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (iso(now),))
    conn.execute(
        "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, expires_at, remote) "
        "VALUES (?,?,?,?,?,?)",
        (token_hash, user_id, csrf, iso(now), iso(expires_at), remote),
    )


def session(conn: Conn, token_hash: str) -> tuple[Any, ...] | None:
    """The account's row, then the session's csrf and expiry."""
    columns = ", ".join("u." + c.strip() for c in USER.split(","))
    found: tuple[Any, ...] | None = conn.execute(
        f"SELECT {columns}, s.csrf, s.expires_at FROM web_sessions s "
        "JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
        (token_hash,),
    ).fetchone()
    return found


def end_session(conn: Conn, token_hash: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))


def add_audit(
    conn: Conn,
    at: datetime,
    who: str,
    os_user: str,
    via: str,
    remote: str,
    action: str,
    detail: str,
    incident: int | None = None,
    site: str | None = None,
) -> None:
    """`site` unset: the incident's site, or none (the service itself)."""
    conn.execute(
        "INSERT INTO audit (at, who, os_user, via, remote, action, incident_id, detail, site) "
        "VALUES (?,?,?,?,?,?,?,?, coalesce(?, (SELECT site FROM incidents WHERE id = ?), ''))",
        (iso(at), who, os_user, via, remote, action, incident, detail, site, incident),
    )


def audit(
    conn: Conn,
    *,
    since: datetime | None = None,
    who: str | None = None,
    incident: int | None = None,
    action: str | None = None,
    before: int | None = None,
    limit: int = 200,
    sites: tuple[str, ...] | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """The newest `limit` rows that match (older than row `before`: the next page),
    oldest first unless `newest_first`; `sites`: about those sites only."""
    where: list[str] = []
    args: list[object] = []
    if sites is not None:
        clause, listed = among(conn, "site", sites)
        where.append(clause)
        args += listed
    for column, value in (("who", who), ("action", action)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if since is not None:
        where.append("at >= ?")
        args.append(iso(since))
    if incident is not None:
        where.append("incident_id = ?")
        args.append(incident)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    found = dict_rows(
        conn, f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ?", (*args, limit)
    )
    return found if newest_first else found[::-1]
