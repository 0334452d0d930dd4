"""Staff and on-call rotations (YAML): people with phones and roles, weekly shifts in the
site's time zone, and dated overrides. Shifts are wall-clock times, so a daylight-saving
change moves them with the clock, as people expect.

With several sites, each site team has a file of its own (its people work there, with
the roles they have there, on its rotations in its zone), and the company's file holds
the people who span sites (a regional supervisor: `sites: [pine, harbour]`; the
head-office desk: no `sites`, all of them). An incident's site decides who is told."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
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
    #: in the company's file: the sites this person covers (unset: every site)
    sites: list[str] | None = None


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
class Rota:
    """On-call shifts and overrides, in one zone."""

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


@dataclass(frozen=True)
class Team:
    """A site's own staff, with the roles they have there, and its rotations."""

    people: dict[str, Person]
    rota: Rota


@dataclass(frozen=True)
class Staff:
    #: everyone (a site team's people and the company's)
    people: dict[str, Person]
    #: the company's rotations (with one site, the site's)
    oncall: dict[str, list[Shift]]
    overrides: list[Override]
    tz: tzinfo
    #: site -> its team (the company's people cover it too, by their `sites`)
    teams: dict[str, Team] = field(default_factory=dict)
    #: the company's people, by name (with one site and no teams: everyone)
    company: frozenset[str] | None = None
    #: site teams whose file was broken at a reload, kept as they were
    problems: tuple[Problem, ...] = ()

    def on_call(self, role: str, at: datetime, site: str | None = None) -> str | None:
        """Who is on call for `role` at `site` at the instant `at`: the site team's
        rotation, else the company's (whoever it names must cover the site)."""
        team = self.teams.get(site or "")
        if team is not None and (who := team.rota.on_call(role, at)) is not None:
            return who
        who = Rota(self.oncall, self.overrides, self.tz).on_call(role, at)
        return who if who is not None and self._company_covers(who, site) else None

    def with_role(self, role: str, site: str | None = None) -> list[str]:
        if site is None:
            return [name for name, p in self.people.items() if role in p.roles]
        team = self.teams.get(site)
        names = [n for n, p in team.people.items() if role in p.roles] if team else []
        return names + [
            n
            for n, p in self.people.items()
            if n not in names and role in p.roles and self._company_covers(n, site)
        ]

    def covers(self, name: str, site: str | None) -> bool:
        """Whether `name` works at `site` (None: anywhere)."""
        team = self.teams.get(site or "")
        return (team is not None and name in team.people) or self._company_covers(name, site)

    def _company_covers(self, name: str, site: str | None) -> bool:
        if self.company is not None and name not in self.company:
            return False
        sites = self.people[name].sites
        return site is None or sites is None or site in sites


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


@dataclass(frozen=True)
class TeamFile:
    site: str
    path: Path
    region: str
    tz: tzinfo


def load_teams(
    company: Path | None,
    teams: Iterable[TeamFile],
    region: str,
    tz: tzinfo,
    sites: set[str],
    in_force: Staff | None = None,
) -> Staff:
    """The company's file and every site team's, as one staff. A person in two files is
    one person (the same phone), with each site's roles there; a `sites` entry naming a
    site that is not configured is refused (it would leave that person unreachable).
    `in_force` (a reload): a team whose file is broken stays as it was."""
    base = load_staff(company, region, tz) if company else Staff({}, {}, [], tz)
    problems = [
        Problem(f"{company}:1 people.{name}.sites", f"unknown site(s) {', '.join(unknown)}")
        for name, person in base.people.items()
        if (unknown := sorted(set(person.sites or ()) - sites))
    ]
    people = dict(base.people)
    built: dict[str, Team] = {}
    kept: list[Problem] = []
    for team in teams:
        try:
            own = load_staff(team.path, team.region, team.tz)
        except InvalidInput as exc:
            before = in_force.teams.get(team.site) if in_force else None
            if before is None:
                problems += exc.problems
                continue
            kept += exc.problems
            own = Staff(before.people, before.rota.oncall, before.rota.overrides, team.tz)
        for name, person in own.people.items():
            if name in people and people[name].phone != person.phone:
                problems.append(
                    Problem(
                        f"{team.path} people.{name}",
                        f"{name!r} is in another staff file with another phone: one name, "
                        "one person",
                    )
                )
            people.setdefault(name, person.model_copy(update={"sites": []}))
        built[team.site] = Team(own.people, Rota(own.oncall, own.overrides, team.tz))
    if problems:
        raise InvalidInput(problems)
    return Staff(
        people, base.oncall, base.overrides, tz, built, frozenset(base.people), tuple(kept)
    )
