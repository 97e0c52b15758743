"""Shared by the probe test modules: targets on a loopback port, a peer that says one thing,
the hostile peers that the TLS and SMTP tests both face, and the check that a probe fails
against one in time, with its reason, without leaking tasks or sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from exporter.reasons import Reason
from tests.probes.conftest import Prober
from tests.servers import Handler


def loopback_target(kind: str, port: int, settings: dict[str, Any]) -> dict[str, Any]:
    """A ``kind`` target at 127.0.0.1:``port``, with its ``kind:`` block when it has settings."""
    target: dict[str, Any] = {"kind": kind, "address": f"127.0.0.1:{port}"}
    if settings:
        target[kind] = settings
    return target


def says(data: bytes) -> Handler:
    """A peer that sends ``data`` once, then listens until the probe hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        await reader.read()

    return serve


async def never_speaks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def endless_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"220-welcome, and welcome again\r\n" * 64)
        await writer.drain()


async def resets_mid_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


async def assert_fails_in_time_without_leaks(
    probe: Prober,
    target: dict[str, Any],
    reason: Reason,
    tasks_and_fds: Callable[[], tuple[int, int]],
) -> None:
    """``target`` fails with ``reason``: once, then 3 rounds of 20 probes at once, each within
    1.5 s, leaving as many tasks and descriptors open as before the rounds."""
    # Silence must end at the timeout; every other hostility must fail sooner, with its reason.
    target = {**target, "timeout": "400ms" if reason is Reason.TIMEOUT else "3s"}
    first = await probe(target)  # warms up caches (the client context) before counting
    assert first.reason is reason, first.message
    await asyncio.sleep(0.05)
    before = tasks_and_fds()
    for _ in range(3):  # 3 rounds of 20 at once
        for result in await asyncio.gather(*(probe(target) for _ in range(20))):
            assert result.reason is reason, result.message
            assert result.duration < 1.5
    await asyncio.sleep(0.05)
    assert tasks_and_fds() == before
