"""Hostile HTTP servers: endless headers, endless bodies, silence and resets give the right reason
within the timeout and leak no socket or task."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from exporter.clock import SystemClock
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from tests.conftest import config_from_text
from tests.servers import Handler, Servers


async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def endless_header(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
    while True:
        writer.write(b"a" * 4096)
        await writer.drain()


async def endless_body(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()


async def reset_at_once(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        pytest.param(silent, Reason.TIMEOUT, id="silent"),
        pytest.param(endless_header, Reason.PROTOCOL, id="endless-header"),
        pytest.param(endless_body, Reason.SIZE, id="endless-body"),
        pytest.param(reset_at_once, Reason.RESET, id="reset"),
    ],
)
async def test_a_hostile_server_fails_in_time_and_leaks_nothing(
    servers: Servers, tmp_path: Path, handler: Handler, reason: Reason
) -> None:
    port = await servers.start(handler)
    text = f"targets: [{{name: h, kind: http, url: 'http://127.0.0.1:{port}/', timeout: 500ms}}]"
    probe_target = config_from_text(text, tmp_path).targets[0]
    clients = SharedClients()
    fds_before = len(os.listdir("/proc/self/fd"))
    tasks_before = len(asyncio.all_tasks())
    for _ in range(5):
        result = await run_probe(probe_target, clients, SystemClock())
        assert result.reason is reason, result.message
        assert result.duration < 0.8
    await clients.close()
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= tasks_before
    assert len(os.listdir("/proc/self/fd")) <= fds_before
