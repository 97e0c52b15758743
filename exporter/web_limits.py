"""Serving the app within limits, so that no client can take the descriptors, the connections or
the time that probes and scrapes need.

- ``raise_open_files_limit``: at start the soft limit of open files goes up to the hard limit
  (systemd's default soft limit, 1,024, is too low for a server that also opens a connection
  per probe).
- ``Guard`` wraps aiohttp's protocol factory with public asyncio API: at most
  ``max_connections`` client connections at once, capped to a quarter of the open-files limit so
  that three quarters stay for probes, the store and the listening sockets (when all are taken,
  the oldest connection that owes a request head makes room, so idle connections cannot keep a
  scrape out; only when every connection is busy is the new one closed); and a deadline on each
  connection: a request head must arrive within ``read_timeout`` of the connection opening or of
  the previous response, so an idle or trickling connection is closed (and counted).
- ``read_body_within``: a middleware that answers ``408`` to a request whose body has not fully
  arrived within ``read_timeout`` of its head, so an incomplete body is not held open.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp is imported by the functions that serve, so that ``check-config`` (whose command line
# reads ``ServerLimits``' defaults) does not import it.

__all__ = [
    "Guard",
    "ServerCounts",
    "ServerLimits",
    "connection_cap",
    "raise_open_files_limit",
    "read_body_within",
    "serve",
]

# Raised to when the hard limit is unlimited.
_UNLIMITED_FILES = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """``--web.max-connections`` and ``--web.read-timeout``."""

    max_connections: int = 512
    read_timeout: float = 30.0


@dataclass(slots=True)
class ServerCounts:
    """What the self collector exports about client connections, and the open ones by their
    transport (for the middleware)."""

    limit: int = 0
    open: int = 0
    rejected: int = 0
    timed_out: int = 0
    connections: dict[object, _Connection] = field(default_factory=dict, repr=False)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit; returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def connection_cap(max_connections: int) -> int:
    """``max_connections``, at most a quarter of the open-files limit (at least 4)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(4, min(max_connections, soft // 4))


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's handler inside, the cap and the deadline around it."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        # While the connection owes a request head: by when (loop time). The timer is not
        # moved at every request but set again, when it fires early, for the deadline then.
        self._owing = False
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast("asyncio.Transport", base)
        counts = self._guard.counts
        if counts.open >= counts.limit and not self._evict_one_idle():
            counts.rejected += 1
            transport.abort()
            return
        self._admitted = True
        self._transport = transport
        counts.open += 1
        counts.connections[transport] = self
        self.idle()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._stop_timer()
        self._admitted = False
        self._guard.counts.open -= 1
        self._guard.counts.connections.pop(self._transport, None)
        self._inner.connection_lost(exc)

    def _evict_one_idle(self) -> bool:
        """Close the oldest connection that owes a request head (idle, or trickling one)
        to make room: a new client (a scrape) gets in unless every connection is busy."""
        counts = self._guard.counts
        for connection in counts.connections.values():
            if connection._owing and connection._transport is not None:
                counts.rejected += 1
                connection._stop_timer()
                connection._transport.abort()  # connection_lost follows: open goes down
                counts.open -= 1
                connection._admitted = False
                counts.connections.pop(connection._transport, None)
                connection._inner.connection_lost(None)
                return True
        return False

    def busy(self) -> None:
        """A request head arrived: its handler runs without the connection's deadline."""
        self._owing = False

    def idle(self) -> None:
        """The connection now owes a request head within the read timeout."""
        loop = asyncio.get_running_loop()
        self._owing = True
        self._due = loop.time() + self._guard.limits.read_timeout
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._expire)

    def _stop_timer(self) -> None:
        self._owing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self._owing:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._due:  # a later request moved the deadline
            self._timer = loop.call_at(self._due, self._expire)
            return
        self._owing = False
        if self._transport is not None and not self._transport.is_closing():
            self._guard.counts.timed_out += 1
            self._transport.close()


@dataclass(slots=True)
class Guard:
    """The protocol factory ``loop.create_server`` gets: aiohttp's, within the limits."""

    factory: Callable[[], asyncio.Protocol]
    limits: ServerLimits
    counts: ServerCounts

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self, self.factory())


def read_body_within(read_timeout: float, counts: ServerCounts) -> Any:
    """The middleware: the connection's deadline is off while a request is handled, and a
    request whose body has not fully arrived within ``read_timeout`` of its head is answered
    ``408`` (its handler cancelled), so an incomplete body is not held open. The handler still
    reads the body itself, as a stream."""
    from aiohttp import web

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = counts.connections.get(request.transport)
        if connection is not None:
            connection.busy()
        task = asyncio.current_task()
        expired = False

        def expire() -> None:
            nonlocal expired
            if not request.content.is_eof() and task is not None:
                expired = True
                task.cancel()

        timer = None
        if request.body_exists and not request.content.is_eof():
            timer = asyncio.get_running_loop().call_later(read_timeout, expire)
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if not expired or task is None or task.uncancel() > 0:
                raise
            counts.timed_out += 1
            raise web.HTTPRequestTimeout(
                text=f"request body not received within {read_timeout:g}s\n",
                headers={"Connection": "close"},
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
            if connection is not None:
                connection.idle()

    return bounded


def serve(
    app: web.Application,
    host: str | None,
    port: int,
    limits: ServerLimits,
    counts: ServerCounts,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``web.run_app`` does, through a ``Guard``."""
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        try:
            server = runner.server
            assert server is not None
            guard = Guard(server, limits, counts)
            listening = await loop.create_server(guard, host or None, port)
            try:
                await asyncio.Event().wait()  # until SIGINT or SIGTERM ends the loop
            finally:
                listening.close()
        finally:
            await runner.cleanup()

    task = loop.create_task(main())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, web.GracefulExit):
                loop.run_until_complete(task)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
