"""Staff and on-call rotations (YAML): people with phones and roles, weekly shifts in the
site's time zone, and dated overrides. Shifts are wall-clock times, so a daylight-saving
change moves them with the clock, as people expect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from alertd.directory.phones import normalise
from alertd.model import Strict
from alertd.playbooks.schema import Role, Window
from alertd.problems import InvalidInput, Problem
from alertd.yamlfile import load_yaml, pydantic_problems


class Person(Strict):
    phone: str
    roles: list[Role] = Field(min_length=1)
    language: Literal["zh", "en"] = "zh"
    email: str | None = None


class Shift(Window):
    who: str


class Override(Strict):
    role: Role
    who: str
    start: datetime  # local time in the site's zone
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class StaffFile(Strict):
    people: dict[str, Person]
    oncall: dict[Role, list[Shift]] = {}
    overrides: list[Override] = []

    @field_validator("overrides", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return value or []

    @model_validator(mode="after")
    def _known_people(self) -> Self:
        names = [s.who for shifts in self.oncall.values() for s in shifts]
        names += [o.who for o in self.overrides]
        unknown = sorted({n for n in names if n not in self.people})
        if unknown:
            raise ValueError(f"not under people: {', '.join(unknown)}")
        return self


@dataclass(frozen=True)
class Staff:
    people: dict[str, Person]
    oncall: dict[str, list[Shift]]
    overrides: list[Override]
    tz: tzinfo

    def on_call(self, role: str, at: datetime) -> str | None:
        """Who is on call for `role` at the instant `at` (an override wins)."""
        local = at.astimezone(self.tz)
        for o in self.overrides:
            start, end = o.start.replace(tzinfo=self.tz), o.end.replace(tzinfo=self.tz)
            if o.role == role and start <= local < end:
                return o.who
        for shift in self.oncall.get(role, []):
            if shift.contains(local.replace(tzinfo=None)):
                return shift.who
        return None

    def with_role(self, role: str) -> list[str]:
        return [name for name, p in self.people.items() if role in p.roles]


def load_staff(path: Path, region: str, tz: tzinfo) -> Staff:
    data, lines = load_yaml(path)
    try:
        parsed = StaffFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(pydantic_problems(exc, lines)) from exc
    problems = []
    people = {}
    for name, person in parsed.people.items():
        try:
            people[name] = person.model_copy(update={"phone": normalise(person.phone, region)})
        except ValueError as exc:
            problems.append(Problem(lines.where(("people", name, "phone")), str(exc)))
    if problems:
        raise InvalidInput(problems)
    oncall = {str(role): shifts for role, shifts in parsed.oncall.items()}
    return Staff(people, oncall, list(parsed.overrides), tz)
