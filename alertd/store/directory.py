"""The residents directory in the store: who lives where, their phone and language, who
must be visited first; every statement about residents, whoever asks (an incident's
audience, the door-check list, the console, an import, a STOP)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alertd.store.sql import (
    among,
    as_integer,
    dict_rows,
    iso,
    no_limit,
    postgres,
    transaction,
)

if TYPE_CHECKING:
    from alertd.directory.residents import Resident

#: a resident who can be texted now
TEXTABLE = "moved_out IS NULL AND opted_out = 0 AND undeliverable IS NULL"


def known_units(
    conn: sqlite3.Connection, site: str, building: str, candidates: Sequence[str]
) -> set[str]:
    """Which of `candidates` (flat numbers) the directory has residents in."""
    return {
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT unit FROM residents WHERE site = ? AND building = ? "
            f"AND unit IN ({','.join('?' * len(candidates))})",
            (site, building, *candidates),
        )
    }


def textable(
    conn: sqlite3.Connection,
    site: str,
    *,
    building: str | None = None,
    floor: str | None = None,
    units: Sequence[str] | None = None,
    told_about: int | None = None,
) -> list[tuple[int, str, str, int]]:
    """(id, phone, language, vulnerable) of the residents of `site` who can be texted,
    narrowed to a building, its floor or its units, or to those already texted about
    incident `told_about`."""
    where, args = "", list[Any]([site])
    if building is not None:
        where, args = where + " AND building = ?", [*args, building]
    if floor is not None:
        where, args = where + " AND floor = ?", [*args, floor]
    if units is not None:
        where += f" AND unit IN ({','.join('?' * len(units))})"
        args += list(units)
    if told_about is not None:
        where += (
            " AND CAST(id AS TEXT) IN (SELECT recipient_ref FROM messages WHERE incident_id = ? "
            "AND recipient_kind = 'resident')"
        )
        args.append(told_about)
    return conn.execute(
        f"SELECT id, phone, language, vulnerable FROM residents WHERE {TEXTABLE} AND site = ?"
        f"{where} ORDER BY id",
        args,
    ).fetchall()


def vulnerable(
    conn: sqlite3.Connection, site: str, building: str, floor: str = ""
) -> list[dict[str, Any]]:
    """The vulnerable residents of a building (its floor, when given) at `site`, in
    door-check order."""
    where, args = "site = ? AND building = ?", [site, building]
    if floor:
        where, args = where + " AND floor = ?", [*args, floor]
    return dict_rows(  # door-check order: floor by number, then as written, then flat
        conn,
        f"SELECT building, floor, unit, name, notes FROM residents WHERE moved_out IS NULL "
        f"AND vulnerable = 1 AND {where} ORDER BY {as_integer(conn, 'floor')}, floor, unit, id",
        args,
    )


def listing(
    conn: sqlite3.Connection,
    *,
    sites: Sequence[str] | None = None,
    building: str = "",
    flagged: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Residents living there now, by site, building, floor and flat; `flagged`: only
    those who replied STOP or whose number failed."""
    where, args = "", list[Any]()
    if sites is not None:
        clause, args = among(conn, "site", sites)
        where = f" AND {clause}"
    if building:
        where, args = where + " AND building = ?", [*args, building]
    if flagged:
        where += " AND (opted_out = 1 OR undeliverable IS NOT NULL)"
    return dict_rows(
        conn,
        "SELECT id, site, building, floor, unit, name, phone, language, vulnerable, notes, "
        f"opted_out, undeliverable FROM residents WHERE moved_out IS NULL{where} "
        f"ORDER BY site, building, {as_integer(conn, 'floor')}, floor, unit, id LIMIT ?",
        [*args, no_limit(conn) if limit is None else limit],
    )


