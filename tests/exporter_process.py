"""Running the real ``lookout-exporter`` command as a child process for end-to-end tests: as a
server that answers on a loopback port, or as a command that runs to completion."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from tests.processes import free_port, running

ROOT = Path(__file__).resolve().parent.parent


class ExporterProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, await response.text()

    async def post(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.post(self.url + path) as response:
            return response.status, await response.text()

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def log_text(self) -> str:
        return self.log.read_text()


@contextlib.asynccontextmanager
async def run_exporter(
    args: Sequence[str],
    tmp_path: Path,
    env: dict[str, str] | None = None,
    ready: str = "/-/healthy",
) -> AsyncIterator[ExporterProcess]:
    """Start the exporter on a free loopback port; wait until ``ready`` answers 200; stop it
    afterwards."""
    port = free_port()
    log = tmp_path / f"exporter-{port}.log"
    if not any(arg.startswith("--storage.path") for arg in args):
        args = [*args, "--storage.path", str(tmp_path / "data")]
    argv = [sys.executable, "-m", "exporter", *args, "--web.listen-address", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}{ready}"
    environment = {**os.environ, **(env or {})}
    async with running(argv, url, log, cwd=ROOT, env=environment) as process:
        yield ExporterProcess(process, port, log)


async def exporter_command(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m exporter ARGS`` from this tree, with ``env`` added to the environment, to
    completion (30 s at most); its exit code, standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
