"""Several instances sharing the sites: each site owned by one instance at a time through
its lease (alertd/store/leases.py), the sites spread evenly, taken over within a lease
time when an owner dies, handed over without a gap when one joins or stops.

`share` decides from what one round saw; `Membership` runs the rounds: heartbeat, renew,
then take and give what `share` says. The owner of a site runs its decisions, timers and
delivery (`on_gain`); it stops at once when it loses the site (`on_loss`), and its writes
are fenced by the epoch in any case."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alertd.store import leases as db
from alertd.store.sql import StoreError

log = logging.getLogger("alertd.cluster")


@dataclass(frozen=True)
class Plan:
    take: list[str]
    #: (site, to whom)
    give: list[tuple[str, str]]


def targets(sites: int, live: Sequence[str], owned: dict[str, int] | None = None) -> dict[str, int]:
    """How many sites each live instance should own: as even as it divides, the odd ones
    to those that own most already (nothing moves for the remainder: one service lease
    and a standby stay as they are)."""
    have = owned or {}
    ordered = sorted(live, key=lambda name: (-have.get(name, 0), name))
    per, extra = divmod(sites, len(ordered))
    return {name: per + (i < extra) for i, name in enumerate(ordered)}


def share(me: str, sites: Sequence[str], live: Sequence[str], owners: dict[str, str]) -> Plan:
    """What `me` should take and give, given the live instances and who holds which site
    now (`owners`: held leases of live instances only). A free site is taken by an
    instance short of its share. A site is given only when none is free, to the instance
    furthest short of its share, so a joining instance is handed sites by the busiest."""
    if me not in live:
        live = [*live, me]
    count = dict.fromkeys(live, 0)
    for owner in owners.values():
        if owner in count:
            count[owner] += 1
    want = targets(len(sites), live, count)
    mine = sorted(s for s in sites if owners.get(s) == me)
    free = sorted((s for s in sites if s not in owners), key=lambda s: _spread(me, s))
    room = want[me] - len(mine)
    if free:  # the shares add up to every site: whoever is short of its share takes them
        return Plan(free[: max(room, 0)], [])
    give: list[tuple[str, str]] = []
    excess = list(reversed(mine))[: max(-room, 0)]
    short = sorted(
        ((want[i] - count[i], i) for i in live if i != me and count[i] < want[i]),
        key=lambda d: (-d[0], d[1]),
    )
    for deficit, to in short:
        while deficit and excess:
            give.append((excess.pop(0), to))
            deficit -= 1
    return Plan([], give)


def _spread(me: str, site: str) -> bytes:
    """Instances try free sites in different orders: fewer of them race for one."""
    return hashlib.sha256(f"{me}/{site}".encode()).digest()


class Membership:
    """One instance's part: a round every `lease_s / 5` seconds on its own connection."""

    def __init__(
        self,
        url: str,
        sites: Sequence[str],
        *,
        me: str | None = None,
        lease_s: float = 5.0,
        on_gain: Callable[[str, int], None] = lambda site, epoch: None,
        on_loss: Callable[[str], None] = lambda site: None,
    ) -> None:
        self.url = url
        self.sites = list(sites)
        self.me = me or db.instance_id(os.getpid())
        self.lease_s = lease_s
        self.on_gain = on_gain
        self.on_loss = on_loss
        #: site -> the epoch this instance holds it at
        self.held: dict[str, int] = {}
        #: what the last round saw: the live instances and every lease (health shows it)
        self.live: list[str] = []
        self.leases: list[db.Lease] = []
        #: why the last round failed ("" when it did not)
        self.error = ""
        #: when a lease was seen taken over (monotonic), the last hour's
        self.moves: list[float] = []
        self._takeovers: dict[str, int] = {}
        self._conn: Any = None
        self._renewed_at = 0.0
        self._abandoned: set[asyncio.Future[None]] = set()

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                application_name=f"alertd {self.me}",
                connect_timeout=max(2, int(self.lease_s)),
            )
            if asyncio.current_task() in self._abandoned:  # its round was given up
                await conn.close()
                raise psycopg.OperationalError("connected after its round was given up")
            self._conn = conn
        return self._conn

    async def round(self) -> None:
        """Heartbeat, renew, then take and give: one pass, given up (as a failure to
        reach the store) when the store has not answered within half a lease: a
        connection cut silently would wait for TCP's own timeout, a quarter of an hour."""
        import psycopg

        task = asyncio.ensure_future(self._round())
        done, _ = await asyncio.wait({task}, timeout=self.lease_s / 2)
        if task in done:
            return task.result()
        # left to end by itself (psycopg's cancellation of the query waits seconds more),
        # then its connection closed; one it makes meanwhile is never used
        task.cancel()
        self._abandoned.add(task)
        stuck, self._conn = self._conn, None  # whatever it was waiting for will never come
        task.add_done_callback(lambda _: self._closing(task, stuck))
        raise psycopg.OperationalError(f"no answer from the store within {self.lease_s / 2:g} s")

    def _closing(self, task: asyncio.Future[None], conn: Any) -> None:
        """An abandoned round ended: its connection is closed, on a task held until then."""
        closing = asyncio.ensure_future(self._close_quietly(conn))
        self._abandoned.add(closing)
        closing.add_done_callback(lambda _: self._abandoned.difference_update({task, closing}))

    @staticmethod
    async def _close_quietly(conn: Any) -> None:
        import psycopg

        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _round(self) -> None:
        import psycopg

        started = time.monotonic()
        conn = await self._connection()
        try:
            await db.heartbeat(conn, self.me, os.getpid())
        except psycopg.OperationalError:
            if not conn.closed:
                raise
            # ended while idle (a takeover ends a paused owner's sessions; a restarted
            # server): that is no store out of reach, a new connection says what changed
            self._conn = None
            conn = await self._connection()
            await db.heartbeat(conn, self.me, os.getpid())
        kept = await db.renew(conn, self.me, self.held, self.lease_s)
        self._renewed_at = started
        for site in [s for s in self.held if s not in kept]:
            self._lose(site, "its lease expired before it was renewed")
        live = self._live(await db.instances(conn))
        self.live, self.leases, self.error = live, await db.leases(conn), ""
        self._count_moves(started)
        owners: dict[str, str] = {}
        for lease in self.leases:
            if not lease.held or lease.owner not in {*live, self.me}:
                continue
            owners[lease.site] = lease.owner
            if lease.owner == self.me and lease.site not in self.held:
                self._gain(lease.site, lease.epoch, "handed over")
        plan = share(self.me, self.sites, live, owners)
        for site in plan.take:
            epoch = await db.acquire(conn, site, self.me, self.lease_s)
            if epoch is not None:
                self._gain(site, epoch, "taken")
        for site, to in plan.give:
            epoch = await db.hand_over(conn, site, self.me, self.held[site], to, self.lease_s)
            self._lose(site, f"handed over to {to} at epoch {epoch}" if epoch else "lost")

    def _count_moves(self, now: float) -> None:
        """Each takeover since the last round (an owner that stopped answering; a clean
        hand-over, as in a rolling restart, is not counted)."""
        for lease in self.leases:
            seen = self._takeovers.get(lease.site, lease.takeovers)
            self.moves += [now] * max(lease.takeovers - seen, 0)
            self._takeovers[lease.site] = lease.takeovers
        self.moves = [t for t in self.moves if now - t < 3600]

    def _live(self, everyone: list[db.Instance]) -> list[str]:
        """Instances heard from within half a lease (a round is a fifth of one): a dead
        one is no longer counted before its leases run out, so the others are short of
        their shares by its sites when they come free."""
        return [i.id for i in everyone if i.age_s < self.lease_s / 2 and not i.stopping]

    def _gain(self, site: str, epoch: int, how: str) -> None:
        self.held[site] = epoch
        log.info("site %s: %s to %s at epoch %d", site, how, self.me, epoch)
        self.on_gain(site, epoch)

    def _lose(self, site: str, why: str) -> None:
        if self.held.pop(site, None) is not None:
            log.warning("site %s: no longer owned by %s: %s", site, self.me, why)
            self.on_loss(site)

    def expire_unrenewed(self) -> None:
        """When the store cannot be reached: stop acting for every site once the lease
        could have run out (counted from before the last renewal was asked for)."""
        if self.held and time.monotonic() - self._renewed_at >= self.lease_s:
            for site in list(self.held):
                self._lose(site, "the store could not be reached to renew its lease")

    async def run(self) -> None:
        import psycopg

        while True:
            try:
                await self.round()
            except psycopg.Error as exc:
                self.error = str(exc).strip()
                log.error("cluster round failed: %s", self.error)
                await self.close()
            self.expire_unrenewed()
            await asyncio.sleep(self.lease_s / 5)

    async def stop(self) -> None:
        """Hand every site to the least loaded other live instance first (or release it
        when there is none), then leave; on a connection of its own made again when the
        one it had broke meanwhile (a primary that died and was replaced)."""
        import psycopg

        try:
            await self._stop()
        except psycopg.OperationalError:
            await self.close()
            await self._stop()

    async def _stop(self) -> None:
        conn = await self._connection()
        others = [i for i in self._live(await db.instances(conn)) if i != self.me]
        load = dict.fromkeys(others, 0)
        for lease in await db.leases(conn):
            if lease.held and lease.owner in load:
                load[lease.owner] += 1
        for site, epoch in list(self.held.items()):
            if load:
                to = min(load, key=lambda i: (load[i], i))
                if await db.hand_over(conn, site, self.me, epoch, to, self.lease_s):
                    load[to] += 1
            else:
                await db.release(conn, site, self.me, epoch)
            self._lose(site, "this instance stops")
        await db.leave(conn, self.me)
        await self.close()

    async def close(self) -> None:
        """Its connection closed (a broken one dropped); what it holds runs out with its
        leases."""
        conn, self._conn = self._conn, None
        await self._close_quietly(conn)


#: the lease of the whole service: one active instance, the others standing by
SERVICE = "*"


async def serve(member: Membership, stop: asyncio.Event) -> bool:
    """This instance's turn at the service lease (`member`'s one site, SERVICE): True
    once it holds it (a standby waits here while another instance holds it); False when
    `stop` is set first. The store is brought up to date first (the instances that start
    together migrate once)."""
    import psycopg

    from alertd.store.postgres import PgStore

    url, lease_s = member.url, member.lease_s
    migrated = said = False
    while SERVICE not in member.held:
        try:
            if not migrated:
                await asyncio.to_thread(lambda: PgStore(url).close())
                migrated = True
            await member.round()
        except (psycopg.Error, StoreError) as exc:  # a round's, or the migration's
            member.error = str(exc).strip()
            log.error("cannot reach the store for the service lease: %s", member.error)
            await member.close()
        else:
            if SERVICE not in member.held and not said:
                log.warning("standing by: another instance holds the service (alertd cluster)")
                said = True
        if SERVICE not in member.held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), lease_s / 5)
            if stop.is_set():
                await member.close()
                return False
    log.info("active: %s holds the service at epoch %d", member.me, member.held[SERVICE])
    return True
