"""An incident as the engine sees it, and what the engine decides: plain data."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from alertd.events import Location, Severity

Status = Literal["open", "acknowledged", "resolved", "closed"]
Sequence = Literal["steps", "on_restore", "follow_up"]


@dataclass(frozen=True, slots=True)
class Run:
    """Where an incident is in its playbook: the next step of which sequence."""

    sequence: Sequence = "steps"
    step: int = 0
    #: waiting on a wait_ack or delay step (the step index), or not waiting
    waiting: int | None = None
    escalation: int = 0
    #: a matching event came while the steps ran, in mode queued: run again after
    queued: bool = False
    done: bool = False


@functools.lru_cache(maxsize=1024)
def run_at(
    sequence: Sequence = "steps",
    step: int = 0,
    waiting: int | None = None,
    escalation: int = 0,
    queued: bool = False,
    done: bool = False,
) -> Run:
    """A shared `Run`: thousands of open incidents stand at the same few places."""
    return Run(sequence, step, waiting, escalation, queued, done)


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    playbook: str
    key: str
    status: Status
    severity: Severity
    location: Location
    title: str
    opened_at: datetime
    last_event_at: datetime
    #: "device_id kind" of every condition still active, sorted (a tuple: see `seen`)
    active: tuple[str, ...] = ()
    #: every unit an event of this incident came from, sorted (a tuple: see `seen`)
    units: tuple[str, ...] = ()
    run: Run = Run()
    drill: bool = False
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    expected_restore_at: datetime | None = None
    #: the full place of the device that opened it (the incident's own place is only as
    #: precise as its correlation level); staff texts name this one
    origin: Location = field(default_factory=Location)
    #: every place an active event came from, as `device:ID`, `floor:12`, ... (`on_join`
    #: announces what is new), sorted: a tuple, as a set took a kilobyte an incident and
    #: thousands can be open
    seen: tuple[str, ...] = ()
    #: when the last active condition cleared (None while any is active)
    cleared_at: datetime | None = None
    #: the all-clear went out for this clearing; a condition coming back resets it
    all_clear_sent: bool = False
    acknowledged_by: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """Something to send: the delivery stage expands audiences and picks the language."""

    channel: Literal["notify", "call", "email", "sms", "pa", "webhook"]
    #: "role:security", "oncall:maintenance", "person:Li Wei", "unit", "building", ...
    target: str
    texts: dict[str, str]
    vulnerable_first: bool = False
    step: str = ""
    #: the delivery stage attaches the vulnerable residents of the incident's place
    vulnerable_list: bool = False
    #: the playbook template the texts came from, and its values per language (kept
    #: only for providers with registered templates: alertd/outbox/registered.py)
    template: str = ""
    values: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Timer:
    incident: int
    due_at: datetime
    kind: Literal["continue", "escalate", "follow_up", "clear", "drill_end"]
    #: the run step the timer belongs to (a stale timer does nothing)
    step: int = 0


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the incident timeline."""

    type: str
    text: str
    actor: str = "alertd"
    event_id: int | None = None


@dataclass
class Decision:
    """What one event, timer or staff command changes: the incident (new or updated),
    its timeline lines, actions for the outbox and timers; nothing is done yet."""

    incident: Incident | None = None
    entries: list[Entry] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    #: timers of this incident to drop (an acknowledgement ends an escalation)
    cancel_timers: bool = False
    #: a staff command that must not change the record, and why
    refused: str = ""
    #: what to tell whoever asked (the command's result)
    reply: str = ""


#: timers an acknowledgement or a restart does not cancel: they are not the escalation
LASTING_TIMERS = frozenset({"follow_up", "clear", "drill_end"})


class IncidentIndex:
    """Incidents by id and by (playbook, correlation key): an event only looks at the
    incidents it could join, however many are open."""

    def __init__(self, incidents: Iterable[Incident] = ()) -> None:
        self._by_id: dict[int, Incident] = {}
        #: ids, not a dict of incidents per key: most keys have one incident, and with
        #: thousands open a dict each was a quarter of the index's memory
        self._by_key: dict[tuple[str, str], tuple[int, ...]] = {}
        for incident in incidents:
            self.put(incident)

    def put(self, incident: Incident) -> None:
        self._by_id[incident.id] = incident
        key = (incident.playbook, incident.key)
        ids = self._by_key.get(key, ())
        if incident.id not in ids:
            self._by_key[key] = (*ids, incident.id)

    def get(self, incident_id: int) -> Incident | None:
        return self._by_id.get(incident_id)

    def live(self) -> Iterator[Incident]:
        """Incidents still open or acknowledged."""
        return (i for i in self._by_id.values() if i.status in ("open", "acknowledged"))

    def find(self, playbook: str, key: str) -> list[Incident]:
        return [self._by_id[i] for i in self._by_key.get((playbook, key), ())]

    def __len__(self) -> int:
        return len(self._by_id)