def phone_of(conn: sqlite3.Connection, resident_id: int) -> tuple[str, str, str] | None:
    """(phone, building-unit, site) of one resident."""
    row = conn.execute(
        "SELECT phone, building || '-' || unit, site FROM residents WHERE id = ?", (resident_id,)
    ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


def by_phone(conn: sqlite3.Connection, phone: str) -> dict[str, str] | None:
    """Where the resident with this number lives (the first, if several share it)."""
    row = conn.execute(
        "SELECT site, building, floor, unit, name, notes, vulnerable, phone FROM residents "
        "WHERE phone = ? AND moved_out IS NULL ORDER BY id LIMIT 1",
        (phone,),
    ).fetchone()
    if row is None:
        return None
    keys = ("site", "building", "floor", "unit", "name", "notes", "vulnerable", "phone")
    return {k: str(v) for k, v in zip(keys, row, strict=True)}


def set_opt_out(conn: sqlite3.Connection, phone: str, opted_out: bool) -> int:
    return int(
        conn.execute(
            "UPDATE residents SET opted_out = ? WHERE phone = ?", (int(opted_out), phone)
        ).rowcount
    )


def flag_unreachable(conn: sqlite3.Connection, phone: str, reason: str) -> None:
    """A number that cannot be reached is kept on the directory entry: no more attempts
    to it until it is fixed (a new phone on import, or `alertd residents clear`)."""
    if "unsubscribed" in reason:
        conn.execute("UPDATE residents SET opted_out = 1 WHERE phone = ?", (phone,))
    else:
        conn.execute("UPDATE residents SET undeliverable = ? WHERE phone = ?", (reason, phone))


def clear_undeliverable(conn: sqlite3.Connection, phone: str) -> int:
    with transaction(conn):
        return int(
            conn.execute(
                "UPDATE residents SET undeliverable = NULL WHERE phone = ? "
                "AND undeliverable IS NOT NULL",
                (phone,),
            ).rowcount
        )


def active_keys(
    conn: sqlite3.Connection, sites: Iterable[str], columns: str = ""
) -> list[tuple[Any, ...]]:
    """(site, building, unit, phone, *columns) of the residents living at `sites` now."""
    clause, args = among(conn, "site", sorted(sites))
    return conn.execute(
        f"SELECT site, building, unit, phone{columns} FROM residents WHERE moved_out IS NULL "
        f"AND {clause}",
        args,
    ).fetchall()


def import_residents(
    conn: sqlite3.Connection,
    residents: list[Resident],
    now: datetime,
    keep: frozenset[tuple[str, str, str]] = frozenset(),
    sites: frozenset[str] | None = None,
) -> tuple[int, int, int]:
    """Upsert in one transaction; returns (added, updated, moved out). Only residents of
    `sites` (unset: those of the file's rows) may be moved out, and nobody in the `keep`
    units (site, building, unit)."""
    scope = sites if sites is not None else {r.site for r in residents}
    with transaction(conn):
        before = set(active_keys(conn, scope))
        keys = set()
        for r in residents:
            keys.add(r.key)
            conn.execute(
                "INSERT INTO residents (site, building, floor, unit, name, phone, language, "
                "vulnerable, notes, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(site, building, unit, phone) DO UPDATE SET floor = excluded.floor, "
                "name = excluded.name, language = excluded.language, "
                "vulnerable = excluded.vulnerable, notes = excluded.notes, "
                "updated_at = excluded.updated_at, moved_out = NULL",
                (
                    r.site,
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
        gone = {k for k in before - keys if k[:3] not in keep}
        conn.executemany(
            "UPDATE residents SET moved_out = ? "
            "WHERE site = ? AND building = ? AND unit = ? AND phone = ?",
            [(iso(now), *k) for k in gone],
        )
    return len(keys - before), len(keys & before), len(gone)


def claim_residents(conn: sqlite3.Connection, site: str) -> int:
    """Residents stored before sites existed belong to the one configured site."""
    if postgres(conn):
        return 0  # PostgreSQL stores began with sites
    with transaction(conn):
        claimed = conn.execute("UPDATE OR IGNORE residents SET site = ? WHERE site = ''", (site,))
        return int(claimed.rowcount)


def counts_by_site(conn: sqlite3.Connection) -> dict[str, int]:
    """Residents living at each site now."""
    return dict(
        conn.execute(
            "SELECT site, count(*) FROM residents WHERE moved_out IS NULL GROUP BY site"
        ).fetchall()
    )
