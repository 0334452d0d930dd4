"""The residents CSV: `building,floor,unit,name,phone,language,vulnerable,notes`, and
`site` where one file holds several estates'.

Bad rows are reported with their line number and skipped; the others are imported.
Re-importing updates residents in place (a resident is a phone number in a unit);
residents missing from a new import are marked as moved out, not deleted, so that an
opt-out (STOP) is never forgotten. An import is a reviewed change: see
`alertd/directory/importing.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alertd.csvfile import check_row, read_rows, rows_of
from alertd.directory.phones import normalise
from alertd.problems import InvalidInput, Problem

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
    site: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Who a resident is: a phone number in a unit of a site."""
        return (self.site, self.building, self.unit, self.phone)


#: a row's site cell -> (the site's id, the region of its phone numbers); ValueError
#: for a site that is not configured
SiteOf = Callable[[str], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ResidentsFile:
    """A residents file as read: the good rows, and what was wrong."""

    name: str
    residents: list[Resident]
    #: rows skipped (or the whole file refused), each with `name:line`
    problems: list[Problem]
    #: rows kept but worth a look (the same phone in two units)
    warnings: list[Problem] = field(default_factory=list)
    #: nothing of it may be applied: it cannot be read, or no row is usable
    refused: bool = False
    #: (site, building, unit) of skipped rows: whoever lives there is not moved out for a
    #: typo
    unsure: frozenset[tuple[str, str, str]] = frozenset()
    #: the sites the file is the directory of: only their residents may be moved out
    sites: frozenset[str] = frozenset()


def read_residents(
    source: Path | bytes, region: str, *, name: str = "", site: SiteOf | None = None
) -> ResidentsFile:
    """Read the file (a path, or an upload's bytes and the user's own file `name`).
    `site`: what a row's site cell means (unset: one site, numbers of `region`)."""
    name = name or str(source)
    site_of: SiteOf = site or (lambda cell: (cell, region))
    problems: list[Problem] = []
    warnings: list[Problem] = []
    residents: list[Resident] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    phones: dict[str, tuple[int, str, str]] = {}
    unsure: set[tuple[str, str, str]] = set()
    #: (building, unit) of rows whose site cannot be told: unsure at every site of the file
    unplaced: set[tuple[str, str]] = set()
    sites: set[str] = set()
    try:
        if isinstance(source, bytes):
            rows = list(rows_of(source, COLUMNS[:6], what="residents file", name=name))
        else:
            rows = list(read_rows(source, COLUMNS[:6], what="residents file", name=name))
    except InvalidInput as exc:
        return ResidentsFile(name, [], exc.problems, refused=True)
    for line, cells in rows:
        where = f"{name}:{line}"
        try:
            at, at_region = site_of(cells.get("site", "").strip())
        except ValueError as exc:
            problems.append(Problem(where, f"row skipped: {exc}"))
            if cells.get("building") and cells.get("unit"):
                unplaced.add((cells["building"], cells["unit"]))
            continue
        sites.add(at)
        try:
            resident = _resident(check_row(cells), at_region, at)
        except ValueError as exc:
            problems.append(Problem(where, f"row skipped: {exc}"))
            if cells.get("building") and cells.get("unit"):
                unsure.add((at, cells["building"], cells["unit"]))
            continue
        key = resident.key
        if key in seen:
            problems.append(
                Problem(where, f"row skipped: the same phone in the same unit as line {seen[key]}")
            )
            continue
        seen[key] = line
        if resident.phone in phones:
            first, building, unit = phones[resident.phone]
            warnings.append(
                Problem(
                    where,
                    f"the same phone as line {first} (building {building}, unit {unit}): "
                    "kept, that person is texted for both units",
                )
            )
        else:
            phones[resident.phone] = (line, resident.building, resident.unit)
        residents.append(resident)
    if not residents:
        why = "no usable row" if rows else "no rows under the header"
        problems.append(Problem(name, f"residents file refused: {why}; nothing was changed"))
    unsure |= {(s, b, u) for s in sites for b, u in unplaced}  # a typo in a site cell
    return ResidentsFile(
        name, residents, problems, warnings, not residents, frozenset(unsure), frozenset(sites)
    )


def _resident(cell: dict[str, str], region: str, site: str) -> Resident:
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
        site,
    )
