"""A real Mosquitto on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


#: ports handed out by this process (never twice)
_GIVEN: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range (32768 and up): a port the
    kernel chose for the asking would be its to give again as the source port of any
    outgoing connection (a client of the broker, of PostgreSQL), and a server started
    on it a moment later could not bind it."""
    while True:
        port = random.randint(20_000, 32_000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


def wait_for_port(port: int, timeout: float = 10.0, *, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'} in {timeout} s")


class Broker:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed: run `make test`, which installs it")
        self.port = port or free_port()
        self.host = "127.0.0.1"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        (workdir / "data").mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"  # stay the user that owns the test folders
            "persistence true\n"
            f"persistence_location {workdir / 'data'}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 200000\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.log}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM saves the persistence file; SIGKILL is a crash."""
        if self.proc is not None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
            self.proc = None
            wait_for_port(self.port, up=False)
