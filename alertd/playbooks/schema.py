"""The playbook schema: match -> correlate -> steps, in the spirit of Home Assistant's
trigger -> condition -> action. One playbook per file in `playbooks/`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from typing import Annotated, Any, Literal, Self

from jinja2 import Environment, TemplateSyntaxError, meta
from pydantic import BeforeValidator, Field, model_validator

from alertd.events import Kind, Severity, State
from alertd.model import YEAR_S, Strict


def _severity(value: object) -> object:
    if isinstance(value, str) and value.upper() in Severity.__members__:
        return Severity[value.upper()]
    return value


#: written by name in YAML: info, warning, minor, major, critical
SeverityName = Annotated[Severity, BeforeValidator(_severity)]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: a role of the staff file (security, maintenance, front_desk, engineer, ...): whatever
#: the site has; `alertd check` says when nobody in the staff file holds one
Role = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z][\w-]*$")]
#: `notified`: the residents texted about this incident so far (for all-clears)
Audience = Literal["unit", "unit_below", "floor", "building", "site", "notified"]
#: what makes an event joining an incident new: a device, zone, unit or floor not seen yet
Novelty = Literal["device", "zone", "unit", "floor", "building"]


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
    #: the sites (ids) it serves; empty: every site
    sites: list[str] = []
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
    window_s: float = Field(3600.0, gt=0, le=YEAR_S)


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
    restore_eta_s: float = Field(gt=0, le=YEAR_S)


class Escalation(Strict):
    to: Recipient
    template: str


class WaitAck(Strict):
    """Wait for a staff acknowledgement; at each deadline notify the next in the chain,
    then keep repeating the last one every `repeat_s`."""

    wait_ack_s: float = Field(gt=0, le=YEAR_S)
    escalate: list[Escalation] = Field(min_length=1)
    repeat_s: float | None = Field(None, gt=0, le=YEAR_S)


class Delay(Strict):
    delay_s: float = Field(gt=0, le=YEAR_S)


Step = Notify | Sms | Pa | Webhook | Note | RestoreEta | WaitAck | Delay


class OnRestore(Strict):
    """The all-clear: sent once per clearing, never while a condition is still active,
    and only after every condition stayed clear for `hold_s` (flapping detectors)."""

    steps: list[Step] = []
    #: `auto`: the all-clear goes out (and the incident resolves) when every device is
    #: back to normal; `confirm`: it waits for staff to resolve (`alertd incidents resolve`)
    resolve: Literal["auto", "confirm"] = "confirm"
    hold_s: float = Field(30.0, ge=0, le=YEAR_S)


class OnJoin(Strict):
    """A new device, zone, unit or floor joining an open incident (acknowledged or not)."""

    new: list[Novelty] = Field(["device"], min_length=1)
    steps: list[Notify | Sms | Pa | Webhook | Note] = Field(min_length=1)


class FollowUp(Strict):
    after_s: float = Field(gt=0, le=YEAR_S)
    steps: list[Step] = Field(min_length=1)


class Template(Strict):
    zh: str
    en: str


#: built in, so that no playbook is without them; a playbook's own template of the same
#: name wins
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    # `location` is the resident's flat here
    "resident_help": {
        "zh": "【住户求助 #{{ incident }}】{{ location }} {{ resident_name }}"
        "{{ resident_note and '（' ~ resident_note ~ '）' }} 回复：“{{ resident_text }}”。"
        "请立即联系 {{ resident_phone }}。事件：{{ title }}。",
        "en": "[RESIDENT NEEDS HELP #{{ incident }}] {{ location }} {{ resident_name }}"
        "{{ resident_note and ' (' ~ resident_note ~ ')' }} replied: \"{{ resident_text }}\". "
        "Call {{ resident_phone }} now. Incident: {{ title }}.",
    },
}
#: every staff text must say which incident (so `OK 12` works) and where: the variables
#: that carry each (`title` names the place the incident started)
STAFF_MUST_NAME = {
    "the incident number": ("incident",),
    "the place": ("location", "title"),
}
_JINJA = Environment()


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
    on_restore: OnRestore = OnRestore()  # type: ignore[call-arg]
    follow_up: FollowUp | None = None
    #: run when staff set a new expected restore time (`alertd incidents eta`): no waits
    on_eta: list[Notify | Sms | Pa | Webhook | Note] = []
    #: new places joining an open incident; unset: recorded on the timeline only
    on_join: OnJoin | None = None
    #: a resident texted about the incident asks for help (replies 2, or free text)
    on_help: list[Notify] = Field(
        default_factory=lambda: [
            Notify(notify=Recipient(oncall="security"), template="resident_help")
        ],
        min_length=1,
    )
    templates: dict[str, Template] = {}

    @model_validator(mode="before")
    @classmethod
    def _default_templates(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("templates", {}), dict):
            data = {**data, "templates": {**DEFAULT_TEMPLATES, **data.get("templates", {})}}
        return data

    def all_steps(self) -> list[Step]:
        return [
            *self.steps,
            *self.on_restore.steps,
            *(self.follow_up.steps if self.follow_up else []),
            *self.on_eta,
            *(self.on_join.steps if self.on_join else []),
            *self.on_help,
        ]

    @property
    def ack_target_s(self) -> float | None:
        """How long the steps wait for an acknowledgement before escalating (the first
        wait): what a drill's response is scored against."""
        return next((s.wait_ack_s for s in self.steps if isinstance(s, WaitAck)), None)

    def staff_templates(self) -> set[str]:
        """Templates that reach staff: notifications and escalations."""
        used = {s.template for s in self.all_steps() if isinstance(s, Notify)}
        return used | {
            e.template for s in self.all_steps() if isinstance(s, WaitAck) for e in s.escalate
        }

    def texted_templates(self) -> set[str]:
        """Templates that go out by SMS: residents' texts, staff texts, escalations (a
        provider in mainland China needs each registered)."""
        return set(self.texting_steps())

    def texting_steps(self) -> dict[str, list[str]]:
        """Where each SMS template is used, as the file's keys name it ('steps.2',
        'on_restore.steps.0', 'steps.3.escalate.1')."""
        sections: list[tuple[str, Sequence[object]]] = [
            ("steps", self.steps),
            ("on_restore.steps", self.on_restore.steps),
            ("follow_up.steps", self.follow_up.steps if self.follow_up else []),
            ("on_eta", self.on_eta),
            ("on_join.steps", self.on_join.steps if self.on_join else []),
            ("on_help", self.on_help),
        ]
        used: dict[str, list[str]] = {}
        for section, steps in sections:
            for i, step in enumerate(steps):
                if isinstance(step, Sms) or (isinstance(step, Notify) and step.channel == "sms"):
                    used.setdefault(step.template, []).append(f"{section}.{i}")
                if isinstance(step, WaitAck):
                    for j, e in enumerate(step.escalate):
                        used.setdefault(e.template, []).append(f"{section}.{i}.escalate.{j}")
        return used

    @model_validator(mode="after")
    def _templates_exist(self) -> Self:
        used = [getattr(step, "template", None) for step in self.all_steps()]
        used += [e.template for s in self.all_steps() if isinstance(s, WaitAck) for e in s.escalate]
        missing = sorted({t for t in used if t and t not in self.templates})
        if missing:
            raise ValueError(f"templates not defined under templates: {', '.join(missing)}")
        problems = []
        for name in sorted(self.staff_templates()):
            for language in ("zh", "en"):
                source = getattr(self.templates[name], language)
                try:
                    names = meta.find_undeclared_variables(_JINJA.parse(source))
                except TemplateSyntaxError as exc:
                    problems.append(f"template {name} ({language}): {exc.message}")
                    continue
                problems += [
                    f"template {name} ({language}) goes to staff but does not name "
                    f"{what} ({{{{ {variables[0]} }}}})"
                    for what, variables in STAFF_MUST_NAME.items()
                    if not names & set(variables)
                ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
