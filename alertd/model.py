"""The base of every schema read from a file: unknown keys are errors (a typo must not
silently disable a setting), numbers are finite (`.inf` seconds would stop a loop for
good), and values are frozen once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: the longest time a file may set (a timer, a window, a hold): a year; more is a typo,
#: and a date that far ahead no longer fits the calendar
YEAR_S = 366 * 86400


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
