"""What the all-clear of an incident would say, before staff send it by hand: the engine's
own decision, made and not stored (the engine does no I/O), so the preview is exactly
what goes out."""

from __future__ import annotations

from collections.abc import Mapping

from alertd.config import Config
from alertd.engine.state import Action
from alertd.playbooks.schema import Playbook
from alertd.store import Conn
from alertd.store import incidents as db


def preview(
    conn: Conn,
    config: Config,
    playbooks: Mapping[str, Playbook],
    incident_id: int,
    by: str,
) -> list[Action] | str:
    """The messages the all-clear would send, or why it cannot be sent."""
    from datetime import UTC, datetime

    from alertd.daemon import make_engine

    row = db.find(conn, incident_id)
    if row is None:
        return f"no incident {incident_id}"
    incident = db.incident_from_row(row)
    decision = make_engine(config, playbooks).all_clear(incident, by, datetime.now(UTC))
    return decision.refused or decision.actions


def lines(actions: list[Action]) -> list[str]:
    """One line a message and language, as staff read them before sending."""
    return [
        f"{a.channel} to {a.target} ({language}): {text}"
        for a in actions
        for language, text in a.texts.items()
    ]
