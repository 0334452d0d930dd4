"""What each console role may see and do. One table, so that a page and a POST handler
can never disagree about a permission."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    DUTY = "duty"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


#: permission -> the roles that have it
GRANTS: dict[str, frozenset[Role]] = {
    # ack, note, ETA, resolve, close, declare, drill, door-check ticks
    "act": frozenset({Role.DUTY, Role.SUPERVISOR, Role.ADMIN}),
    # residents' and staff names
    "names": frozenset({Role.DUTY, Role.SUPERVISOR, Role.ADMIN}),
    # every phone in full, without asking
    "phones": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    # one number in full, with a reason (audited)
    "reveal": frozenset({Role.DUTY, Role.SUPERVISOR, Role.ADMIN}),
    # the vulnerable residents' notes (wheelchair, lives alone) in the whole directory
    "notes": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    # ... and in an incident's door-check list, where the guard at the door needs them
    # (the door-check SMS to duty staff and the timeline carry them too)
    "door_notes": frozenset({Role.DUTY, Role.SUPERVISOR, Role.ADMIN}),
    # staff phones in full: the desk calls the technician on call
    "staff_phones": frozenset({Role.DUTY, Role.SUPERVISOR, Role.ADMIN}),
    "audit": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    # how the engine's rules matched an event (its trace on the timeline)
    "trace": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    "analytics": frozenset({Role.SUPERVISOR, Role.ADMIN}),
    "import": frozenset({Role.SUPERVISOR, Role.ADMIN}),
}


def may(role: Role, permission: str) -> bool:
    return role in GRANTS[permission]
