"""The residents CSV: `building,floor,unit,name,phone,language,vulnerable,notes`.

Bad rows are reported with their line number and skipped; the others are imported.
Re-importing updates residents in place (a resident is a phone number in a unit);
residents missing from a new import are marked as moved out, not deleted, so that an
opt-out (STOP) is never forgotten."""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alertd.directory.phones import normalise
from alertd.problems import Problem
from alertd.store.sqlite import iso

COLUMNS = ("building", "floor", "unit", "name", "phone", "language", "vulnerable", "notes")
YES = {"yes", "y", "true", "1", "是", "x"}
NO = {"no", "n", "false", "0", "否", ""}


@dataclass(frozen=True, slots=True)
class Resident:
    building: str
    floor: str
    unit: str
    name: str
    phone: str
    language: str
    vulnerable: bool
    notes: str = ""


def read_residents(path: Path, region: str) -> tuple[list[Resident], list[Problem]]:
    problems: list[Problem] = []
    residents: list[Resident] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        return [], [Problem(str(path), f"cannot read: {exc.strerror}")]
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS[:6] if c not in (reader.fieldnames or [])]
        if missing:
            return [], [Problem(f"{path}:1", f"missing column(s): {', '.join(missing)}")]
        seen: dict[tuple[str, str, str], int] = {}
        line = reader.line_num
        for row in reader:
            where, line = f"{path}:{line + 1}", reader.line_num
            try:
                resident = _resident(row, region)
            except ValueError as exc:
                problems.append(Problem(where, f"row skipped: {exc}"))
                continue
            key = (resident.building, resident.unit, resident.phone)
            number = int(where.rsplit(":", 1)[1])
            if key in seen:
                problems.append(
                    Problem(
                        where, f"row skipped: the same phone in the same unit as line {seen[key]}"
                    )
                )
                continue
            seen[key] = number
            residents.append(resident)
    return residents, problems


def _resident(row: dict[str | None, str | None], region: str) -> Resident:
    if None in row:
        raise ValueError("more fields than columns")
    cell = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for column in ("building", "unit"):
        if not cell.get(column):
            raise ValueError(f"{column} is empty")
    language = cell.get("language", "").lower() or "zh"
    if language not in ("zh", "en"):
        raise ValueError(f"language must be zh or en, got {cell['language']!r}")
    vulnerable = cell.get("vulnerable", "").lower()
    if vulnerable not in YES | NO:
        raise ValueError(f"vulnerable must be yes or no, got {cell['vulnerable']!r}")
    return Resident(
        cell["building"],
        cell.get("floor", ""),
        cell["unit"],
        cell.get("name", ""),
        normalise(cell.get("phone", ""), region),
        language,
        vulnerable in YES,
        cell.get("notes", ""),
    )


def import_residents(
    conn: sqlite3.Connection, residents: list[Resident], now: datetime
) -> tuple[int, int, int]:
    """Upsert in one transaction; returns (added, updated, moved out)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = {
            (b, u, p)
            for b, u, p in conn.execute(
                "SELECT building, unit, phone FROM residents WHERE moved_out IS NULL"
            )
        }
        keys = set()
        for r in residents:
            keys.add((r.building, r.unit, r.phone))
            conn.execute(
                "INSERT INTO residents (building, floor, unit, name, phone, language, vulnerable, "
                "notes, updated_at) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(building, unit, phone) DO UPDATE SET floor = excluded.floor, "
                "name = excluded.name, language = excluded.language, "
                "vulnerable = excluded.vulnerable, notes = excluded.notes, "
                "updated_at = excluded.updated_at, moved_out = NULL",
                (
                    r.building,
                    r.floor,
                    r.unit,
                    r.name,
                    r.phone,
                    r.language,
                    int(r.vulnerable),
                    r.notes,
                    iso(now),
                ),
            )
        gone = before - keys
        conn.executemany(
            "UPDATE residents SET moved_out = ? WHERE building = ? AND unit = ? AND phone = ?",
            [(iso(now), *k) for k in gone],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(keys - before), len(keys & before), len(gone)
