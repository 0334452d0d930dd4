"""The playbook schema: match -> correlate -> steps, in the spirit of Home Assistant's
trigger -> condition -> action. One playbook per file in `playbooks/`."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from alertd.events import Kind, Severity, State
from alertd.model import Strict


def _severity(value: object) -> object:
    if isinstance(value, str) and value.upper() in Severity.__members__:
        return Severity[value.upper()]
    return value


#: written by name in YAML: info, warning, minor, major, critical
SeverityName = Annotated[Severity, BeforeValidator(_severity)]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Role = Literal["security", "maintenance", "front_desk", "supervisor"]
Audience = Literal["unit", "unit_below", "floor", "building", "site"]


class Window(Strict):
    """A time-of-day window in the site's time zone; `start` after `end` crosses midnight."""

    start: time
    end: time
    days: list[Weekday] = list(WEEKDAYS)

    def contains(self, local: datetime) -> bool:
        """Whether a local (site time zone) wall-clock time is inside. The part after
        midnight of a window crossing it belongs to the day the window started."""
        day = WEEKDAYS[local.weekday()]
        now = local.time()
        if self.start <= self.end:
            return day in self.days and self.start <= now < self.end
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        return (day in self.days and now >= self.start) or (
            yesterday in self.days and now < self.end
        )


class Match(Strict):
    kinds: list[Kind] = Field(min_length=1)
    #: active events open and join incidents; restores clear them
    states: list[State] = Field([State.ACTIVE, State.RESTORE], min_length=1)
    min_severity: SeverityName = Severity.INFO
    buildings: list[str] = []
    floors: list[str] = []
    units: list[str] = []
    zones: list[str] = []
    #: device tags (extra columns of the devices file) that must be equal
    tags: dict[str, str] = {}
    windows: list[Window] = []
    #: only drills (true), only real events (false), or both (unset)
    drill: bool | None = None


class Correlate(Strict):
    """How events join one incident: same playbook, same place at this level, while the
    incident is open and the last event is no older than `window_s`."""

    by: Literal["site", "building", "floor", "unit", "zone", "device"] = "building"
    window_s: float = Field(3600.0, gt=0)


class Recipient(Strict):
    role: Role | None = None
    person: str | None = None
    oncall: Role | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if sum(x is not None for x in (self.role, self.person, self.oncall)) != 1:
            raise ValueError("name exactly one of role, person or oncall")
        return self


class Notify(Strict):
    notify: Recipient
    template: str
    channel: Literal["sms", "call", "email"] = "sms"
    #: add the list of vulnerable residents (alone, elderly, disabled) of the incident's
    #: place, for door-to-door checks
    vulnerable_list: bool = False


class Sms(Strict):
    sms: Audience
    template: str
    vulnerable_first: bool = True


class Pa(Strict):
    pa: Literal["building", "floor"] = "building"
    template: str


class Webhook(Strict):
    webhook: str  # a name under `webhooks:` in the config (the URL is a secret)
    template: str


class Note(Strict):
    note: str


class RestoreEta(Strict):
    restore_eta_s: float = Field(gt=0)


class Escalation(Strict):
    to: Recipient
    template: str


class WaitAck(Strict):
    """Wait for a staff acknowledgement; at each deadline notify the next in the chain,
    then keep repeating the last one every `repeat_s`."""

    wait_ack_s: float = Field(gt=0)
    escalate: list[Escalation] = Field(min_length=1)
    repeat_s: float | None = Field(None, gt=0)


class Delay(Strict):
    delay_s: float = Field(gt=0)


Step = Notify | Sms | Pa | Webhook | Note | RestoreEta | WaitAck | Delay


class OnRestore(Strict):
    steps: list[Step] = []
    #: resolve the incident when every device is back to normal, or ask staff to confirm
    resolve: Literal["auto", "confirm"] = "confirm"


class FollowUp(Strict):
    after_s: float = Field(gt=0)
    steps: list[Step] = Field(min_length=1)


class Template(Strict):
    zh: str
    en: str


class Playbook(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    match: Match
    correlate: Correlate = Correlate(by="building", window_s=3600.0)
    #: a new matching event while the steps run: ignore it (single), start the steps
    #: again (restart), or run them once more after the current run (queued)
    mode: Literal["single", "restart", "queued"] = "single"
    severity: SeverityName | None = None
    steps: list[Step] = Field(min_length=1)
    on_restore: OnRestore = OnRestore()
    follow_up: FollowUp | None = None
    #: run when staff set a new expected restore time (`alertd incidents eta`): no waits
    on_eta: list[Notify | Sms | Pa | Webhook | Note] = []
    templates: dict[str, Template] = {}

    @model_validator(mode="after")
    def _templates_exist(self) -> Self:
        used = [
            getattr(step, "template", None)
            for step in [
                *self.steps,
                *self.on_restore.steps,
                *(self.follow_up.steps if self.follow_up else []),
                *self.on_eta,
            ]
        ] + [e.template for step in self.steps if isinstance(step, WaitAck) for e in step.escalate]
        missing = sorted({t for t in used if t and t not in self.templates})
        if missing:
            raise ValueError(f"templates not defined under templates: {', '.join(missing)}")
        return self
