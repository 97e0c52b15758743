"""Running real Prometheus, Alertmanager and exporter processes for the alerting tests.

Every process listens on 127.0.0.1 only, writes its output to a log file that a failing test
shows, and is stopped (terminate, then kill) when its ``running`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

__all__ = ["READY_TIMEOUT", "free_port", "running"]

# Seconds a process may take to answer its readiness URL.
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
            await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def running(
    argv: Sequence[str], ready_url: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv``, wait until ``ready_url`` answers 200, and stop the process afterwards."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
    try:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                ready = await _wait_ready(process, ready_url)
        except TimeoutError:
            ready = False
        if not ready:
            output_text = await asyncio.to_thread(log.read_text)
            raise AssertionError(f"{argv[0]} not ready at {ready_url}:\n{output_text[-4000:]}")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
