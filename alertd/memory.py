"""The cycle collector, kept from pausing the daemon under load.

Python's full collections walk every live object. With 26,000 devices loaded, or
thousands of incidents open, each took 80-250 ms on the event loop, every few seconds
under a message storm: every alarm in that moment waited behind it. So what start-up
loaded (devices, routes, playbooks, open incidents), which lives as long as the daemon,
is frozen out of collections; the young generations are collected as usual (what dies
young, most garbage, goes there); and the full collection, which finds cycles among
long-lived objects, runs on a fixed schedule instead of whenever the heap grew.
Objects that die are freed by reference counting whatever their generation."""

from __future__ import annotations

import gc
import time

#: how often the full collection runs
SWEEP_EVERY_S = 600.0
#: gen1 collections before an automatic full one: never
_NEVER = 1_000_000_000

_last_sweep = time.monotonic()


def settle() -> None:
    """Start-up is done: freeze what it loaded, leave full collections to `sweep`."""
    global _last_sweep
    gc.collect()
    gc.freeze()
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, _NEVER)
    _last_sweep = time.monotonic()


def sweep() -> None:
    """The full collection, when it is due (the daemon's ticker calls this)."""
    global _last_sweep
    if time.monotonic() - _last_sweep >= SWEEP_EVERY_S:
        gc.collect()
        _last_sweep = time.monotonic()
