"""The webhook receiver Alertmanager notifies in the alerting tests; it listens on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["Webhook", "webhook_server"]


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
