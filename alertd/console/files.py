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
        self._kept: dict[tuple[Path, ...], tuple[tuple[tuple[str, int, int], ...], Any]] = {}

    def get(self, path: Path, load: Callable[[Path], T]) -> T:
        """`load(path)`, or what it gave last time if no file changed since. What
        raises (a broken file) is not kept: the next page says so again."""
        return self.get_all((path,), lambda: load(path))

    def get_all(self, paths: tuple[Path, ...], load: Callable[[], T]) -> T:
        """`load()` of what several files make together (every site's devices files)."""
        stamp = tuple(s for path in paths for s in _stamp(path))
        kept = self._kept.get(paths)
        if kept is None or kept[0] != stamp:
            kept = self._kept[paths] = (stamp, load())
        value: T = kept[1]
        return value
