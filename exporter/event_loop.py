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
        if isinstance(host, str):
            try:
                return socket.getaddrinfo(
                    host, port, family, type, proto, flags | socket.AI_NUMERICHOST
                )
            except socket.gaierror:
                pass  # a name (or no address of that family): uvloop's answer
        return await super().getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )
