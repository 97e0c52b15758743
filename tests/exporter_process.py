"""Running the real ``lookout-exporter`` command as a child process for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    args: Sequence[str], tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[ExporterProcess]:
    """Start the exporter on a free loopback port; wait until it answers; stop it afterwards."""
    port = free_port()
    log = tmp_path / f"exporter-{port}.log"
    if not any(arg.startswith("--storage.path") for arg in args):
        args = [*args, "--storage.path", str(tmp_path / "data")]
    with log.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exporter",
            *args,
            "--web.listen-address",
            f"127.0.0.1:{port}",
            stdout=sink,
            stderr=sink,
            env={**os.environ, **(env or {})},
            cwd=Path(__file__).parent.parent,
        )
    exporter = ExporterProcess(process, port, log)
    try:
        for _ in range(200):
            if process.returncode is not None:
                raise AssertionError(f"exporter exited early:\n{log.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                if (await exporter.get("/-/healthy"))[0] == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"exporter did not start:\n{log.read_text()}")
        yield exporter
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
