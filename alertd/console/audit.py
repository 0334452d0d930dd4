"""The audit trail: who did what, when, from where, through which door (console, CLI,
SMS). Rows are only ever added; the store's triggers refuse to change or delete one."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alertd.store.sqlite import dict_rows, iso


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the staff name or account, the operating-system user behind it, the
    door (web, cli) and where from (the browser's address, the terminal)."""

    who: str
    via: str
    remote: str = ""
    os_user: str = ""


def cli_actor(who: str = "") -> Actor:
    """A shell user: `--by` names the staff member; the login name says who typed it
    (and is the one named where no staff member is: user changes, imports)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    tty = os.environ.get("SSH_CONNECTION", "").split(" ")[0] or (
        os.ttyname(0) if os.isatty(0) else ""
    )
    return Actor(who or user, "cli", tty, user)


def record(
    conn: sqlite3.Connection,
    actor: Actor,
    action: str,
    detail: str,
    now: datetime,
    incident: int | None = None,
    site: str | None = None,
) -> None:
    """`site`: what the row is about (unset: its incident's site, or none: the service)."""
    conn.execute(
        "INSERT INTO audit (at, who, os_user, via, remote, action, incident_id, detail, site) "
        "VALUES (?,?,?,?,?,?,?,?, coalesce(?, (SELECT site FROM incidents WHERE id = ?), ''))",
        (
            *(iso(now), actor.who, actor.os_user, actor.via, actor.remote, action, incident),
            *(detail, site, incident),
        ),
    )


def rows(
    conn: sqlite3.Connection,
    *,
    since: datetime | None = None,
    who: str | None = None,
    incident: int | None = None,
    limit: int = 200,
    sites: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The newest `limit` rows that match, oldest first; `sites`: about those sites only
    (an account of some sites sees nothing of the others', nor the service's own)."""
    where: list[str] = []
    args: list[object] = []
    if sites is not None:
        where.append("site IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sites))
    if since is not None:
        where.append("at >= ?")
        args.append(iso(since))
    if who:
        where.append("who = ?")
        args.append(who)
    if incident is not None:
        where.append("incident_id = ?")
        args.append(incident)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    found = dict_rows(
        conn, f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ?", (*args, limit)
    )
    return found[::-1]


def cli_reveal(store_path: Path, what: str) -> None:
    """`--show-phones` is a reveal of personal data: audited, or refused when the audit
    row cannot be written."""
    from alertd.store import SqliteStore

    try:
        store = SqliteStore(store_path)
        try:
            record(store.conn, cli_actor(), "reveal_phones", what, datetime.now(UTC))
        finally:
            store.close()
    except sqlite3.Error as exc:
        raise PermissionError(
            f"full phone numbers are shown only when the audit trail can record it: {exc}"
        ) from None
