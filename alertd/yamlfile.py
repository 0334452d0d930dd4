"""YAML loading that remembers line numbers and fills in `${VAR}` from the environment.

Validation errors from pydantic carry a key path; `LineMap` turns that path back into
`file:line` so that a supervisor editing a file can find the mistake.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alertd.csvfile import decode
from alertd.problems import InvalidInput, Problem

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]


class LineMap:
    def __init__(
        self, path: Path, lines: dict[Path_, int], from_env: dict[Path_, str] | None = None
    ) -> None:
        self.path = path
        self._lines = lines
        #: values filled in from the environment (they may be secrets): never echoed
        self.from_env = from_env or {}

    def where(self, loc: Sequence[str | int]) -> str:
        """`file:line key.path` for the deepest part of `loc` that has a line."""
        key = tuple(loc)
        while key and key not in self._lines:
            key = key[:-1]
        line = self._lines.get(key, 1)
        dotted = ".".join(str(p) for p in loc)
        return f"{self.path}:{line}" + (f" {dotted}" if dotted else "")


def load_yaml(
    path: Path, *, expand_env: bool = True, missing_ok: bool = False
) -> tuple[Any, LineMap]:
    """Parse `path`; raise InvalidInput naming file:line for syntax errors or missing env
    vars (`missing_ok`: a missing one is left empty, for commands that need no secrets)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput([Problem(str(path), f"cannot read: {exc.strerror}")]) from exc
    # as the CSV files: UTF-8, or GB18030/GBK as a Chinese Windows editor saves it
    text = decode(data, what="loading", name=str(path), hint="save it as UTF-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput([Problem(f"{path}:{line}", f"invalid YAML: {reason}")]) from exc
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    from_env: dict[Path_, str] = {}
    data = (
        _convert(node, (), lines, problems, path, expand_env, from_env) if node is not None else {}
    )
    if missing_ok:
        problems = [p for p in problems if not p.message.startswith("environment variable")]
    if problems:
        raise InvalidInput(problems)
    return data, LineMap(path, lines, from_env)


def _convert(
    node: yaml.Node,
    at: Path_,
    lines: dict[Path_, int],
    problems: list[Problem],
    path: Path,
    expand_env: bool,
    from_env: dict[Path_, str],
) -> Any:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                problems.append(
                    Problem(f"{path}:{key_node.start_mark.line + 1}", f"duplicate key {key!r}")
                )
            out[key] = _convert(value_node, (*at, key), lines, problems, path, expand_env, from_env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*at, i), lines, problems, path, expand_env, from_env)
            for i, item in enumerate(node.value)
        ]
    value = yaml.SafeLoader(" ").construct_object(node, deep=True)
    if expand_env and isinstance(value, str) and "${" in value:
        value = _expand(value, f"{path}:{lines[at]}", problems)
        from_env[at] = value
    return value


def _expand(value: str, where: str, problems: list[Problem]) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(Problem(where, f"environment variable {name} is not set"))
        return ""

    return _ENV.sub(sub, value)


def pydantic_problems(exc: Any, lines: LineMap, prefix: Path_ = ()) -> list[Problem]:
    """Turn a pydantic ValidationError into problems with file:line and key."""
    out = []
    for err in exc.errors():
        loc = [*prefix, *(p for p in err["loc"] if not _is_union_tag(p))]
        secret = any(s in str(p).lower() for p in loc for s in _SECRET_WORDS)
        hidden = lines.from_env.get(tuple(loc))
        message = _message(err, echo=not secret and hidden is None)
        if hidden:  # a secret in the wrong field must not be echoed, even by a validator
            message = (
                message.replace(hidden, "***") + " (the value from the environment is not shown)"
            )
        out.append(Problem(lines.where(loc), message))
    return out


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


#: a URL may carry a password (storage.url) or a token (a webhook robot's)
_SECRET_WORDS = ("password", "token", "secret", "key", "url")


def _message(err: Mapping[str, Any], *, echo: bool) -> str:
    msg = str(err["msg"])
    if err.get("type") == "extra_forbidden":
        return "unknown key (check the spelling; see config/alertd.example.yaml)"
    if (
        echo
        and "input" in err
        and err.get("type") not in ("missing",)
        and not isinstance(err["input"], dict | list)
    ):
        return f"{msg} (got {err['input']!r})"
    return msg
