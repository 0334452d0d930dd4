"""Sites owned by one instance at a time (a lease with an epoch on a real PostgreSQL): spread
evenly, taken over when an owner stops answering, handed over without a gap, and an owner
that was paused past its lease can no longer write for the site it lost."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alertd.cluster import SERVICE, Membership, Plan, share, targets
from alertd.health import cluster_part
from alertd.store import leases as db
from alertd.store.postgres import PgStore
from tests.helpers import alertd

SITES = [f"site-{n:02d}" for n in range(30)]


# -- the plan (no store) -----------------------------------------------------------------


def test_thirty_sites_are_spread_ten_each_over_three_instances() -> None:
    assert targets(30, ["c", "a", "b"]) == {"a": 10, "b": 10, "c": 10}
    assert targets(31, ["c", "a", "b"]) == {"a": 11, "b": 10, "c": 10}
    owners: dict[str, str] = {}
    for me in ["a", "b", "c"]:  # each takes its share of what is free, in turn
        for site in share(me, SITES, ["a", "b", "c"], owners).take:
            owners[site] = me
    assert sorted(owners) == SITES
    assert sorted(list(owners.values()).count(i) for i in "abc") == [10, 10, 10]


def test_a_joining_instance_is_handed_sites_by_the_busiest_and_takes_none_itself() -> None:
    owners = {s: ("a" if i < 15 else "b") for i, s in enumerate(SITES)}
    assert share("c", SITES, ["a", "b", "c"], owners).take == []
    given = share("a", SITES, ["a", "b", "c"], owners).give
    assert len(given) == 5
    assert {to for _, to in given} == {"c"}
    assert all(owners[s] == "a" for s, _ in given)


def test_the_odd_site_stays_with_its_owner_a_standby_takes_nothing() -> None:
    """One service lease and two instances: the owner keeps it; nothing moves."""
    assert targets(1, ["a", "b"], {"b": 1}) == {"b": 1, "a": 0}
    assert share("b", ["*"], ["a", "b"], {"*": "b"}) == Plan([], [])
    assert share("a", ["*"], ["a", "b"], {"*": "b"}) == Plan([], [])
    assert share("a", ["*"], ["a", "b"], {}) == Plan(["*"], [])  # free: taken


def test_a_free_site_goes_to_the_instance_short_of_its_share() -> None:
    owners = {s: ("a" if i < 15 else "b") for i, s in enumerate(SITES) if i != 29}
    assert share("a", SITES, ["a", "b"], owners) == Plan([], [])
    assert share("b", SITES, ["a", "b"], owners) == Plan(["site-29"], [])


# -- leases on PostgreSQL ----------------------------------------------------------------


@pytest.fixture
def url(pg_url: str) -> str:
    PgStore(pg_url).close()
    return pg_url


@pytest.fixture
async def member(url: str) -> AsyncIterator[Callable[..., Membership]]:
    """Instances on the test's store; their connections closed at the end."""
    made: list[Membership] = []

    def make(me: str, sites: list[str] = SITES, **kw: Any) -> Membership:
        made.append(Membership(url, sites, me=me, **kw))
        return made[-1]

    yield make
    for m in made:
        await m.close()


async def _conn(url: str) -> psycopg.AsyncConnection[object]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _owners(url: str) -> dict[str, str | None]:
    async with await _conn(url) as conn:
        return {lease.site: lease.owner for lease in await db.leases(conn) if lease.held}


async def _settle(*members: Membership, rounds: int = 6) -> None:
    for _ in range(rounds):
        for m in members:
            await m.round()


async def test_three_instances_share_thirty_sites_and_a_joiner_gets_its_share_with_no_gap(
    url: str, member: Callable[..., Membership]
) -> None:
    a, b = (member(n, lease_s=30) for n in ("a", "b"))
    await _settle(a, b)
    assert sorted(map(len, (a.held, b.held))) == [15, 15]
    before = sum(lease.handovers for lease in await _leases(url))
    c = member("c", lease_s=30)
    for _ in range(4):
        for m in (c, a, b):
            await m.round()
            owners = await _owners(url)
            assert sorted(owners) == SITES, "a site without an owner during the hand-over"
    assert sorted(map(len, (a.held, b.held, c.held))) == [10, 10, 10]
    leases = await _leases(url)
    assert sum(lease.handovers for lease in leases) - before == 10  # no more than it needs
    assert sum(lease.takeovers for lease in leases) == 0
    assert set(a.held) | set(b.held) | set(c.held) == set(SITES)
    for m in (a, b, c):
        await m.stop()


