"""Message texts: Jinja2 in a sandbox, one Chinese and one English text per template,
each rendered with values in its own language."""

from __future__ import annotations

import functools
import re
from datetime import datetime, tzinfo
from typing import Any

import jinja2
from jinja2 import TemplateError
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
) -> Values:
    """Values for each language. `where`: the place of the device the message is about
    (a joining detector); by default the device that opened the incident."""
    here = where or (incident.origin if incident.origin != _NOWHERE else incident.location)
    eta = incident.expected_restore_at
    titles = dict(zip(LANGUAGES, (incident.title.split(" / ", 1) * 2)[:2], strict=True))
    ack = ACK["call"] if channel == "call" else ACK["text"]
    opened = incident.opened_at.astimezone(tz)
    common = {
        "incident": incident.id,
        "site": here.site,
        "building": here.building,
        "floor": here.floor,
        "unit": here.unit,
        "zone": here.zone,
        "time": f"{opened.hour:02d}:{opened.minute:02d}",
        "minutes_open": int((now - incident.opened_at).total_seconds() // 60),
        **(extra or {}),
    }
    return {
        language: {
            **common,
            "title": titles[language],
            "location": place(here, language),
            "restore_eta": local_time(eta, tz, now, language) if eta else "",
            "ack": ack[language].format(id=incident.id),
        }
        for language in LANGUAGES
    }


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
        out[language] = head + (DRILL[language] if drill else "") + text
    return out
