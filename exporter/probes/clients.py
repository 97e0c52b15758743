"""Clients that are expensive to create and safe to share between probes: the aiohttp sessions
of the HTTP probes (with the connector they connect through) and the system nameserver of the
DNS probes.

``SharedClients`` lives as long as the scheduler and is closed with it; every probe run gets it
in its ``ProbeContext``. Nothing here depends on a prober.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType

from exporter.addresses import IP_FAMILIES
from exporter.probes.budget import BODY_BUDGET  # the default, re-exported
from exporter.probes.http_timing import phase_trace_config
from exporter.reasons import ProbeFailure, Reason

__all__ = [
    "BODY_BUDGET",
    "RESOLV_CONF",
    "BodyBudget",
    "HttpSessions",
    "SharedClients",
    "SystemNameserver",
]

RESOLV_CONF = "/etc/resolv.conf"


class BodyBudget:
    """The bytes of response bodies all HTTP probes together may hold for their checks.

    A probe that keeps a body for its checks reserves, once, as much as it may keep (its
    limit, or the Content-Length when that is smaller), at most the whole budget; it waits in
    line while the budget is taken, and gives back what it did not use as soon as the body is
    read, the rest when its checks are done. One reservation per probe, so no probe waits while
    holding part of the budget. Probes without body checks keep no body and reserve nothing.
    """

    def __init__(self, limit: int = BODY_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        self.waits = 0
        self._line: deque[tuple[int, asyncio.Future[None]]] = deque()

    def resize(self, limit: int) -> None:
        self.limit = limit
        self._admit()

    async def reserve(self, wanted: int) -> int:
        """Reserve up to ``wanted`` bytes (at most the whole budget); returns the amount."""
        amount = min(wanted, self.limit)
        if not self._line and self.held + amount <= self.limit:
            self.held += amount
            return amount
        self.waits += 1
        admitted = asyncio.get_running_loop().create_future()
        entry = (amount, admitted)
        self._line.append(entry)
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():
                self.release(amount)  # admitted just as the wait was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._line.remove(entry)
                self._admit()
            raise
        return amount

    def release(self, amount: int) -> None:
        self.held -= amount
        self._admit()

    def _admit(self) -> None:
        while self._line:
            amount, admitted = self._line[0]
            if admitted.done():  # cancelled while waiting
                self._line.popleft()
                continue
            if self.held + min(amount, self.limit) > self.limit and self.held > 0:
                return
            self._line.popleft()
            self.held += amount
            admitted.set_result(None)


class DirectConnector(aiohttp.TCPConnector):
    """aiohttp's connector, connecting to a single resolved address with the event loop's own
    ``create_connection``.

    aiohttp connects every address list through a Python socket and ``loop.sock_connect``
    (its happy-eyeballs path, by ``aiohappyeyeballs``) and then hands the socket to
    ``create_connection``; under uvloop that costs about 0.2 ms more CPU per connection than
    uvloop's own connect: probing 10,000 targets took 1.11-1.15 times the CPU that way. With
    several addresses there is a race to run, and an IPv6 scope id survives only in a
    sockaddr: those take aiohttp's path.

    ``_wrap_create_connection`` is not public: aiohttp's minor version is pinned in
    ``pyproject.toml``, and ``tests/test_http_connector.py`` fails when its signature changes
    or a probe stops taking this path. Connect and TLS are told apart as on aiohttp's own
    path (the trace config, ``ObservedSSLContext``).
    """

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[AddrInfoType],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, Any]:  # aiohttp's ResponseHandler, from a private module
        family, _type, proto, _name, address = addr_infos[0]
        if len(addr_infos) != 1 or (len(address) > 2 and address[3]):
            return await super()._wrap_create_connection(
                *args,
                addr_infos=addr_infos,
                req=req,
                timeout=timeout,
                client_error=client_error,
                **kwargs,
            )
        factory: Callable[[], Any] = args[0]
        try:
            async with asyncio.timeout(timeout.sock_connect):
                return await self._loop.create_connection(
                    factory, str(address[0]), int(address[1]), family=family, proto=proto, **kwargs
                )
        except ssl.CertificateError as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc


class HttpSessions:
    """aiohttp sessions shared by all HTTP probes, one per (IP family, connection reuse).

    Sessions are expensive to create and cheap to share; per-target settings (TLS context,
    headers, proxy) go with each request. Without reuse the connector closes each connection
    after its response, so every probe measures a real connect and TLS handshake.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}

    def get(self, ip_family: str, reuse: bool) -> aiohttp.ClientSession:
        key = (ip_family, reuse)
        session = self._sessions.get(key)
        if session is None or session.closed:
            # The resolved addresses are tried in aiohttp's order (happy eyeballs for
            # several), and connect and TLS are told apart by the trace config and
            # ObservedSSLContext.
            connector = DirectConnector(
                family=IP_FAMILIES[ip_family], force_close=not reuse, use_dns_cache=False, limit=0
            )
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                trace_configs=[phase_trace_config()],
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


@dataclass(slots=True)
class SystemNameserver:
    """The first ``nameserver`` of resolv.conf, read again only when the file changes."""

    path: str = RESOLV_CONF
    _mtime: float | None = field(default=None, init=False)
    _address: str | None = field(default=None, init=False)

    def get(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            raise ProbeFailure(Reason.DNS, f"cannot read {self.path}: {exc.strerror}") from exc
        if mtime != self._mtime:
            self._address = _first_nameserver(self.path)
            self._mtime = mtime
        if self._address is None:
            raise ProbeFailure(Reason.DNS, f"no nameserver in {self.path}")
        return self._address


def _first_nameserver(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        return None
    return None


@dataclass(slots=True)
class SharedClients:
    """Clients that are expensive to create and safe to share between probes."""

    http: HttpSessions = field(default_factory=HttpSessions)
    dns: SystemNameserver = field(default_factory=SystemNameserver)
    bodies: BodyBudget = field(default_factory=BodyBudget)

    async def close(self) -> None:
        await self.http.close()
