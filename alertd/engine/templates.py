"""Message texts: Jinja2 in a sandbox, one Chinese and one English text per template,
each rendered with values in its own language."""

from __future__ import annotations

import functools
import re
from datetime import datetime, tzinfo
from typing import Any

import jinja2
from jinja2 import TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from alertd.engine.state import Incident
from alertd.engine.wording import LANGUAGES, local_time, place
from alertd.events import Location
from alertd.playbooks.schema import Template

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
DRILL = {"zh": "【演练】", "en": "[DRILL] "}
#: how staff acknowledge, by the channel that reaches them
ACK = {
    "call": {"zh": "按1确认", "en": "press 1 to acknowledge"},
    "text": {"zh": "回复 OK {id} 确认", "en": "reply OK {id}"},
}

Values = dict[str, dict[str, Any]]
_NOWHERE = Location()
_TEXT_ACK = {
    language: re.compile(re.escape(hint).replace(re.escape("{id}"), r"\d+"))
    for language, hint in ACK["text"].items()
}


def spoken(body: str, language: str) -> str:
    """A text written for SMS, as a call reads it: "press 1" instead of "reply OK 12" (a
    staff SMS that failed falls back to a call with the same body)."""
    pattern = _TEXT_ACK.get(language)
    return pattern.sub(ACK["call"][language], body) if pattern else body


def context(
    incident: Incident,
    now: datetime,
    tz: tzinfo,
    *,
    where: Location | None = None,
    channel: str = "",
    extra: dict[str, str] | None = None,
    only: frozenset[str] | None = None,
) -> Values:
    """Values for each language. `where`: the place of the device the message is about
    (a joining detector); by default the device that opened the incident. `only`: the
    names a template uses (`names`): the place, times and acknowledgement hint, worked
    out per language, are left out when it does not."""
    here = where or (incident.origin if incident.origin != _NOWHERE else incident.location)
    eta = incident.expected_restore_at
    titles = dict(zip(LANGUAGES, (incident.title.split(" / ", 1) * 2)[:2], strict=True))
    ack = ACK["call"] if channel == "call" else ACK["text"]
    common: dict[str, Any] = {
        "incident": incident.id,
        "site": here.site,
        "building": here.building,
        "floor": here.floor,
        "unit": here.unit,
        "zone": here.zone,
        "minutes_open": int((now - incident.opened_at).total_seconds() // 60),
        **(extra or {}),
    }
    if only is None or "time" in only:
        opened = incident.opened_at.astimezone(tz)
        common["time"] = f"{opened.hour:02d}:{opened.minute:02d}"
    values: Values = {}
    for language in LANGUAGES:
        mine = values[language] = {**common, "title": titles[language]}
        if only is None or "location" in only:
            mine["location"] = place(here, language)
        if only is None or "restore_eta" in only:
            mine["restore_eta"] = local_time(eta, tz, now, language) if eta else ""
        if only is None or "ack" in only:
            mine["ack"] = ack[language].format(id=incident.id)
    return values


@functools.lru_cache(maxsize=4096)
def names(zh: str, en: str) -> frozenset[str] | None:
    """The values a template's two texts use; None when one cannot be read (it is then
    rendered with every value, and its error shown in the message)."""
    try:
        return frozenset().union(*(meta.find_undeclared_variables(_ENV.parse(s)) for s in (zh, en)))
    except TemplateError:
        return None


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    template = _ENV.from_string(source)
    # Jinja keeps the globals as a ChainMap over the environment's and copies it into
    # every render's context key by key in Python: a plain dict copies at C speed
    template.globals = dict(template.globals)
    return template


def render(
    template: Template,
    values: Values,
    *,
    drill: bool,
    prefix: dict[str, str] | None = None,
) -> dict[str, str]:
    """`prefix`: a sender signature put before everything (resident SMS)."""
    out = {}
    for language in LANGUAGES:
        source = getattr(template, language)
        try:
            text = _compiled(source).render(values[language])
        except TemplateError as exc:  # a message still goes out, with the raw wording
            text = f"{source} ({exc})"
        head = (prefix or {}).get(language, "")
        if language == "en" and head and not head[-1].isspace() and head[-1] not in "]】)）":
            head += " "  # "Harbour View: Fire alarm", not "Harbour View:Fire alarm"
        out[language] = head + (DRILL[language] if drill else "") + text
    return out
