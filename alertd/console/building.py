"""A picture of an incident's building, drawn from what alertd already holds (the
devices file, the directory, the incident's timeline and roll call): a stack of floors,
top floor first, each flat a cell. No floor plan is needed.

Each state has a colour and a mark of its own, so that it reads without colour too:
alarm (red, !), joined later (red, + and its time), vulnerable resident (V; ✓ once the
door was checked), answered 1 (green, 1) or 2 (orange, 2), device offline (grey, x)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.devices import Device
from alertd.store import Conn
from alertd.store.sql import dict_rows

#: a floor's height and a flat's width in the drawing (SVG units)
ROW, CELL, LABEL = 22, 30, 44


@dataclass
class Flat:
    unit: str
    alarm: bool = False
    joined: str = ""
    vulnerable: bool = False
    visited: bool = False
    answer: str = ""  # safe | need_help
    offline: bool = False

    @property
    def marks(self) -> str:
        return "".join(
            mark
            for mark, on in (
                ("!", self.alarm and not self.joined),
                ("+", bool(self.joined)),
                ("2", self.answer == "need_help"),
                ("1", self.answer == "safe"),
                ("V", self.vulnerable and not self.visited),
                ("✓", self.vulnerable and self.visited),
                ("x", self.offline),
            )
            if on
        )

    @property
    def state(self) -> str:
        """The one fill a cell gets: the most urgent of what holds."""
        if self.alarm:
            return "alarm"
        if self.answer == "need_help":
            return "help"
        if self.offline:
            return "offline"
        if self.answer == "safe":
            return "safe"
        return "vulnerable" if self.vulnerable else "quiet"


@dataclass
class Floor:
    name: str
    flats: dict[str, Flat] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        return any(f.alarm for f in self.flats.values())

    def flat(self, unit: str) -> Flat:
        return self.flats.setdefault(unit, Flat(unit))


def _order(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else -1, name)


@dataclass
class Building:
    name: str
    floors: dict[str, Floor] = field(default_factory=dict)

    def floor(self, name: str) -> Floor:
        return self.floors.setdefault(name or "?", Floor(name or "?"))

    def stack(self) -> list[Floor]:
        """Top floor first."""
        return sorted(self.floors.values(), key=lambda f: _order(f.name), reverse=True)


def picture(
    conn: Conn,
    incident: Mapping[str, Any],
    devices: Iterable[Device],
    doors: Iterable[Mapping[str, Any]],
    answers: Mapping[str, str],
    joined: Mapping[str, str],
) -> Building:
    """`answers`: unit -> safe | need_help (the roll call); `joined`: device id -> when it
    joined the incident (local time)."""
    site, name = incident["site"], incident["building"]
    building = Building(name)
    for row in dict_rows(
        conn,
        "SELECT floor, unit FROM residents WHERE moved_out IS NULL AND site = ? AND building = ?",
        (site, name),
    ):
        building.floor(row["floor"]).flat(row["unit"])
    active = {entry.split(" ")[0] for entry in json.loads(incident["active"] or "[]")}
    offline = _offline(conn)
    for device in devices:
        where = device.location
        if where.site != site or where.building != name:
            continue
        flat = building.floor(where.floor).flat(where.unit or "·")
        if device.device_id in active:
            flat.alarm = True
            flat.joined = joined.get(device.device_id, "")
        flat.offline = flat.offline or device.device_id in offline
    for door in doors:
        flat = building.floor(door["floor"]).flat(door["unit"])
        flat.vulnerable, flat.visited = True, bool(door.get("visited"))
    for floor in building.floors.values():
        for flat in floor.flats.values():
            flat.answer = answers.get(flat.unit, "")
    return building


def _offline(conn: Conn) -> set[str]:
    return {
        str(r["device_id"])
        for r in dict_rows(
            conn,
            "SELECT device_id FROM device_state WHERE kind = 'sensor.offline' AND active = 1",
            (),
        )
    }


def svg(building: Building, words: Mapping[str, str]) -> str:
    """The stack of floors as SVG (escaped here: names come from files people edit)."""
    from xml.sax.saxutils import escape

    floors = building.stack()
    label = words["floor_label"]  # `12层` / `12F`
    widest = max((len(f.flats) for f in floors), default=1)
    width, height = LABEL + widest * CELL + 4, len(floors) * ROW + 4
    out = [
        f'<svg class="building" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width * 2}" aria-label="{escape(words["building_picture"])}">'
    ]
    for i, floor in enumerate(floors):
        y = 2 + i * ROW
        cls = "floor alarm" if floor.alarm else "floor"
        said = floor.name if floor.name.endswith("层") else label.format(floor.name)
        out.append(
            f'<g class="{cls}" data-floor="{escape(floor.name)}">'
            f'<text x="2" y="{y + 15}" class="floor-name">{escape(said)}</text>'
        )
        for j, flat in enumerate(sorted(floor.flats.values(), key=lambda f: _order(f.unit))):
            x = LABEL + j * CELL
            said = f"{flat.unit} {flat.marks}".strip()
            if flat.joined:
                said += f" ({words['joined_at']} {flat.joined})"
            out.append(
                f'<g class="flat {flat.state}" data-unit="{escape(flat.unit)}">'
                f"<title>{escape(said)}</title>"
                f'<rect x="{x}" y="{y}" width="{CELL - 2}" height="{ROW - 2}" rx="2"></rect>'
                f'<text x="{x + CELL / 2 - 1}" y="{y + 14}" text-anchor="middle">'
                f"{escape(flat.marks or flat.unit[-2:])}</text></g>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
