"""Staff actions from outside the daemon (the CLI, the console): each is a row in
`commands` that the daemon applies, the one place incidents change. The caller waits for
the outcome and the audit trail gets one row with it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alertd.console.audit import Actor, record
from alertd.incidents import inputs
from alertd.store import Conn
from alertd.store import incidents as db

WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    #: done, failed, or queued (the daemon did not answer in time: it applies it later)
    state: str
    result: str
    command_id: int


def submit(
    conn: Conn,
    command: str,
    incident: int | None,
    actor: Actor,
    text: str,
    now: datetime,
) -> int:
    """A command from a door that cannot wait for the outcome (an SMS reply, the voice
    keypad, inside the daemon): handed over and audited as submitted."""
    cid = db.add_command(conn, command, incident, actor.who, text, {}, now)
    record(conn, actor, command, f"{text} -> submitted", now, incident)
    return cid


def run_command(
    conn: Conn,
    command: str,
    incident: int | None,
    actor: Actor,
    text: str,
    args: dict[str, Any],
    wait_s: float = WAIT_S,
) -> Outcome:
    """Check what was typed (`ValueError` names the field: nothing is written), hand the
    command over, wait for the daemon (polling the row: it lives in another process) and
    audit what became of it."""
    text = inputs.free_text(text)
    incident = inputs.incident_number(incident)
    if command == "eta":
        args = {**args, "minutes": inputs.eta_minutes(args.get("minutes"))}
    cid = db.add_command(conn, command, incident, actor.who, text, args, datetime.now(UTC))
    deadline = time.monotonic() + wait_s
    state, result = "pending", ""
    while time.monotonic() < deadline:
        state, result = db.command_outcome(conn, cid)
        if state != "pending":
            break
        time.sleep(0.05)
    state = "queued" if state == "pending" else state
    detail = " ".join(p for p in (text, f"{args}" if args else "", f"-> {state}", result) if p)
    record(conn, actor, command, detail, datetime.now(UTC), incident, args.get("site"))
    return Outcome(state, result, cid)
