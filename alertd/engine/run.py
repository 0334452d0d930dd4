"""Running a playbook's steps for an incident: each call goes as far as it can, up to a
wait (acknowledgement or delay), and says which timer will pick it up again."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from alertd.engine.inhibit import InhibitRule
from alertd.engine.state import Action, Decision, Entry, Incident, Run, Timer, run_at
from alertd.engine.state import Sequence as RunSequence
from alertd.engine.templates import Values, context, names, render
from alertd.events import Location
from alertd.playbooks.schema import (
    Delay,
    Note,
    Notify,
    Pa,
    Playbook,
    Recipient,
    RestoreEta,
    Sms,
    Step,
    WaitAck,
    Webhook,
)

#: how a Notify step's channel becomes an action's channel
STAFF_CHANNELS: dict[str, Literal["notify", "call", "email"]] = {
    "sms": "notify",
    "call": "call",
    "email": "email",
}


@dataclass(frozen=True, slots=True)
class Locale:
    """A site's own zone and signature."""

    tz: tzinfo
    signatures: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunContext:
    tz: tzinfo
    #: residents are texted during drills only when the configuration says so
    resident_sms_in_drills: bool = False
    #: the sender signature at the start of every resident SMS, per language
    signatures: Mapping[str, str] = field(default_factory=dict)
    #: a drill incident nobody closed is closed this long after it opened
    drill_end_s: float = 4 * 3600.0
    inhibit: Sequence[InhibitRule] = ()
    #: each site's zone and signature (a site not here: the two above)
    sites: Mapping[str, Locale] = field(default_factory=dict)
    #: SMS actions keep their texts' values (for registered templates)
    keep_values: bool = False

    def zone(self, site: str) -> tzinfo:
        """The zone of a site's texts and times."""
        own = self.sites.get(site)
        return own.tz if own is not None else self.tz

    def signed(self, site: str) -> dict[str, str]:
        own = self.sites.get(site)
        return dict(own.signatures if own is not None else self.signatures)


def steps_of(playbook: Playbook, sequence: RunSequence) -> list[Step]:
    if sequence == "steps":
        return list(playbook.steps)
    if sequence == "on_restore":
        return list(playbook.on_restore.steps)
    return list(playbook.follow_up.steps) if playbook.follow_up else []


def start(
    playbook: Playbook,
    incident: Incident,
    sequence: RunSequence,
    now: datetime,
    ctx: RunContext,
    decision: Decision,
) -> Incident:
    return advance(playbook, dataclasses.replace(incident, run=Run(sequence)), now, ctx, decision)


def advance(
    playbook: Playbook, incident: Incident, now: datetime, ctx: RunContext, decision: Decision
) -> Incident:
    """Run steps from `incident.run.step` until a wait or the end of the sequence."""
    run = incident.run
    steps = steps_of(playbook, run.sequence)
    index = run.step
    while index < len(steps):
        step = steps[index]
        if isinstance(step, WaitAck):
            if incident.status in ("acknowledged", "resolved", "closed"):
                decision.entries.append(Entry("step", f"step {index + 1}: already acknowledged"))
                index += 1
                continue
            decision.timers.append(
                Timer(incident.id, now + timedelta(seconds=step.wait_ack_s), "escalate", index)
            )
            decision.entries.append(
                Entry(
                    "step",
                    f"step {index + 1}: waiting up to {step.wait_ack_s:g} s for an acknowledgement",
                )
            )
            return dataclasses.replace(
                incident, run=run_at(run.sequence, index, index, 0, run.queued)
            )
        if isinstance(step, Delay):
            decision.timers.append(
                Timer(incident.id, now + timedelta(seconds=step.delay_s), "continue", index)
            )
            decision.entries.append(Entry("step", f"step {index + 1}: waiting {step.delay_s:g} s"))
            return dataclasses.replace(
                incident, run=run_at(run.sequence, index, index, 0, run.queued)
            )
        incident = _do(playbook, incident, step, index, now, ctx, decision)
        index += 1
    if run.queued and run.sequence == "steps":
        decision.entries.append(Entry("step", "running the steps again for a queued event"))
        return advance(
            playbook, dataclasses.replace(incident, run=Run("steps")), now, ctx, decision
        )
    return dataclasses.replace(incident, run=run_at(run.sequence, index, None, 0, False, True))


