"""Events and devices, the ingest's aggregate, on either engine: what a batch commit
writes (events, device state and sightings, dead letters, receipts, counters), what the
daemon reads back at start, and what the commands list."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from alertd.events import Kind
from alertd.store.batch import Batch, DeadLetter, StateRow
from alertd.store.sql import Conn, dict_rows, insert, iso, parse_iso, transaction

DEAD_LETTER_PAYLOAD_MAX = 4096


def _newest(states: list[StateRow]) -> Iterable[StateRow]:
    """Each device condition's newest row of a batch: one statement may not touch a row
    twice on PostgreSQL (SQLite applied them in turn, to the same end)."""
    newest: dict[tuple[str, Kind], StateRow] = {}
    for s in states:
        held = newest.get((s.device_id, s.kind))
        if held is None or s.seq > held.seq:
            newest[(s.device_id, s.kind)] = s
    return newest.values()


class Events:
    """The statements of the events-and-devices aggregate, on `self.conn`."""

    conn: Conn

    def close(self) -> None:
        self.conn.close()

    # -- the write path ------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Write a batch in one transaction: all of it or, on a crash, none of it."""
        with transaction(self.conn):
            self.write(batch)

    def write(self, batch: Batch, *, decided: bool = False) -> None:
        """`commit` inside the caller's transaction; `decided`: the events' decisions are
        written in it too."""
        c = self.conn
        if batch.events:
            insert(
                c,
                "INSERT INTO events",
                [
                    {
                        "id": e.id,
                        "kind": e.kind.value,
                        "state": e.state.value,
                        "severity": str(e.severity),
                        "device_id": e.device_id,
                        "site": e.location.site,
                        "building": e.location.building,
                        "floor": e.location.floor,
                        "unit": e.location.unit,
                        "zone": e.location.zone,
                        "occurred_at": iso(e.occurred_at),
                        "received_at": iso(e.received_at),
                        "source": e.source,
                        "detail": e.detail,
                        "raw": e.raw,
                        "tags": json.dumps(e.tags, sort_keys=True) if e.tags else "{}",
                        "drill": int(e.drill),
                        "decided": int(decided),
                    }
                    for e in batch.events
                ],
            )
        if batch.states:
            insert(
                c,
                "INSERT INTO device_state",
                [
                    {
                        "device_id": s.device_id,
                        "kind": s.kind.value,
                        "active": int(s.active),
                        "since": iso(s.since),
                        "event_id": s.event_id,
                        "seq": s.seq,
                    }
                    for s in _newest(batch.states)
                ],
                "ON CONFLICT(device_id, kind) DO UPDATE SET active = excluded.active, "
                "since = excluded.since, event_id = excluded.event_id, seq = excluded.seq "
                "WHERE excluded.seq > device_state.seq",
            )
        if batch.seen:
            insert(
                c,
                "INSERT INTO device_seen",
                [
                    {
                        "device_id": d,
                        "last_seen": iso(at),
                        '"values"': json.dumps(v, sort_keys=True),
                    }
                    for d, (at, v) in batch.seen.items()
                ],
                "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, "
                '"values" = excluded."values" WHERE excluded.last_seen >= device_seen.last_seen',
            )
        if batch.dead_letters:
            insert(
                c,
                "INSERT INTO dead_letters",
                [_dead_row(d) for d in batch.dead_letters],
            )
        if batch.receipts:
            insert(
                c,
                "INSERT INTO receipts",
                [{"key": k, "digest": d} for k, d in batch.receipts.items()],
                "ON CONFLICT(key) DO UPDATE SET digest = excluded.digest",
            )
        if batch.counters:
            insert(
                c,
                "INSERT INTO counters",
                [{"name": n, "value": v} for n, v in batch.counters.items()],
                "ON CONFLICT(name) DO UPDATE SET value = counters.value + excluded.value",
            )

    # -- what the daemon needs at start-up -----------------------------------------------

    def states(self) -> dict[tuple[str, Kind], bool]:
        out = {}
        for device_id, kind, active in self.conn.execute(
            "SELECT device_id, kind, active FROM device_state"
        ):
            try:
                out[(device_id, Kind(kind))] = bool(active)
            except ValueError:
                continue  # a kind this version no longer knows
        return out

    def last_seen(self) -> dict[str, datetime]:
        return {
            d: parse_iso(at)
            for d, at in self.conn.execute("SELECT device_id, last_seen FROM device_seen")
        }

    def receipts(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, digest FROM receipts").fetchall())

    def max_event_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    # -- what the CLI reads --------------------------------------------------------------

    def device_values(self) -> dict[str, dict[str, Any]]:
        return {
            d: {"last_seen": at, "values": json.loads(v)}
            for d, at, v in self.conn.execute(
                'SELECT device_id, last_seen, "values" FROM device_seen'
            )
        }

    # -- what the commands list ----------------------------------------------------------

    def events(
        self,
        *,
        since: datetime | None = None,
        kinds: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        where, args = ["1 = 1"], list[Any]()
        if since is not None:
            where.append("received_at >= ?")
            args.append(iso(since))
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        cap = "" if limit is None else " LIMIT ?"
        cur = self.conn.execute(  # row by row: a year of events need not fit in memory
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id{cap}",
            [*args, *([] if limit is None else [limit])],
        )
        names = [c[0] for c in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def dead_letters(self, *, limit: int = 100) -> list[dict[str, Any]]:
        rows = dict_rows(self.conn, "SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?", [limit])
        return rows[::-1]

    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters").fetchall())


def _dead_row(d: DeadLetter) -> dict[str, Any]:
    return {
        "received_at": iso(d.received_at),
        "source": d.source,
        "topic": d.topic,
        "device_id": d.device_id,
        "reason": d.reason,
        "payload": d.payload[:DEAD_LETTER_PAYLOAD_MAX],
        "size": len(d.payload),
        "site": d.site,
    }


def keep_dead_letter(conn: Conn, letter: DeadLetter) -> None:
    """One refused input kept for inspection (`alertd dead-letters`), outside a batch:
    what a provider pushed that alertd cannot read."""
    with transaction(conn):
        insert(conn, "INSERT INTO dead_letters", [_dead_row(letter)])
