"""The base of every schema read from a file: unknown keys are errors (a typo must not
silently disable a setting), and values are frozen once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
