"""Child processes for tests: running a command to completion, a free loopback port, starting a
program and waiting until it answers, and Debian's ``prometheus`` on loopback.

Every long-running process writes its output to a log file that a failing test shows, and is stopped
(terminate, then kill) when its block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.tools import require_tool

__all__ = ["READY_TIMEOUT", "free_port", "prometheus", "run", "running", "started", "stop"]

# Seconds a process may take to answer its readiness URL.
READY_TIMEOUT = 30.0
# Seconds a terminated process may take to exit before it is killed.
STOP_TIMEOUT = 10.0


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion with ``stdin`` as its input; its exit code and text output."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def stop(process: asyncio.subprocess.Process) -> None:
    """Terminate ``process`` unless it has exited; kill it when it does not exit in time."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def started(
    argv: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv`` with its output in ``log``; stop it when the block ends."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=output, stderr=asyncio.subprocess.STDOUT, cwd=cwd, env=env
        )
    try:
        yield process
    finally:
        await stop(process)


async def _wait_ready(process: asyncio.subprocess.Process, url: str) -> bool:
    """Poll ``url`` until it answers 200 (True) or the process exits (False)."""
    async with aiohttp.ClientSession() as session:
        while process.returncode is None:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def running(
    argv: Sequence[str],
    ready_url: str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv``, wait until ``ready_url`` answers 200, and stop the process afterwards."""
    async with started(argv, log, cwd=cwd, env=env) as process:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                ready = await _wait_ready(process, ready_url)
        except TimeoutError:
            ready = False
        if not ready:
            output = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"{argv[0]} not ready at {ready_url}:\n{output[-4000:]}")
        yield process


@contextlib.asynccontextmanager
async def prometheus(settings: dict[str, Any], directory: Path, *flags: str) -> AsyncIterator[str]:
    """Debian's ``prometheus`` with the configuration ``settings`` on a free loopback port, its
    files in ``directory`` and ``flags`` added to its command line; yields its base URL."""
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    base = f"http://127.0.0.1:{free_port()}"
    argv = [
        require_tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'prometheus'}",
        f"--web.listen-address={base.removeprefix('http://')}",
        *flags,
    ]
    async with running(argv, f"{base}/-/ready", directory / "prometheus.log"):
        yield base
