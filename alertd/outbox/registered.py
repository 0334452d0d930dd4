"""Registered SMS templates: in mainland China every text goes out as a template the
provider approved in advance, under an approved sign name (签名), with only its variables
filled in. A templates file maps each playbook text (by its template name, language and
whether it is a drill) to the provider's template code and the incident values that fill
its parameters, with the approved text for people to read.

Aliyun names its variables (`${location}`): `params` are those names. Tencent numbers
them (`{1}`, `{2}`): `params` are the values' names in that order."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, model_validator

from alertd.model import Strict
from alertd.outbox.sink import Message, Result
from alertd.playbooks.schema import Playbook
from alertd.problems import InvalidInput, Problem
from alertd.yamlfile import load_yaml, pydantic_problems

if TYPE_CHECKING:
    from alertd.sites import Site

#: the values a parameter may name: what every playbook text can use
#: (alertd/engine/templates.py `context`)
VALUES = frozenset(
    {
        "incident",
        "site",
        "building",
        "floor",
        "unit",
        "zone",
        "minutes_open",
        "time",
        "title",
        "location",
        "restore_eta",
        "ack",
        # a resident's call for help, to staff
        "resident_name",
        "resident_note",
        "resident_phone",
        "resident_text",
    }
)
#: a variable's longest value by default: Aliyun's notification templates take up to 35
#: characters a variable; Tencent's, 12 for an individual's account (a company's
#: account may register longer ones: set `param_max`)
PARAM_MAX = {"aliyun": 35, "tencent": 12}
_NAMED = re.compile(r"\$\{(\w+)\}")
_NUMBERED = re.compile(r"\{(\d+)\}")


class Registered(Strict):
    #: the playbook template it stands for (`templates:` in a playbook)
    text_of: str
    language: Literal["zh", "en"] = "zh"
    #: the drill's own template (its approved text says 演练 / DRILL)
    drill: bool = False
    #: the provider's template code (Aliyun SMS_123456789, Tencent a number)
    code: str = Field(min_length=1, max_length=64)
    params: list[str] = []
    #: the approved text, as registered
    text: str


class TemplatesFile(Strict):
    provider: Literal["aliyun", "tencent"]
    #: the approved sign name (签名): the provider puts it before every text
    sign_name: str = Field(min_length=1, max_length=30)
    param_max: int | None = Field(None, ge=1, le=500)
    templates: list[Registered] = []

    @model_validator(mode="after")
    def _consistent(self) -> TemplatesFile:
        problems = []
        seen: set[tuple[str, str, bool]] = set()
        for i, entry in enumerate(self.templates):
            key = (entry.text_of, entry.language, entry.drill)
            if key in seen:
                problems.append(f"templates.{i}: a second entry for {_name(*key)}")
            seen.add(key)
            unknown = [p for p in entry.params if p not in VALUES]
            if unknown:
                problems.append(
                    f"templates.{i}: no value named {', '.join(map(repr, unknown))} "
                    f"(one of: {', '.join(sorted(VALUES))})"
                )
            written = _variables(self.provider, entry.text)
            if written != _expected(self.provider, entry.params):
                problems.append(
                    f"templates.{i} ({entry.code}): the text's variables {written} do not "
                    f"match params {entry.params}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _variables(provider: str, text: str) -> list[str]:
    if provider == "aliyun":
        return sorted(set(_NAMED.findall(text)))
    return [str(n) for n in sorted({int(n) for n in _NUMBERED.findall(text)})]


def _expected(provider: str, params: Sequence[str]) -> list[str]:
    if provider == "aliyun":
        return sorted(set(params))
    return [str(i) for i in range(1, len(params) + 1)]


def _name(text_of: str, language: str, drill: bool) -> str:
    return f"{text_of} ({language}{', drill' if drill else ''})"


@dataclass(frozen=True)
class Filled:
    """A template ready to send: its code, sign name and parameter values."""

    code: str
    sign_name: str
    #: (name, value) in the template's order
    params: tuple[tuple[str, str], ...]
    #: parameters cut to the provider's limit
    cut: tuple[str, ...] = ()

    def text(self, approved: str) -> str:
        """What the resident reads (the approved text, filled in)."""
        out = approved
        for i, (name, value) in enumerate(self.params, 1):
            out = out.replace("${" + name + "}", value).replace("{" + str(i) + "}", value)
        return f"【{self.sign_name}】{out}"


class Templates:
    """One provider's registered templates (a file per provider, or per site)."""

    def __init__(self, spec: TemplatesFile, path: Path | str = "") -> None:
        self.spec = spec
        self.path = path
        self.provider = spec.provider
        self.limit = spec.param_max or PARAM_MAX[spec.provider]
        self._by_key: dict[tuple[str, str, bool], Registered] = {
            (t.text_of, t.language, t.drill): t for t in spec.templates
        }

    @classmethod
    def load(cls, path: Path) -> Templates:
        # no ${VAR} from the environment: ${name} is Aliyun's variable
        data, lines = load_yaml(path, expand_env=False)
        if not isinstance(data, dict):
            raise InvalidInput([Problem(f"{path}:1", "a templates file is a mapping")])
        try:
            return cls(TemplatesFile.model_validate(data), path)
        except ValidationError as exc:
            raise InvalidInput(pydantic_problems(exc, lines)) from exc

    def find(self, text_of: str, language: str, drill: bool) -> Registered | None:
        """The registered template for a playbook text; a language without its own
        takes the Chinese one (what the provider's approved texts are written in). A
        drill never goes out as a real alarm's template, nor the reverse."""
        return self._by_key.get((text_of, language, drill)) or self._by_key.get(
            (text_of, "zh", drill)
        )

    def fill(self, entry: Registered, values: Mapping[str, object]) -> Filled:
        """Its parameters from the incident's values, each cut to the provider's limit
        (a value too long fails the whole request at the provider: a shorter place
        name still tells the resident where)."""
        params: list[tuple[str, str]] = []
        cut: list[str] = []
        for name in entry.params:
            value = str(values.get(name, "")) or "-"  # an empty variable is refused
            if len(value) > self.limit:
                value = value[: self.limit - 1] + "…"
                cut.append(name)
            params.append((name, value))
        return Filled(entry.code, self.spec.sign_name, tuple(params), tuple(cut))


