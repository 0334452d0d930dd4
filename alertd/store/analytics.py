"""The statements behind the supervisor's figures (alertd/console/analytics.py): a
period's incidents, messages and devices, read in as few passes as the page needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alertd.store.sql import Conn, among, iso, postgres, seconds_between

#: a period longer than this reads most of the table: a scan beats the opened_at index
WIDE = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    building: str = ""
    #: the sites counted (None: every site); an account sees its own sites' alone
    sites: tuple[str, ...] | None = None


def _where(conn: Conn, period: Period) -> tuple[str, list[Any]]:
    wide = period.end - period.start > WIDE and not postgres(conn)  # its planner knows
    column = "+opened_at" if wide else "opened_at"
    clause = f"{column} >= ? AND {column} < ?"
    args: list[Any] = [iso(period.start), iso(period.end)]
    if period.building:
        clause += " AND building = ?"
        args.append(period.building)
    if period.sites is not None:
        sites, listed = among(conn, "site", period.sites)
        clause += f" AND {sites}"
        args += listed
    return clause, args


def incidents(conn: Conn, period: Period) -> Iterator[tuple[Any, ...]]:
    """(id, playbook, building, opened_at, acknowledged_at, resolved_at, drill, seconds to
    acknowledge, seconds to resolve, site) of the incidents opened in the period."""
    where, args = _where(conn, period)
    yield from conn.execute(
        "SELECT id, playbook, building, opened_at, acknowledged_at, resolved_at, drill, "
        f"{seconds_between(conn, 'opened_at', 'acknowledged_at')}, "
        f"{seconds_between(conn, 'opened_at', 'resolved_at')}, site "
        f"FROM incidents WHERE {where}",
        args,
    )


def first_on_site(conn: Conn, first: int, last: int) -> dict[int, str]:
    """When a technician was first on site, for the incidents numbered first to last."""
    return dict(
        conn.execute(
            "SELECT incident_id, min(at) FROM timeline WHERE type = 'on_site' "
            "AND incident_id BETWEEN ? AND ? GROUP BY incident_id",
            (first, last),
        ).fetchall()
    )


def messages(conn: Conn, period: Period) -> list[list[Any]]:
    """[channel, status, messages] of the period's incidents."""
    where, args = _where(conn, period)
    return [
        list(r)
        for r in conn.execute(
            "SELECT channel, status, count(*) FROM messages WHERE incident_id IN "
            f"(SELECT id FROM incidents WHERE {where}) GROUP BY 1, 2 ORDER BY 1, 2",
            args,
        )
    ]


def failed_by_site(conn: Conn, period: Period) -> list[tuple[str, int]]:
    where, args = _where(conn, period)
    return conn.execute(
        "SELECT i.site, count(*) FROM messages m JOIN incidents i ON i.id = m.incident_id "
        f"WHERE m.status IN ('failed', 'expired') AND i.id IN (SELECT id FROM incidents "
        f"WHERE {where}) GROUP BY 1",
        args,
    ).fetchall()


def noisy_devices(conn: Conn, period: Period, most: int = 10) -> list[list[Any]]:
    """[device, events] of the devices that sent most events in the period."""
    where, args = "", [iso(period.start), iso(period.end)]
    if period.building:
        where, args = where + " AND building = ?", [*args, period.building]
    if period.sites is not None:
        sites, listed = among(conn, "site", period.sites)
        where, args = where + f" AND {sites}", [*args, *listed]
    return [
        list(r)
        for r in conn.execute(
            f"SELECT device_id, count(*) FROM events WHERE received_at >= ? AND "
            f"received_at < ?{where} GROUP BY 1 ORDER BY 2 DESC LIMIT ?",
            [*args, most],
        )
    ]
