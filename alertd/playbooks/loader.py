"""Load every playbook in a folder. A broken file is reported (file:line) and disabled;
the others load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from alertd.playbooks.schema import Playbook
from alertd.problems import InvalidInput, Problem
from alertd.yamlfile import LineMap, load_yaml, pydantic_problems


@dataclass(frozen=True)
class Playbooks:
    enabled: dict[str, Playbook] = field(default_factory=dict)
    #: file -> why it is disabled
    disabled: dict[str, list[Problem]] = field(default_factory=dict)
    #: where each enabled playbook's keys are (file:line), for later checks
    lines: dict[str, LineMap] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return [p for problems in self.disabled.values() for p in problems]


def load_playbooks(folder: Path) -> Playbooks:
    out = Playbooks()
    if not folder.is_dir():
        out.disabled[str(folder)] = [Problem(str(folder), "playbooks folder not found")]
        return out
    sources: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            data, lines = load_yaml(path, expand_env=False)
            playbook = Playbook.model_validate(data)
        except InvalidInput as exc:
            out.disabled[str(path)] = exc.problems
            continue
        except ValidationError as exc:
            out.disabled[str(path)] = pydantic_problems(exc, lines)
            continue
        if playbook.name in out.enabled:
            out.disabled[str(path)] = [
                Problem(
                    lines.where(("name",)),
                    f"playbook name {playbook.name!r} is already used by {sources[playbook.name]}",
                )
            ]
            continue
        out.enabled[playbook.name] = playbook
        out.lines[playbook.name] = lines
        sources[playbook.name] = path
    return out
