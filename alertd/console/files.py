"""The daemon's files as the console reads them (playbooks, staff, devices): parsed again
only when one changed, not on every page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple(
        (f.name, st.st_mtime_ns, st.st_size) for f in files if f.exists() for st in [f.stat()]
    )


class Reread:
    def __init__(self) -> None:
        self._kept: dict[Path, tuple[tuple[tuple[str, int, int], ...], Any]] = {}

    def get(self, path: Path, load: Callable[[Path], T]) -> T:
        """`load(path)`, or what it gave last time if no file changed since. What
        raises (a broken file) is not kept: the next page says so again."""
        stamp = _stamp(path)
        kept = self._kept.get(path)
        if kept is None or kept[0] != stamp:
            kept = self._kept[path] = (stamp, load(path))
        value: T = kept[1]
        return value
