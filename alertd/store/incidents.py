"""Incidents, their timeline, the outbox, timers and staff commands in SQLite.

Every decision is written in one transaction: the incident change, its timeline lines,
the outbox rows and the timers, with the event, timer or command that caused it marked
done. A crash loses no decision half-made, and none is made twice."""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from alertd.engine.state import LASTING_TIMERS, Decision, Incident, Run, Timer, run_at
from alertd.events import Event, Kind, Location, Severity, State, severity_of
from alertd.store.sql import among, dict_rows, insert, iso, parse_iso, transaction

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """What caused a decision, marked done in the same transaction."""

    events: tuple[int, ...] = ()
    timer: int | None = None
    command: tuple[int, str, str] | None = None  # id, state, result


def save(
    conn: sqlite3.Connection,
    decisions: Iterable[Decision],
    now: datetime,
    done: Done,
    then: Callable[[sqlite3.Connection], T] | None = None,
    *,
    first: Callable[[sqlite3.Connection], object] | None = None,
) -> tuple[list[tuple[int, Timer]], T | None]:
    """Write decisions in one transaction; returns the new timers with their ids, and
    what `then` returned. `first` and `then` write in the same transaction, before and
    after them: the events decided (ingest's batch), and delivery."""
    with transaction(conn):
        if first is not None:
            first(conn)
        timers = _write(conn, decisions, now, done)
        after = then(conn) if then is not None else None
    return timers, after


def _write(
    conn: sqlite3.Connection, decisions: Iterable[Decision], now: datetime, done: Done
) -> list[tuple[int, Timer]]:
    """Each table's rows in one statement for all the decisions (see `values`); timers one
    by one, in order with their cancellations (few, and each needs its id)."""
    timers: list[tuple[int, Timer]] = []
    at = iso(now)
    incidents: dict[int, dict[str, Any]] = {}
    timeline: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for d in decisions:
        if d.incident is None:
            continue
        i = d.incident
        incidents[i.id] = _row(i)  # the last decision on an incident is what it is now
        if d.cancel_timers:
            lasting = sorted(LASTING_TIMERS)
            conn.execute(
                "UPDATE timers SET state = 'cancelled' WHERE incident_id = ? "
                f"AND state = 'pending' AND kind NOT IN ({','.join('?' * len(lasting))})",
                (i.id, *lasting),
            )
        for t in d.timers:
            (number,) = conn.execute(
                "INSERT INTO timers (incident_id, due_at, kind, step) VALUES (?,?,?,?) "
                "RETURNING id",
                (t.incident, iso(t.due_at), t.kind, t.step),
            ).fetchone()
            timers.append((int(number), t))
        timeline += [
            {
                "incident_id": i.id,
                "at": at,
                "type": e.type,
                "actor": e.actor,
                "text": e.text,
                "event_id": e.event_id,
            }
            for e in d.entries
        ]
        outbox += [
            {
                "incident_id": i.id,
                "created_at": at,
                "channel": a.channel,
                "target": a.target,
                "texts": json.dumps(a.texts, ensure_ascii=False),
                "vulnerable_first": int(a.vulnerable_first),
                "step": a.step,
                "vulnerable_list": int(a.vulnerable_list),
                "drill": int(i.drill),
                "template": a.template,
                "params": json.dumps(a.values, ensure_ascii=False) if a.values else "",
            }
            for a in d.actions
        ]
    insert(conn, "INSERT OR REPLACE INTO incidents", list(incidents.values()))
    insert(conn, "INSERT INTO timeline", timeline)
    insert(conn, "INSERT INTO outbox", outbox)
    if done.events:
        decided, args = among(conn, "id", done.events)
        conn.execute(f"UPDATE events SET decided = 1 WHERE {decided}", args)
    if done.timer is not None:
        conn.execute(
            "UPDATE timers SET state = 'fired' WHERE id = ? AND state = 'pending'",
            (done.timer,),
        )
    if done.command is not None:
        cid, state, result = done.command
        conn.execute("UPDATE commands SET state = ?, result = ? WHERE id = ?", (state, result, cid))
    return timers


def _row(i: Incident) -> dict[str, Any]:
    loc = i.location
    return {
        "id": i.id,
        "playbook": i.playbook,
        "key": i.key,
        "status": i.status,
        "severity": str(i.severity),
        "site": loc.site,
        "building": loc.building,
        "floor": loc.floor,
        "unit": loc.unit,
        "zone": loc.zone,
        "title": i.title,
        "opened_at": iso(i.opened_at),
        "last_event_at": iso(i.last_event_at),
        "acknowledged_at": _opt(i.acknowledged_at),
        "resolved_at": _opt(i.resolved_at),
        "expected_restore_at": _opt(i.expected_restore_at),
        "active": json.dumps(i.active),
        "units": json.dumps(i.units),
        "run": _run_json(i.run),
        "drill": int(i.drill),
        "origin": json.dumps(_flat(i.origin), ensure_ascii=False),
        "seen": json.dumps(i.seen, ensure_ascii=False),
        "cleared_at": _opt(i.cleared_at),
        "all_clear_sent": int(i.all_clear_sent),
        "acknowledged_by": i.acknowledged_by,
    }


