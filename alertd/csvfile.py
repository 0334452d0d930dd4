"""CSV files people edit in a spreadsheet: rows with the line they start on, so that a
problem can say `file:line`."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from alertd.problems import InvalidInput, Problem


def read_rows(
    path: Path, required: Iterable[str], *, what: str = "file"
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, cells) for each row; cells are stripped. Raises InvalidInput when the file
    cannot be read or lacks a required column, ValueError (per row, from `cells`) for a
    row with more fields than the header."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput([Problem(str(path), f"cannot read {what}: {exc.strerror}")]) from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise InvalidInput([Problem(f"{path}:1", f"missing column(s): {', '.join(missing)}")])
        line = reader.line_num
        # one string for each distinct value: a devices file of 26,000 rows says the
        # same profile, site and building thousands of times, and the rows are kept
        seen: dict[str, str] = {}

        def one(text: str) -> str:
            return seen.setdefault(text, text)

        for row in reader:
            start, line = line + 1, reader.line_num
            if None in row:
                yield start, {"__error__": "more fields than columns in the header"}
                continue
            yield start, {one(str(k).strip()): one((v or "").strip()) for k, v in row.items()}


def check_row(cells: dict[str, str]) -> dict[str, str]:
    """The cells of a well-formed row; ValueError for a malformed one."""
    if "__error__" in cells:
        raise ValueError(cells["__error__"])
    return cells
