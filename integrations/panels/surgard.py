"""Contact ID as a Sur-Gard MLR2 / MLR2-E receiver passes it on (its "computer output",
protocol 5; the SG-System receivers speak the same): `5RRL 18AAAAQXYZGGCCC` ended by DC4
(0x14). RR is the receiver, L the line card, AAAA the panel's account, Q the qualifier as
a letter (E a new event, R a restore, P a previous event still in force), XYZ the event
code, GG the group, CCC the zone. Events are placed per account and zone: the zone map
keys are `<account>-<zone>`. The receiver's supervision heartbeat (`1RRL ... @`) is a
sign of life, nothing more."""

from __future__ import annotations

import re

from integrations.panels import contact_id
from integrations.panels.signal import FrameError, Reading

#: what the receiver sends after each message
DC4 = "\x14"
_EVENT = re.compile(
    r"^5(?P<receiver>[0-9A-Fa-f]{2})(?P<line>[0-9A-Fa-f]) ?18(?P<account>[0-9A-Fa-f]{4})"
    r"(?P<q>[ERP])(?P<code>[0-9A-Fa-f]{3})(?P<group>[0-9A-Fa-f]{2})(?P<zone>[0-9A-Fa-f]{3})$"
)
_HEARTBEAT = re.compile(r"^1[0-9A-Fa-f]{3}\s+@\s*$")
QUALIFIERS = {"E": 1, "R": 3, "P": 6}


def read(line: str) -> Reading:
    line = line.strip(DC4 + "\r\n")
    if _HEARTBEAT.match(line):
        return Reading()
    match = _EVENT.match(line)
    if match is None:
        raise FrameError(f"not a Sur-Gard Contact ID line (5RRL 18AAAAQXYZGGCCC): {line[:60]!r}")
    account = match["account"].upper()
    return contact_id.reading(
        match["code"].upper(), QUALIFIERS[match["q"]], f"{account}-{match['zone']}", account=account
    )
