"""Where the daemon runs: on one CPU core unless told otherwise (`cpu: all`).

The event loop and the store's writer thread take turns holding Python's global lock
(the GIL): the writer lets go of it for every SQLite statement and takes it back after.
With the two threads on different cores, each hand-over wakes a thread on the other core
and they queue behind each other; on one core a hand-over is cheap. `python -m bench.e2e`
on a 2-core machine, the daemon on one core against the kernel's choice (two runs each):
500 alarms/s p99 7.3 and 8.1 ms against 9.1 and 11.7, and 1,803 and 1,994 incidents/s
taken at 2,000/s offered against 1,718 and 1,715. Little is given up: the GIL lets one
thread run Python at a time either way, and a thread waiting for the disk (fsync) needs
no core. The core is the last the process may use (CPU 0 takes most interrupts), so an
operator chooses it with the service's own affinity (systemd's `CPUAffinity=`)."""

from __future__ import annotations

import os


def pin(setting: str) -> str | None:
    """Keep this process on one of the CPUs it may use, before it starts any thread
    (threads keep the affinity of the thread that starts them). Returns what was done,
    for the log; None when nothing was: `all`, a single CPU, or a system without CPU
    affinity."""
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    return (
        f"alertd runs on CPU {cpu} of the {len(allowed)} it may use (cpu: one; "
        "`cpu: all` lets the kernel place its threads)"
    )
