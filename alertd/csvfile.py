"""CSV files people edit in a spreadsheet: rows with the line they start on, so that a
problem can say `file:line` in the name the user knows the file by.

Excel writes what its locale says: UTF-8 with or without a BOM, GB18030/GBK on Chinese
Windows ("CSV" there is not UTF-8), UTF-16 for "Unicode text", and semicolons where the
decimal separator is a comma. All of these are read; a file that is none of them, or
whose quotes do not close, is refused as a whole, naming the line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from alertd.problems import InvalidInput, Problem

#: tried in order; GB18030 is a superset of GBK and GB2312
ENCODINGS = ("utf-8-sig", "gb18030")
DELIMITERS = (",", ";", "\t", "|")


def read_rows(
    path: Path, required: Iterable[str], *, what: str = "file", name: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, cells) for each row of the file at `path`; `name` is how problems call it
    (the user's own file name for an upload). See `rows_of`."""
    shown = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput([Problem(shown, f"cannot read {what}: {exc.strerror}")]) from exc
    return rows_of(data, required, what=what, name=shown)


def rows_of(
    data: bytes, required: Iterable[str], *, what: str, name: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, cells) for each row; cells are stripped. Raises InvalidInput (before any
    row) when the text cannot be decoded or lacks a required column, and (before the
    last row is handed out: the rows are read first) when a quote never closes;
    a row with more fields than the header has `__error__` (see `check_row`)."""
    text = decode(data, what=what, name=name)
    required = list(required)
    first = text.split("\n", 1)[0]
    delimiter = _delimiter(first, required)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    line = 1
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise InvalidInput(
                [
                    Problem(
                        f"{name}:1",
                        f"missing column(s): {', '.join(missing)} (the header has: "
                        f"{', '.join(h for h in header if h) or 'nothing'})",
                    )
                ]
            )
        line = reader.line_num
        # one string for each distinct value: a devices file of 26,000 rows says the
        # same profile, site and building thousands of times, and the rows are kept
        seen: dict[str, str] = {}

        def one(value: str) -> str:
            return seen.setdefault(value, value)

        for row in reader:
            start, line = line + 1, reader.line_num
            if None in row:
                rows.append((start, {"__error__": "more fields than columns in the header"}))
                continue
            rows.append(
                (start, {one(str(k).strip()): one((v or "").strip()) for k, v in row.items()})
            )
    except csv.Error as exc:
        why = (
            'a quote (") opened on this line never closes, so the rest of the file '
            "would be one cell"
            if "unexpected end of data" in str(exc)
            else f'malformed CSV ({exc}): a quote inside a cell must be doubled ("")'
        )
        raise InvalidInput([Problem(f"{name}:{line + 1}", f"{what} refused: {why}")]) from None
    return iter(rows)


def decode(
    data: bytes, *, what: str, name: str, hint: str = 'save it from the spreadsheet as "CSV UTF-8"'
) -> str:
    """UTF-8 (with or without its BOM), UTF-16 with its BOM, or GB18030 (GBK's superset)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        encodings = ENCODINGS
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        [
            Problem(
                name,
                f"{what} refused: the text is neither UTF-8 nor GB18030/GBK; {hint}",
            )
        ]
    )


def _delimiter(header: str, required: list[str]) -> str:
    """The separator whose split of the header finds the most required columns."""

    def found(delimiter: str) -> int:
        cells = {c.strip().strip('"') for c in header.split(delimiter)}
        return sum(c in cells for c in required)

    return max(DELIMITERS, key=found)  # ties: the first, a comma


def check_row(cells: dict[str, str]) -> dict[str, str]:
    """The cells of a well-formed row; ValueError for a malformed one."""
    if "__error__" in cells:
        raise ValueError(cells["__error__"])
    return cells