def unregistered(
    templates: Templates, books: Mapping[str, Playbook], site: str, where: str
) -> tuple[list[Problem], list[str]]:
    """Each playbook SMS text with no registered template at `site` (a real alarm's and a
    drill's), and what a resident reads for each that has one, filled with sample values."""
    problems: list[Problem] = []
    shown: list[str] = []
    for book_name, book in sorted(books.items()):
        for name, steps in sorted(book.texting_steps().items()):
            for drill in (False, True):
                entry = templates.find(name, "zh", drill)
                kind = "drill" if drill else "real alarm"
                if entry is None:
                    problems.append(
                        Problem(
                            where,
                            f"site {site}: playbook {book_name!r} texts {name!r} (at "
                            f"{', '.join(steps)}), which has no registered "
                            f"{templates.provider} template for a {kind} in {templates.path}",
                        )
                    )
                    continue
                filled = templates.fill(entry, SAMPLE)
                cut = f" (cut to {templates.limit}: {', '.join(filled.cut)})" if filled.cut else ""
                shown.append(
                    f"site {site} {templates.provider} {entry.code} {name} ({kind}): "
                    f"{filled.text(entry.text)}{cut}"
                )
    return problems, shown


#: what `alertd check` fills the templates with
SAMPLE = {
    "incident": "1024",
    "site": "HV",
    "building": "3",
    "floor": "12",
    "unit": "1203",
    "zone": "",
    "minutes_open": "4",
    "time": "03:12",
    "title": "火警",
    "location": "3号楼 12层 1203",
    "restore_eta": "05:00",
    "ack": "回复 OK 1024 确认",
    "resident_name": "张秀兰",
    "resident_note": "独居",
    "resident_phone": "+8613800000805",
    "resident_text": "2",
}


class SiteTemplates:
    """One provider's templates by site ("" for a site without a file of its own)."""

    def __init__(self, provider: str, by_site: Mapping[str, Templates]) -> None:
        self.provider = provider
        self._by_site = dict(by_site)

    def fill(self, message: Message) -> Filled | Result:
        """The message's registered template, filled; a permanent failure naming the text
        when there is none (the next provider may send it)."""
        templates = self._by_site.get(message.site) or self._by_site.get("")
        entry = (
            templates.find(message.template, message.language, message.drill)
            if templates is not None and message.template
            else None
        )
        if templates is None or entry is None:
            what = f"{message.template or 'this text'} ({message.language}" + (
                ", drill)" if message.drill else ")"
            )
            why = f"no registered {self.provider} template for {what}"
            return Result("permanent", why, elsewhere=True)
        return templates.fill(entry, message.values or {})


@dataclass(frozen=True)
class Codes:
    """A provider's error codes by whom they are about."""

    provider: str
    #: the number: flagged in the directory
    number: Mapping[str, str]
    #: the number's cap for today: not flagged, the next provider reaches it
    capped: Mapping[str, str]
    #: the account or its registrations: the provider stops, nobody is flagged
    account: Mapping[str, str]
    #: this message: it fails
    message: Mapping[str, str]
    throttle: frozenset[str]

    def about_number(self, code: str) -> bool:
        """The refusal is about one number (of a batch's: which one, each alone says)."""
        return code in self.number or code in self.capped

    def result(self, code: str, said: str) -> Result:
        """What a refusal means; an unknown code is retried."""
        name = f"{self.provider} {code}"
        if code in self.number:
            why = f"{self.number[code]} ({name})"
            return Result("permanent", why, flag=why)
        if code in self.capped:
            return Result("permanent", f"{self.capped[code]} ({name})", elsewhere=True)
        if code in self.account:
            return Result("unavailable", f"{self.account[code]} ({name}: {said})")
        if code in self.throttle:
            return Result("throttled", f"too many requests ({name})")
        if code in self.message:
            return Result("permanent", f"{self.message[code]} ({name})")
        return Result("retryable", f"{name}: {said}")


def for_sites(sites: Iterable[Site]) -> tuple[dict[str, dict[str, Templates]], list[Problem]]:
    """Each provider's templates by site id, for the providers each site uses (a file
    several sites share read once), and what is wrong with the files: a site whose file
    is broken has none for that provider (its texts go by the next one)."""
    read: dict[Path, Templates | None] = {}
    problems: list[Problem] = []
    out: dict[str, dict[str, Templates]] = {"aliyun": {}, "tencent": {}}
    for site in sites:
        for provider, path in site.templates:
            if provider not in site.providers:
                continue
            if path not in read:
                try:
                    read[path] = Templates.load(path)
                except InvalidInput as exc:
                    read[path] = None
                    problems += exc.problems
            if (found := read[path]) is not None:
                out[provider][site.id] = found
    return out, problems
