"""asyncio servers on 127.0.0.1 built from small stream handlers, for tests that need a peer
which behaves in one exact way (silent, hostile, scripted)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Servers:
    """asyncio servers on 127.0.0.1 that end every connection they accepted when stopped."""

    _servers: list[asyncio.Server] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> int:
        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._handlers.add(task)
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass  # the probe hung up first, as probes do
            finally:
                writer.transport.abort()
                self._writers.discard(writer)
                self._handlers.discard(task)

        server = await asyncio.start_server(connected, "127.0.0.1", 0, ssl=ssl_context)
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
