"""Message texts: Jinja2 in a sandbox, one Chinese and one English text per template."""

from __future__ import annotations

import functools
from datetime import datetime, tzinfo
from typing import Any

import jinja2
from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from alertd.engine.state import Incident
from alertd.playbooks.schema import Template

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
DRILL = {"zh": "【演练】", "en": "[DRILL] "}


def context(incident: Incident, now: datetime, tz: tzinfo) -> dict[str, Any]:
    loc = incident.location
    eta = incident.expected_restore_at
    return {
        "incident": incident.id,
        "title": incident.title,
        "site": loc.site,
        "building": loc.building,
        "floor": loc.floor,
        "unit": loc.unit,
        "zone": loc.zone,
        "location": " ".join(
            p
            for p in (
                loc.site,
                loc.building and f"{loc.building}#",
                loc.floor and f"{loc.floor}F",
                loc.unit,
                loc.zone,
            )
            if p
        ),
        "time": incident.opened_at.astimezone(tz).strftime("%H:%M"),
        "minutes_open": int((now - incident.opened_at).total_seconds() // 60),
        "restore_eta": eta.astimezone(tz).strftime("%H:%M") if eta else "",
    }


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(template: Template, values: dict[str, Any], *, drill: bool) -> dict[str, str]:
    out = {}
    for language in ("zh", "en"):
        source = getattr(template, language)
        try:
            text = _compiled(source).render(values)
        except TemplateError as exc:  # a message still goes out, with the raw wording
            text = f"{source} ({exc})"
        out[language] = (DRILL[language] if drill else "") + text
    return out
