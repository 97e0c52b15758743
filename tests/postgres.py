"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, ``initdb`` and
``pg_ctl`` into a temporary directory, listening on 127.0.0.1 only.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` system user that Debian's package creates (commands run through ``runuser``);
otherwise it belongs to the user running the tests. ``tests/run`` installs the package when it
is missing; under ``CI=true`` a test that needs it fails instead of being skipped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.processes import free_port
from tests.tools import unavailable

__all__ = ["PostgresServer", "postgres_binaries", "postgres_server"]

# Seconds pg_ctl waits for the server to start or stop.
PG_CTL_TIMEOUT = 60
SUPERUSER = "lookout"


def postgres_binaries() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``; fails under CI and skips
    elsewhere when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if versions:
        return Path(versions[-1]).parent
    unavailable("postgresql is not installed (tests/run installs it with apt-get)")


class PostgresServer:
    """One cluster: ``start``, ``stop``, and ``create_database`` for a fresh database's URL."""

    def __init__(self, binaries: Path, directory: Path, owner: str | None) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.owner = owner
        self.port = free_port()

    def _run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / argv[0]), *argv[1:]]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=PG_CTL_TIMEOUT + 30
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(
                f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}\n{log[-3000:]}"
            )
        return result

    def init(self) -> None:
        self._run(
            [
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--no-sync",
                "--encoding",
                "UTF8",
            ]
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
            )

    def start(self) -> None:
        self._run(
            ["pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log), "--wait",
             f"--timeout={PG_CTL_TIMEOUT}"]
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            ["pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait",
             f"--timeout={PG_CTL_TIMEOUT}"]
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self._run(
            ["psql", "--no-psqlrc", "--quiet", "--dbname", self.url(), "--command",
             f"CREATE DATABASE {name}"]
        )  # fmt: skip
        return self.url(name)


def _owner() -> str | None:
    """The user the cluster runs as: ``postgres`` when the tests run as root, else the tester."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs the postgres system user (Debian's postgresql package)")
    return "postgres"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A started cluster in a new temporary directory, stopped and removed afterwards."""
    binaries = postgres_binaries()
    owner = _owner()
    directory = Path(tempfile.mkdtemp(prefix="lookout-postgres-"))
    try:
        if owner is not None:
            shutil.chown(directory, owner)
        server = PostgresServer(binaries, directory, owner)
        server.init()
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(AssertionError):
                server.stop("immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
