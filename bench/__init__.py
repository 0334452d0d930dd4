"""Benchmarks: `make bench`. Each module runs with `python -m bench.<name> [--quick]`."""

from __future__ import annotations

import argparse


def quick_flag(doc: str | None) -> bool:
    """Parse the one option every benchmark has: --quick, a short run."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    return bool(parser.parse_args().quick)


__all__: list[str] = ["quick_flag"]
