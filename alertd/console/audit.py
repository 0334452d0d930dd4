"""The audit trail: who did what, when, from where, through which door (console, CLI,
SMS). Rows are only ever added; the store's triggers refuse to change or delete one."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from alertd.store import Conn, StoreError
from alertd.store import accounts as accounts_db

if TYPE_CHECKING:
    from alertd.config import Config


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
    conn: Conn,
    actor: Actor,
    action: str,
    detail: str,
    now: datetime,
    incident: int | None = None,
    site: str | None = None,
) -> None:
    """`site`: what the row is about (unset: its incident's site, or none: the service)."""
    accounts_db.add_audit(
        conn, now, actor.who, actor.os_user, actor.via, actor.remote, action, detail,
        incident, site,
    )  # fmt: skip


def cli_reveal(config: Config, what: str) -> None:
    """`--show-phones` is a reveal of personal data: audited, or refused when the audit
    row cannot be written."""
    try:
        store = config.storage.open()
        try:
            record(store.conn, cli_actor(), "reveal_phones", what, datetime.now(UTC))
        finally:
            store.close()
    except StoreError as exc:
        raise PermissionError(
            f"full phone numbers are shown only when the audit trail can record it: {exc}"
        ) from None
