"""Which instance owns each site: a lease row with an expiry and an epoch (a fencing token
that grows at every change of owner), on PostgreSQL.

Not a session advisory lock: PgBouncer in transaction mode drops those, and a killed
backend frees one while its client still believes it holds it. Every time is the database
server's clock (`clock_timestamp()`), so the instances' own clocks never disagree about an
expiry. An owner's writes for a site call `fence` in their own transaction: it holds the
lease row (FOR SHARE) until they commit, so a takeover waits for them, and a write from an
owner that was paused past its lease (and lost it) fails before it changes anything."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.AsyncConnection[Any]


log = logging.getLogger("alertd.cluster")


class Fenced(RuntimeError):
    """This instance no longer holds the site's lease at the epoch it acts under."""


@dataclass(frozen=True)
class Lease:
    site: str
    owner: str | None
    epoch: int
    #: seconds left (negative: expired) by the database's clock
    left_s: float
    acquired_at: datetime
    takeovers: int
    handovers: int

    @property
    def held(self) -> bool:
        return self.owner is not None and self.left_s > 0


@dataclass(frozen=True)
class Instance:
    id: str
    host: str
    pid: int
    started_at: datetime
    #: seconds since it was last heard from
    age_s: float
    stopping: bool


def instance_id(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


async def heartbeat(conn: Conn, me: str, pid: int) -> None:
    """`me` is alive: what the others count when they share the sites."""
    await conn.execute(
        "INSERT INTO instances (id, host, pid, started_at, seen_at) "
        "VALUES (%s, %s, %s, clock_timestamp(), clock_timestamp()) "
        "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, stopping = false",
        (me, socket.gethostname(), pid),
    )


async def instances(conn: Conn) -> list[Instance]:
    cur = await conn.execute(
        "SELECT id, host, pid, started_at, "
        "extract(epoch FROM clock_timestamp() - seen_at)::float8, stopping "
        "FROM instances ORDER BY id"
    )
    return [Instance(*row) for row in await cur.fetchall()]


async def leases(conn: Conn) -> list[Lease]:
    cur = await conn.execute(
        "SELECT site, owner, epoch, extract(epoch FROM expires_at - clock_timestamp())::float8, "
        "acquired_at, takeovers, handovers FROM site_leases ORDER BY site"
    )
    return [Lease(*row) for row in await cur.fetchall()]


async def end_sessions(conn: Conn, site: str, me: str) -> int:
    """The sessions of the instance whose lease on `site` ran out, ended (those of alertd's
    role, named after it: its lease rounds and its writer). One cut off in the middle of a
    fenced write holds the lease row, and would keep this takeover waiting until TCP gave
    up on it, hours later: PostgreSQL ends a session idle inside a transaction
    (`idle_in_transaction_session_timeout`), not one stopped between the statements of a
    pipeline, which it counts as active. Its writes were fenced already; this frees the
    rows they locked."""
    cur = await conn.execute(
        "SELECT count(pg_terminate_backend(a.pid)) FROM site_leases AS l "
        "JOIN pg_stat_activity AS a ON a.application_name = left('alertd ' || l.owner, 63) "
        "WHERE l.site = %s AND l.owner <> %s AND l.expires_at <= clock_timestamp() "
        "AND a.datname = current_database() AND a.pid <> pg_backend_pid() "
        "AND pg_has_role(a.usesysid, 'MEMBER')",
        (site, me),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def acquire(conn: Conn, site: str, me: str, lease_s: float) -> int | None:
    """The site's lease for `me` if nobody holds it (never held, released, or expired):
    its new epoch, or None when another instance holds it. The sessions of an owner whose
    lease ran out are ended first (`end_sessions`)."""
    ended = await end_sessions(conn, site, me)
    if ended:
        log.warning("site %s: ended %d session(s) of its owner, whose lease ran out", site, ended)
    cur = await conn.execute(
        "INSERT INTO site_leases AS l (site, owner, epoch, expires_at, acquired_at) "
        "VALUES (%s, %s, 1, clock_timestamp() + make_interval(secs => %s), clock_timestamp()) "
        "ON CONFLICT (site) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1, "
        "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, "
        "takeovers = l.takeovers + (l.owner IS NOT NULL)::int "
        "WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp() "
        "RETURNING epoch",
        (site, me, lease_s),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def renew(conn: Conn, me: str, held: dict[str, int], lease_s: float) -> dict[str, int]:
    """Every lease `me` still holds at its epoch, extended; a lease that expired meanwhile
    is not renewed (another instance may have acted on it): acquire it again."""
    if not held:
        return {}
    cur = await conn.execute(
        "UPDATE site_leases AS l SET expires_at = clock_timestamp() + make_interval(secs => %s) "
        "FROM unnest(%s::text[], %s::bigint[]) AS mine(site, epoch) "
        "WHERE l.site = mine.site AND l.epoch = mine.epoch AND l.owner = %s "
        "AND l.expires_at > clock_timestamp() RETURNING l.site, l.epoch",
        (lease_s, list(held), list(held.values()), me),
    )
    return {site: int(epoch) for site, epoch in await cur.fetchall()}


async def hand_over(
    conn: Conn, site: str, me: str, epoch: int, to: str, lease_s: float
) -> int | None:
    """The site's lease passed from `me` to `to` in one statement, so the site is never
    without an owner; its new epoch, or None if `me` no longer held it."""
    cur = await conn.execute(
        "UPDATE site_leases SET owner = %s, epoch = epoch + 1, acquired_at = clock_timestamp(), "
        "expires_at = clock_timestamp() + make_interval(secs => %s), handovers = handovers + 1 "
        "WHERE site = %s AND owner = %s AND epoch = %s AND expires_at > clock_timestamp() "
        "RETURNING epoch",
        (to, lease_s, site, me, epoch),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def release(conn: Conn, site: str, me: str, epoch: int) -> None:
    await conn.execute(
        "UPDATE site_leases SET owner = NULL, expires_at = clock_timestamp() "
        "WHERE site = %s AND owner = %s AND epoch = %s",
        (site, me, epoch),
    )


async def leave(conn: Conn, me: str) -> None:
    """`me` stops: the others stop counting it at once."""
    await conn.execute("DELETE FROM instances WHERE id = %s", (me,))


async def fence(conn: Conn, site: str, me: str, epoch: int) -> None:
    """Inside the caller's transaction: `me` holds the site at `epoch`, and keeps holding
    it until the transaction ends (a takeover waits for the commit); Fenced otherwise."""
    cur = await conn.execute(
        "SELECT 1 FROM site_leases WHERE site = %s AND owner = %s AND epoch = %s "
        "AND expires_at > clock_timestamp() FOR SHARE",
        (site, me, epoch),
    )
    if await cur.fetchone() is None:
        raise Fenced(f"{me} no longer owns site {site} at epoch {epoch}")
