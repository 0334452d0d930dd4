"""The PA broadcast controller's confirmations (`pa.ack_topic`), recorded on the incident
whose broadcast they confirm (the latest PA message to that building)."""

from __future__ import annotations

import re
from datetime import datetime

from alertd.store import Conn
from alertd.store import incidents as incidents_db
from alertd.store import messages as messages_db


class PaAcks:
    def __init__(self, template: str) -> None:
        # an MQTT wildcard takes a whole level: pa/building-{building}/ack -> pa/+/ack
        self.filter = "/".join(
            "+" if "{building}" in level else level for level in template.split("/")
        )
        head, _, tail = template.partition("{building}")
        self._pattern = re.compile(f"^{re.escape(head)}(?P<building>[^/]+){re.escape(tail)}$")

    def matches(self, topic: str) -> bool:
        return self._pattern.match(topic) is not None

    def building(self, topic: str) -> str:
        match = self._pattern.match(topic)
        return match["building"] if match else ""


def record_pa_ack(
    conn: Conn | None,
    building: str,
    text: str,
    now: datetime,
    sites: tuple[str, ...] = (),
) -> int | None:
    """`sites`: those the confirming broker serves (none: any site's broadcast)."""
    if conn is None:
        return None
    incident = messages_db.latest_pa_incident(conn, building, sites)
    if incident is not None:
        incidents_db.note(
            conn, incident, now, "pa_ack", "pa controller", f"building {building}: {text}"
        )
    return incident
