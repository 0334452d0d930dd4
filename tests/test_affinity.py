"""`alertd run` keeps to one CPU core unless told otherwise, every one of its threads, and
says so; a typo in the setting is named with its line."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from alertd.config import load_config
from alertd.problems import InvalidInput
from tests.broker import Broker
from tests.helpers import start_daemon, wait_for
from tests.mqtt_tools import write_config
from tests.test_mqtt import leak_devices

needs_two = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs a machine with two CPUs or more",
)


def cpu_list(text: str) -> set[int]:
    """The kernel's list form: "0-3,6"."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def threads_cpus(pid: int) -> dict[str, set[int]]:
    """Each thread of `pid` (name and id) and the CPUs it may run on."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines())
        found[f"{fields['Name']} {task.name}"] = cpu_list(fields["Cpus_allowed_list"].strip())
    return found


@needs_two
@pytest.mark.parametrize("setting", ["one", "all"])
def test_every_thread_of_the_daemon_keeps_to_one_core_unless_told_otherwise(
    tmp_path: Path, broker: Broker, setting: str
) -> None:
    extra = "" if setting == "one" else "cpu: all\n"  # `one` is the default
    # a client id of its own: the broker keeps a session's subscriptions for the next
    # client with the same id (the other tests')
    config = write_config(
        tmp_path, broker, leak_devices(1), extra=extra, client_id=f"alertd-cpu-{setting}"
    )
    log = tmp_path / "alertd.log"
    daemon = start_daemon(config, log)
    try:
        wait_for(lambda: b"connected to MQTT" in log.read_bytes(), 20, "alertd to connect")
        threads = threads_cpus(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    assert len(threads) >= 2, threads  # the event loop and the store's writer at least
    allowed = os.sched_getaffinity(0)
    if setting == "one":
        assert all(cpus == {max(allowed)} for cpus in threads.values()), threads
        assert f"alertd runs on CPU {max(allowed)}" in log.read_text()
    else:
        assert all(cpus == allowed for cpus in threads.values()), threads
        assert "alertd runs on CPU" not in log.read_text()


def test_a_typo_in_the_setting_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "alertd.yaml"
    path.write_text("log_level: INFO\ncpu: on\n")
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{path}:2 cpu"), problem
    assert "'one'" in str(problem), problem
    assert "'all'" in str(problem), problem
