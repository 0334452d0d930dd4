"""The PA broadcast controller's confirmations (`pa.ack_topic`), recorded on the incident
whose broadcast they confirm (the latest PA message to that building)."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime

from alertd.store.sqlite import iso


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
    conn: sqlite3.Connection | None,
    building: str,
    text: str,
    now: datetime,
    sites: tuple[str, ...] = (),
) -> int | None:
    """`sites`: those the confirming broker serves (none: any site's broadcast)."""
    if conn is None:
        return None
    row = conn.execute(
        "SELECT incident_id FROM messages WHERE channel = 'pa' AND recipient LIKE ? "
        "AND (? = '[]' OR site IN (SELECT value FROM json_each(?))) ORDER BY id DESC LIMIT 1",
        (f"pa:%:{building}", json.dumps(sites), json.dumps(sites)),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?,?,?,?,?)",
        (row[0], iso(now), "pa_ack", "pa controller", f"building {building}: {text}"),
    )
    return int(row[0])
