"""Bad input is reported as problems that say what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # "config/alertd.yaml:12 mqtt.port" or "devices.csv:7"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class InvalidInput(Exception):
    """One or more problems that make a file unusable as a whole."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