async def _leases(url: str) -> list[db.Lease]:
    async with await _conn(url) as conn:
        return await db.leases(conn)


async def test_an_instance_stopping_cleanly_hands_its_sites_over_first(
    url: str, member: Callable[..., Membership]
) -> None:
    lost: list[str] = []
    a, b = member("a", lease_s=30), member("b", lease_s=30)
    c = member("c", lease_s=30, on_loss=lost.append)
    await _settle(a, b, c)
    theirs = set(c.held)
    await c.stop()
    assert sorted(lost) == sorted(theirs)
    owners = await _owners(url)
    assert sorted(owners) == SITES
    assert {owners[s] for s in theirs} <= {"a", "b"}
    await _settle(a, b, rounds=2)
    assert sorted(map(len, (a.held, b.held))) == [15, 15]
    async with await _conn(url) as conn:
        assert [i.id for i in await db.instances(conn)] == ["a", "b"]


async def test_an_owner_paused_past_its_lease_loses_its_sites_and_can_write_nothing(
    url: str, member: Callable[..., Membership]
) -> None:
    """`a` stops answering (a long pause, SIGSTOP, a network cut): `b` takes its sites
    over at a higher epoch once the lease has run out; `a`'s write for a site it lost
    is refused in its own transaction and leaves nothing; back, `a` hears it lost them
    and carries on as an ordinary instance."""
    gained: list[tuple[str, int]] = []
    lost: list[str] = []
    a = member("a", SITES[:4], lease_s=0.6, on_loss=lost.append)
    b = member("b", SITES[:4], lease_s=0.6, on_gain=lambda s, e: gained.append((s, e)))
    await a.round()
    assert sorted(a.held) == SITES[:4]
    site, epoch = SITES[0], a.held[SITES[0]]

    deadline = time.monotonic() + 10
    while len(b.held) < 4:  # a is paused: only b's rounds run, until a's leases run out
        assert time.monotonic() < deadline, "b never took a's sites over"
        await b.round()
        await asyncio.sleep(0.05)
    assert (site, epoch + 1) in gained
    assert {lease.takeovers for lease in await _leases(url)} == {1}

    async with await _conn(url) as conn:
        with pytest.raises(db.Fenced, match=f"no longer owns site {site} at epoch {epoch}"):
            await _write_for(conn, site, "a", epoch)
        found = await conn.execute("SELECT to_regclass('written_by_a')")
        assert await found.fetchone() == (None,)

    await a.round()  # a is back
    assert sorted(lost) == SITES[:4]
    assert a.held == {}
    await _settle(a, b, rounds=3)
    assert sorted(map(len, (a.held, b.held))) == [2, 2]


async def _write_for(conn: psycopg.AsyncConnection[object], site: str, me: str, epoch: int) -> None:
    """A write an owner makes for its site: fenced in its own transaction."""
    async with conn.transaction():
        await db.fence(conn, site, me, epoch)
        await conn.execute("CREATE TABLE written_by_a (x int)")


async def test_a_takeover_waits_for_the_owner_s_write_in_flight(url: str) -> None:
    """The fence holds the lease row until the owner's transaction ends: a takeover
    that comes meanwhile waits for the commit instead of acting beside it."""
    async with await _conn(url) as owner:
        epoch = await db.acquire(owner, "site-00", "a", 0.3)
        assert epoch == 1
        async with owner.transaction():
            await db.fence(owner, "site-00", "a", epoch)
            pid = owner.info.backend_pid
            takeover = asyncio.create_task(_acquire_when_expired(url, "site-00", "b"))
            async with await _conn(url) as watch:
                while True:  # the other instance's statement waits on the owner's lock
                    cur = await watch.execute(
                        "SELECT count(*) FROM pg_locks w JOIN pg_locks h "
                        "ON h.locktype = w.locktype AND h.database IS NOT DISTINCT FROM w.database "
                        "AND h.relation IS NOT DISTINCT FROM w.relation "
                        "AND h.transactionid IS NOT DISTINCT FROM w.transactionid "
                        "WHERE NOT w.granted AND h.granted AND h.pid = %s",
                        (pid,),
                    )
                    row = await cur.fetchone()
                    if row and row[0]:
                        break
                    assert not takeover.done(), "the takeover did not wait for the owner"
                    await asyncio.sleep(0.02)
            assert not takeover.done()
        assert await takeover == 2