def _do(
    playbook: Playbook,
    incident: Incident,
    step: Step,
    index: int,
    now: datetime,
    ctx: RunContext,
    decision: Decision,
    sequence: str = "",
    *,
    where: Location | None = None,
    extra: dict[str, str] | None = None,
) -> Incident:
    label = f"{sequence or incident.run.sequence} step {index + 1}"
    if isinstance(step, Note):
        decision.entries.append(Entry("note", step.note))
        return incident
    if isinstance(step, RestoreEta):
        eta = now + timedelta(seconds=step.restore_eta_s)
        decision.entries.append(Entry("restore_eta", f"expected restore {eta.isoformat()}"))
        return dataclasses.replace(incident, expected_restore_at=eta)
    assert isinstance(step, Notify | Sms | Pa | Webhook)  # waits are handled by advance()
    if isinstance(step, Sms) and incident.drill and not ctx.resident_sms_in_drills:
        decision.entries.append(Entry("suppressed", f"{label}: sms to {step.sms} (a drill)"))
        return incident
    channel = step.channel if isinstance(step, Notify) else ""
    template = playbook.templates[step.template]
    texting = isinstance(step, Sms) or (isinstance(step, Notify) and step.channel == "sms")
    keep = ctx.keep_values and texting
    only = None if keep else names(template.zh, template.en)
    site = incident.location.site
    values = context(
        incident, now, ctx.zone(site), where=where, channel=channel, extra=extra, only=only
    )
    texts = render(
        template,
        values,
        drill=incident.drill,
        prefix=ctx.signed(site) if isinstance(step, Sms) else None,
    )
    kept = _kept(step.template, values) if keep else {}
    if isinstance(step, Notify):
        action = Action(
            STAFF_CHANNELS[step.channel],
            _who(step.notify),
            texts,
            step=label,
            vulnerable_list=step.vulnerable_list,
            **kept,
        )
    elif isinstance(step, Sms):
        action = Action("sms", step.sms, texts, step.vulnerable_first, label, **kept)
    elif isinstance(step, Pa):
        action = Action("pa", step.pa, texts, step=label)
    else:
        assert isinstance(step, Webhook)
        action = Action("webhook", step.webhook, texts, step=label)
    decision.actions.append(action)
    decision.entries.append(Entry("action", f"{label}: {action.channel} to {action.target}"))
    return incident


def run_inline(
    playbook: Playbook,
    incident: Incident,
    steps: Sequence[Step],
    name: str,
    now: datetime,
    ctx: RunContext,
    decision: Decision,
    *,
    where: Location | None = None,
    extra: dict[str, str] | None = None,
) -> Incident:
    """Steps with no waits, run at once beside the incident's own run (on_eta, on_join,
    on_help, the all-clear). `where`: the place the messages are about."""
    for index, step in enumerate(steps):
        if isinstance(step, WaitAck | Delay):
            continue  # the schema allows none here but on_restore; the run does not wait
        incident = _do(
            playbook, incident, step, index, now, ctx, decision, name, where=where, extra=extra
        )
    return incident


def escalate(
    playbook: Playbook,
    incident: Incident,
    timer: Timer,
    now: datetime,
    ctx: RunContext,
    decision: Decision,
) -> Incident:
    """An acknowledgement deadline passed: notify the next in the chain, wait again."""
    run = incident.run
    step = steps_of(playbook, run.sequence)[timer.step]
    assert isinstance(step, WaitAck)
    level = min(run.escalation, len(step.escalate) - 1)
    target = step.escalate[level]
    values = context(incident, now, ctx.zone(incident.location.site))
    texts = render(playbook.templates[target.template], values, drill=incident.drill)
    kept = _kept(target.template, values) if ctx.keep_values else {}
    decision.actions.append(
        Action("notify", _who(target.to), texts, step=f"escalation {run.escalation + 1}", **kept)
    )
    decision.entries.append(Entry("escalation", f"not acknowledged: notifying {_who(target.to)}"))
    next_level = run.escalation + 1
    if next_level < len(step.escalate):
        due = now + timedelta(seconds=step.wait_ack_s)
    elif step.repeat_s is not None:
        due = now + timedelta(seconds=step.repeat_s)
    else:  # the chain is done and nothing repeats: the steps go on
        moved = dataclasses.replace(run, step=timer.step + 1, waiting=None, escalation=0)
        return advance(playbook, dataclasses.replace(incident, run=moved), now, ctx, decision)
    decision.timers.append(Timer(incident.id, due, "escalate", timer.step))
    return dataclasses.replace(incident, run=dataclasses.replace(run, escalation=next_level))


def _kept(template: str, values: Values) -> dict[str, Any]:
    """What a registered template is filled from: the playbook template's name and every
    value, as text, per language."""
    return {
        "template": template,
        "values": {lang: {k: str(v) for k, v in vs.items()} for lang, vs in values.items()},
    }


def _who(recipient: Recipient) -> str:
    if recipient.role:
        return f"role:{recipient.role}"
    if recipient.oncall:
        return f"oncall:{recipient.oncall}"
    return f"person:{recipient.person}"
