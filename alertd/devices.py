"""The devices CSV: one row per device, with its location and how it reports.

Bad rows are reported with their line number and skipped; the other devices load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alertd.csvfile import check_row, read_rows
from alertd.events import Kind, Location
from alertd.model import YEAR_S
from alertd.problems import InvalidInput, Problem

if TYPE_CHECKING:
    from alertd.sites import Site, Sites

REQUIRED = ("device_id", "profile", "topic")
KNOWN = (*REQUIRED, "site", "building", "floor", "unit", "zone", "heartbeat_s")
OPTIONAL = ("kind", "availability_topic")

#: Home Assistant binary-sensor device classes accepted in the `kind` column.
DEVICE_CLASS_KINDS: dict[str, Kind] = {
    "moisture": Kind.LEAK,
    "smoke": Kind.FIRE_ALARM,
    "heat": Kind.FIRE_ALARM,
    "gas": Kind.GAS,
    "carbon_monoxide": Kind.GAS,
    "co": Kind.GAS,
    "power": Kind.POWER_LOSS,
    "battery": Kind.DEVICE_BATTERY_LOW,
    "tamper": Kind.DEVICE_TAMPER,
    "problem": Kind.FIRE_TROUBLE,
    "connectivity": Kind.SENSOR_OFFLINE,
}


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    profile: str
    topic: str
    location: Location
    heartbeat_s: float | None = None
    kind: Kind | None = None
    availability_topic: str = ""
    #: kinds that also become active when the device goes offline (mains monitors)
    offline_means: tuple[Kind, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def parse_kind(text: str) -> Kind:
    text = text.strip().lower()
    if text in DEVICE_CLASS_KINDS:
        return DEVICE_CLASS_KINDS[text]
    try:
        return Kind(text)
    except ValueError:
        names = ", ".join([*(k.value for k in Kind), *DEVICE_CLASS_KINDS])
        raise ValueError(f"unknown kind {text!r} (one of: {names})") from None


def load_site_devices(
    sites: Sites, profiles: Iterable[str], in_force: Iterable[Device] | None = None
) -> tuple[list[Device], list[Problem]]:
    """Every site's devices. A file of one site's own takes rows of that site (an empty
    `site` cell means it); the shared file's rows name their site, which must be one
    that is configured: a detector placed at an unknown estate would text the wrong
    residents, so its row is skipped and said. `in_force` (a reload): a file with a
    problem is not taken, its sites keep these devices, and the other files are taken."""
    devices: list[Device] = []
    problems: list[Problem] = []
    files: dict[Path, list[str]] = {}
    for site in sites:
        files.setdefault(site.devices, []).append(site.id)
    for path, owners in files.items():
        own = sites.get(owners[0]) if len(owners) == 1 else None
        found, bad = load_devices(path, profiles=profiles, site=_placer(sites, own))
        if bad and in_force is not None:
            kept = ", ".join(owners)
            devices += [d for d in in_force if d.location.site in owners]
            problems += [
                Problem(p.where, f"{p.message} (site {kept} keeps its devices)") for p in bad
            ]
            continue
        devices += found
        problems += bad
    return devices, problems


def _placer(sites: Sites, own: Site | None) -> Callable[[str], tuple[str, str]]:
    """A row's site cell -> (its site's id, the prefix of its device ids)."""

    def place(cell: str) -> tuple[str, str]:
        site = own if own is not None and not cell else sites.find(cell)
        if own is not None and site is not own:
            raise ValueError(f"site {cell!r} in the devices file of site {own.id!r}")
        return site.id, sites.device_id(site, "")

    return place


def load_devices(
    path: Path,
    *,
    profiles: Iterable[str],
    site: str | Callable[[str], tuple[str, str]],
) -> tuple[list[Device], list[Problem]]:
    """Read the devices CSV. Returns the good devices and a problem per skipped row.
    `site`: the site of rows that name none, or what a row's site cell means (its site
    and the prefix of its device ids)."""
    known_profiles = set(profiles)
    problems: list[Problem] = []
    devices: list[Device] = []
    seen: dict[str, int] = {}
    try:
        rows = list(read_rows(path, REQUIRED, what="devices file"))
    except InvalidInput as exc:
        return [], exc.problems
    for line, cells in rows:
        where = f"{path}:{line}"
        try:
            device = _device(check_row(cells), known_profiles, site)
        except ValueError as exc:
            problems.append(Problem(where, f"row skipped: {exc}"))
            continue
        if device.device_id in seen:
            problems.append(
                Problem(
                    where,
                    f"row skipped: device_id {device.device_id!r} "
                    f"already used on line {seen[device.device_id]}",
                )
            )
            continue
        seen[device.device_id] = line
        devices.append(device)
    return devices, problems


def _device(
    row: dict[str, str], profiles: set[str], site: str | Callable[[str], tuple[str, str]]
) -> Device:
    for column in REQUIRED[:2]:
        if not row.get(column):
            raise ValueError(f"{column} is empty")
    if callable(site):
        at, prefix = site(row.get("site", ""))
    else:
        at, prefix = row.get("site") or site, ""
    if row["profile"] not in profiles:
        raise ValueError(
            f"unknown profile {row['profile']!r} (built in or configured: "
            f"{', '.join(sorted(profiles))})"
        )
    heartbeat: float | None = None
    if row.get("heartbeat_s"):
        try:
            heartbeat = float(row["heartbeat_s"])
        except ValueError:
            raise ValueError(
                f"heartbeat_s must be a number of seconds, got {row['heartbeat_s']!r}"
            ) from None
        if not 0 < heartbeat <= YEAR_S:  # also nan and inf
            raise ValueError(
                f"heartbeat_s must be from 0 to {YEAR_S} seconds (leave it empty for no "
                f"heartbeat), got {row['heartbeat_s']!r}"
            )
    kind = parse_kind(row["kind"]) if row.get("kind") else None
    tags = {k: v for k, v in row.items() if k not in KNOWN and k not in OPTIONAL and v}
    return Device(
        device_id=prefix + row["device_id"],
        profile=row["profile"],
        topic=row.get("topic", ""),
        location=Location(
            site=at,
            building=row.get("building", ""),
            floor=row.get("floor", ""),
            unit=row.get("unit", ""),
            zone=row.get("zone", ""),
        ),
        heartbeat_s=heartbeat,
        kind=kind,
        availability_topic=row.get("availability_topic", ""),
        tags=tags,
    )