async def _acquire_when_expired(url: str, site: str, me: str) -> int:
    async with await _conn(url) as conn:
        while True:
            epoch = await db.acquire(conn, site, me, 5)
            if epoch is not None:
                return epoch
            await asyncio.sleep(0.02)


async def test_an_owner_that_cannot_reach_the_store_stops_acting_once_its_lease_could_end(
    member: Callable[..., Membership],
) -> None:
    lost: list[str] = []
    a = member("a", SITES[:3], lease_s=0.3, on_loss=lost.append)
    await a.round()
    assert len(a.held) == 3
    a.expire_unrenewed()
    assert lost == []  # still within its lease
    deadline = time.monotonic() + 5
    while not lost:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        a.expire_unrenewed()  # what `run` does after a round that failed
    assert sorted(lost) == SITES[:3]
    assert a.held == {}


async def test_alertd_cluster_shows_instances_their_sites_and_a_site_nobody_owns(
    tmp_path: Path, url: str, member: Callable[..., Membership]
) -> None:
    a = member("alpha", ["north", "south"], lease_s=30)
    await a.round()
    (tmp_path / "alertd.yaml").write_text(
        f"sites: {{north: {{}}, south: {{}}, east: {{}}}}\nstorage: {{url: '{url}'}}\n"
    )
    done = await asyncio.to_thread(alertd, "cluster", "--config", str(tmp_path / "alertd.yaml"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"^alpha\s+\d+\s+\d+\.\ds ago\s+2: north south$", done.stdout, re.M)
    assert re.search(r"^north\s+alpha\s+1\s+\d+\.\ds\s+0 0$", done.stdout, re.M)
    assert "no owner: east" in done.stderr
    one_box = await asyncio.to_thread(alertd, "cluster", "--config", str(tmp_path / "x.yaml"))
    assert one_box.returncode == 2


async def test_a_service_that_keeps_changing_hands_is_degraded_and_a_lone_one_too(
    member: Callable[..., Membership],
) -> None:
    """Two instances that pause in turn (each past its lease): the service moves at each
    pause; the third move within the hour makes health degraded, as an active instance
    with nobody standing by is."""
    a, b = (member(n, [SERVICE], lease_s=0.4) for n in ("a", "b"))
    await a.round()
    assert cluster_part(a).state == "degraded"  # active, and nobody stands by
    assert "no instance stands by" in cluster_part(a).detail
    await _settle(a, b, rounds=2)
    assert cluster_part(a).state == "ok"
    assert cluster_part(b).detail.startswith("standing by: a is active")
    holder, waiter = a, b
    for moves in range(1, 4):  # the holder pauses: only the other's rounds run
        deadline = time.monotonic() + 10
        while SERVICE not in waiter.held:
            assert time.monotonic() < deadline, "the service was never taken over"
            await waiter.round()
            await asyncio.sleep(0.05)
        await holder.round()  # back: it hears it lost the service, and sees it moved
        assert len(holder.moves) == moves
        holder, waiter = waiter, holder
    part = cluster_part(waiter)
    assert part.state == "degraded"
    assert "taken over 3 times in the last hour" in part.detail


async def test_a_takeover_ends_the_dead_owners_session_left_holding_the_lease_row(
    url: str, member: Callable[..., Membership]
) -> None:
    """An owner cut off in the middle of a fenced write: its session keeps the lease row
    (FOR SHARE) and PostgreSQL does not end it (a session stopped between a pipeline's
    statements is not idle in a transaction). The next owner ends it and takes over
    within a few rounds, rather than waiting for TCP to give up on it."""
    a, b = member("a", [SERVICE], lease_s=0.5), member("b", [SERVICE], lease_s=0.5)
    await a.round()
    frozen = await psycopg.AsyncConnection.connect(
        url, autocommit=True, application_name="alertd a"
    )
    await frozen.execute("BEGIN")
    await db.fence(frozen, SERVICE, "a", a.held[SERVICE])  # and nothing more, ever
    other = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="alertd c")
    tries = 0
    while SERVICE not in b.held:  # a is gone: only b's rounds run, at their cadence
        tries += 1
        assert tries <= 40, "the service was never taken over"
        # its acquire may wait for the row past half a lease: that round fails
        with contextlib.suppress(psycopg.OperationalError):
            await b.round()
        await asyncio.sleep(0.1)
    assert b.held[SERVICE] == 2
    with pytest.raises(psycopg.OperationalError):  # a's session was ended ...
        await frozen.execute("SELECT 1")
    await frozen.close()
    await other.execute("SELECT 1")  # ... and nobody else's
    await other.close()
