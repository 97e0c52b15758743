"""Running real Prometheus, Alertmanager and exporter processes for the alerting tests, and the
webhook receiver Alertmanager notifies.

Every process listens on 127.0.0.1 only, writes its output to a log file that a failing test
shows, and is stopped (terminate, then kill) when its ``running`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["READY_TIMEOUT", "Webhook", "free_port", "running", "webhook_server"]

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
    argv: Sequence[str], ready_url: str, log: Path, cwd: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv``, wait until ``ready_url`` answers 200, and stop the process afterwards."""
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=output, stderr=asyncio.subprocess.STDOUT, cwd=cwd
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


class Webhook:
    """Alertmanager webhook notifications, kept in arrival order with their receiver's name
    (the last path segment of the URL they were posted to)."""

    def __init__(self) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self._arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        async with self._arrived:
            self.notifications.append((request.match_info["receiver"], payload))
            self._arrived.notify_all()
        return web.Response(text="ok")

    def delivered(self, receiver: str) -> list[dict[str, Any]]:
        """Every alert (with its own ``status``) delivered to ``receiver`` so far."""
        return [
            alert
            for name, payload in self.notifications
            if name == receiver
            for alert in payload["alerts"]
        ]

    async def wait_for(
        self, receiver: str, status: str, alertname: str, **labels: str
    ) -> dict[str, Any]:
        """The first alert delivered to ``receiver`` with this status, name and labels; waits
        for it (bound the wait with ``asyncio.timeout``)."""
        wanted = {"alertname": alertname, **labels}
        async with self._arrived:
            while True:
                for alert in self.delivered(receiver):
                    if alert["status"] == status and wanted.items() <= alert["labels"].items():
                        return alert
                await self._arrived.wait()


@contextlib.asynccontextmanager
async def webhook_server() -> AsyncIterator[tuple[Webhook, str]]:
    """A webhook receiver on 127.0.0.1 and its base URL; post to ``BASE/<receiver name>``."""
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield hook, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
