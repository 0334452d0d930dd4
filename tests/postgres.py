"""A real PostgreSQL server in a temporary folder, started and stopped by the tests: Debian's
server binaries, `initdb` and `pg_ctl` run as the `postgres` user when the tests run as root
(PostgreSQL refuses to run as root). `make test` installs `postgresql` when it is missing."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.broker import free_port


def server_bin() -> Path | None:
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class Cluster:
    """One throwaway cluster: trust authentication on loopback only, a superuser `alertd`."""

    def __init__(
        self, port: int | None = None, *, durable: bool = False, standby_of: Cluster | None = None
    ) -> None:
        """`durable`: fsync as a production server does (benchmarks); tests do without.
        `standby_of`: a streaming standby of that (running) cluster, by pg_basebackup."""
        bin_dir = server_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: run `make test`, which installs it")
        self.bin = bin_dir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.durable = durable
        # not under pytest's root-only temporary folder: the postgres user must reach it
        self.dir = Path(tempfile.mkdtemp(prefix="alertd-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o700)
        if standby_of is not None:
            self._run(
                "pg_basebackup",
                *("-h", standby_of.host, "-p", str(standby_of.port), "-U", "alertd"),
                *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast"),
            )
            return
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "alertd",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-instructions",
            "--locale=C.UTF-8",
        )

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://alertd@{self.host}:{self.port}/{dbname}"

    def start(self) -> Cluster:
        options = (
            f"-c port={self.port} -c listen_addresses={self.host} "
            f"-c unix_socket_directories={self.dir} -c max_connections=200"
        )
        if not self.durable:  # a throwaway cluster: an OS crash may lose it
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        return self

    def promote(self) -> None:
        """A standby becomes a primary (what Patroni or a person does when one dies)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash of the server."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
