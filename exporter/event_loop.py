"""The exporter's event loop where uvloop is installed: uvloop's, answering numeric hosts itself.

uvloop's ``sock_connect`` passes the address it is given to ``getaddrinfo`` even when it is
already numeric, and uvloop answers that in libuv's thread pool. aiohttp connects sockets that
way (through aiohappyeyeballs, after resolving the name itself), so every connection a probe
opened made a round trip to a worker thread: about 70 us of CPU and 180 us of wall time inside
the measured connect phase (``benchmarks/README.md``). Here a numeric host is answered by the C
library at once (``AI_NUMERICHOST`` never looks anything up); a name goes to uvloop as before.
"""

from __future__ import annotations

import socket
from typing import Any

import uvloop

__all__ = ["NumericHostsLoop"]


class NumericHostsLoop(uvloop.Loop):
    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, ...]]:
        if isinstance(host, str) and _numeric(host):
            return socket.getaddrinfo(
                host, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )


def _numeric(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (a scope such as ``%eth0`` goes to uvloop)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False