_FIELDS: dict[type, tuple[str, ...]] = {}


@functools.lru_cache(maxsize=256)
def _run_json(run: Run) -> str:
    """Few runs differ (a sequence, a step, a wait): each is encoded once."""
    return json.dumps(_flat(run))


def _flat(value: Any) -> dict[str, Any]:
    """A flat dataclass as a dict: what `dataclasses.asdict` gives, without its deep copy
    (a cost on every decision)."""
    names = _FIELDS.get(type(value))
    if names is None:
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    return {name: getattr(value, name) for name in names}


def _opt(at: datetime | None) -> str | None:
    return iso(at) if at is not None else None


def _at(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def incident_from_row(row: dict[str, Any]) -> Incident:
    return Incident(
        id=row["id"],
        playbook=row["playbook"],
        key=row["key"],
        status=row["status"],
        severity=Severity[str(row["severity"]).upper()],
        location=Location(row["site"], row["building"], row["floor"], row["unit"], row["zone"]),
        title=row["title"],
        opened_at=parse_iso(row["opened_at"]),
        last_event_at=parse_iso(row["last_event_at"]),
        active=tuple(sorted(json.loads(row["active"]))),
        units=tuple(sorted(json.loads(row["units"]))),
        run=run_at(**json.loads(row["run"])),
        drill=bool(row["drill"]),
        acknowledged_at=_at(row["acknowledged_at"]),
        resolved_at=_at(row["resolved_at"]),
        expected_restore_at=_at(row["expected_restore_at"]),
        origin=Location(**json.loads(row["origin"])),
        seen=tuple(sorted(json.loads(row["seen"]))),
        cleared_at=_at(row["cleared_at"]),
        all_clear_sent=bool(row["all_clear_sent"]),
        acknowledged_by=row["acknowledged_by"],
    )


def incident_status(conn: sqlite3.Connection, incident_id: int) -> str | None:
    row = conn.execute("SELECT status FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return str(row[0]) if row else None


def live_incidents(conn: sqlite3.Connection, now: datetime, keep: timedelta) -> list[Incident]:
    """Incidents a new event can still join: not closed, and not resolved long ago; and
    any, closed too, with a detector still in alarm, whose restore must find it."""
    rows = dict_rows(
        conn,
        "SELECT * FROM incidents WHERE (status != 'closed' AND "
        "(resolved_at IS NULL OR resolved_at >= ?)) OR active != '[]'",
        (iso(now - keep),),
    )
    return [incident_from_row(r) for r in rows]


def pending_timers(conn: sqlite3.Connection) -> list[tuple[int, Timer]]:
    return [
        (tid, Timer(incident, parse_iso(due), kind, step))
        for tid, incident, due, kind, step in conn.execute(
            "SELECT id, incident_id, due_at, kind, step FROM timers WHERE state = 'pending' "
            "ORDER BY due_at"
        )
    ]


def undecided_events(conn: sqlite3.Connection) -> list[Event]:
    """Events committed but not yet decided (alertd stopped in between)."""
    rows = dict_rows(conn, "SELECT * FROM events WHERE decided = 0 ORDER BY id")
    return [event_from_row(row) for row in rows]


def event_from_row(row: dict[str, Any]) -> Event:
    state = State(row["state"])
    kind = Kind(row["kind"])
    return Event(
        id=row["id"],
        kind=kind,
        state=state,
        severity=severity_of(kind, state),
        device_id=row["device_id"],
        location=Location(row["site"], row["building"], row["floor"], row["unit"], row["zone"]),
        occurred_at=parse_iso(row["occurred_at"]),
        received_at=parse_iso(row["received_at"]),
        source=row["source"],
        raw=row.get("raw", ""),
        detail=row.get("detail", ""),
        tags=json.loads(row.get("tags") or "{}"),
        drill=bool(row.get("drill", 0)),
    )


def max_incident_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM incidents").fetchone()[0])


def pending_commands(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return dict_rows(
        conn,
        "SELECT id, command, incident_id, actor, text, args FROM commands "
        "WHERE state = 'pending' ORDER BY id",
    )


def add_command(
    conn: sqlite3.Connection,
    command: str,
    incident: int | None,
    actor: str,
    text: str,
    args: dict[str, Any],
    now: datetime,
) -> int:
    (number,) = conn.execute(
        "INSERT INTO commands (created_at, command, incident_id, actor, text, args) "
        "VALUES (?,?,?,?,?,?) RETURNING id",
        (iso(now), command, incident, actor, text, json.dumps(args, ensure_ascii=False)),
    ).fetchone()
    return int(number)


def command_outcome(conn: sqlite3.Connection, command_id: int) -> tuple[str, str]:
    """(state, result) of a staff command: pending until the daemon has applied it."""
    state, result = conn.execute(
        "SELECT state, result FROM commands WHERE id = ?", (command_id,)
    ).fetchone()
    return str(state), str(result)


def note(
    conn: sqlite3.Connection, incident_id: int, at: datetime, type: str, actor: str, text: str
) -> None:
    """One line on an incident's timeline."""
    conn.execute(
        "INSERT INTO timeline (incident_id, at, type, actor, text) VALUES (?,?,?,?,?)",
        (incident_id, iso(at), type, actor, text),
    )


def timeline_count(conn: sqlite3.Connection, incident_id: int, type: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM timeline WHERE incident_id = ? AND type = ?", (incident_id, type)
    ).fetchone()
    return int(row[0])


# -- what people read: the console, the command line -------------------------------------


def find(conn: sqlite3.Connection, incident_id: int) -> dict[str, Any] | None:
    """The incident's row as stored."""
    found = dict_rows(conn, "SELECT * FROM incidents WHERE id = ?", (incident_id,))
    return found[0] if found else None


def site_of(conn: sqlite3.Connection, incident_id: int) -> str | None:
    row = conn.execute("SELECT site FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return str(row[0]) if row else None


def listing(
    conn: sqlite3.Connection, *, status: str | None = None, site: str | None = None
) -> list[dict[str, Any]]:
    where, args = "", list[Any]()
    if status is not None:
        where, args = where + " AND status = ?", [*args, status]
    if site is not None:
        where, args = where + " AND site = ?", [*args, site]
    return dict_rows(conn, f"SELECT * FROM incidents WHERE true {where} ORDER BY id", args)


def unclosed_by_site(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT site, count(*) FROM incidents WHERE status != 'closed' GROUP BY site"
        ).fetchall()
    )


#: `active`: the detectors in alarm, so that one joining or clearing changes the board
#: (its pictures of the buildings are drawn again)
BOARD = (
    "id, status, severity, title, site, building, floor, unit, zone, opened_at, "
    "acknowledged_at, acknowledged_by, drill, playbook, active"
)


def on_board(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Open and acknowledged incidents (held 0), and those resolved or closed while a
    detector is still in alarm (held 1)."""
    return dict_rows(
        conn,
        f"SELECT {BOARD}, 0 AS held FROM incidents WHERE status IN ('open', 'acknowledged') "
        f"UNION ALL SELECT {BOARD}, 1 FROM incidents WHERE active != '[]' "
        "AND status IN ('resolved', 'closed')",
    )


def version(conn: sqlite3.Connection, incident_id: int) -> tuple[Any, ...] | None:
    """What changes when anything a person did or said about the incident changes: its
    state and its newest timeline line other than a delivery receipt."""
    row = conn.execute(
        "SELECT status, acknowledged_at, resolved_at, (SELECT max(id) FROM timeline "
        "WHERE incident_id = ? AND type != 'delivery') FROM incidents WHERE id = ?",
        (incident_id, incident_id),
    ).fetchone()
    return tuple(row) if row else None


def timeline(
    conn: sqlite3.Connection,
    incident_id: int,
    *,
    types: tuple[str, ...] | None = None,
    receipts: bool = True,
) -> list[dict[str, Any]]:
    """An incident's timeline in order; `types`: those lines only; `receipts`: with the
    delivery receipts (one per message)."""
    where, args = "", list[Any]([incident_id])
    if types is not None:
        where += f" AND type IN ({','.join('?' * len(types))})"
        args += types
    if not receipts:
        where += " AND type != 'delivery'"
    return dict_rows(
        conn,
        "SELECT id, incident_id, at, type, actor, text, event_id FROM timeline "
        f"WHERE incident_id = ?{where} ORDER BY id",
        args,
    )


def event_times(conn: sqlite3.Connection, incident_id: int) -> dict[int, tuple[str, str]]:
    """(occurred, received) of each event on the incident's timeline."""
    return {
        int(i): (str(o), str(r))
        for i, o, r in conn.execute(
            "SELECT id, occurred_at, received_at FROM events WHERE id IN "
            "(SELECT event_id FROM timeline WHERE incident_id = ?)",
            (incident_id,),
        )
    }


def fallbacks_since(conn: sqlite3.Connection, since: datetime) -> tuple[int, str]:
    """Staff steps that found nobody since then: how many, and the latest line."""
    count, last = conn.execute(
        "SELECT count(*), max(at || ' ' || text) FROM timeline WHERE type = 'no_recipients' "
        "AND at >= ?",
        (iso(since),),
    ).fetchone()
    return int(count), str(last or "")


def incident_of_device(conn: sqlite3.Connection, device_id: str) -> int | None:
    """The newest incident a device is active in (a declaration's own device: where the
    console takes the person who declared)."""
    row = conn.execute(
        "SELECT id FROM incidents WHERE active LIKE ? ORDER BY id DESC LIMIT 1",
        (f'%"{device_id} %',),  # its entries are "<device> <kind>"
    ).fetchone()
    return int(row[0]) if row else None
