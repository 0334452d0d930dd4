"""Where the daemon runs: on one CPU core unless told otherwise (`cpu: all`).

The event loop and the store's writer thread take turns holding Python's global lock
(the GIL): the writer lets go of it for every SQLite statement and takes it back after.
With the two threads on different cores, each hand-over wakes a thread on the other core
and they queue behind each other; on one core a hand-over is cheap. `python -m bench.e2e`
on a 2-core machine, three interleaved pairs of runs, one core against the kernel's
placement: 500 alarms/s p50 1.9-2.6 ms against 3.6-5.2 and p99 7.4-10.7 against
10.3-13.2; 1,663-1,994 incidents/s taken at 2,000/s offered against 1,506-1,760; 100/s
alike (p99 4.5-6.0 against 4.4-6.2). What is given up: SQLite's own work, done with
the GIL let go, no longer runs beside the loop's Python, which costs less than the
hand-overs did; a thread waiting for the disk (fsync) needs no core either way. The core
is the last the process may use (CPU 0 takes most interrupts); an operator chooses it
with the service's own affinity (systemd's `CPUAffinity=`), and the kernel moves other
processes off a busy core."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def pin(setting: str) -> None:
    """Keep this process on one of the CPUs it may use; call it before any thread starts
    (a thread keeps the affinity of the thread that starts it). The kernel places the
    threads with `cpu: all`, on a single CPU, without CPU affinity on this system, or in
    a sandbox that refuses it (the daemon runs all the same)."""
    if setting == "all" or not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return
    cpu = max(allowed)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("alertd could not keep to CPU %d (%s): the kernel places its threads", cpu, exc)
        return
    log.info(
        "alertd runs on CPU %d of the %d it may use (cpu: one; `cpu: all` lets the kernel "
        "place its threads)",
        cpu,
        len(allowed),
    )
