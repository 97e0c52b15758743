"""The exporter keeps serving scrapes and probing with few descriptors and hostile clients: the
open-files limit raised at start, client connections capped, idle and slow requests cut off."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.metrics import sample_value
from tests.processes import free_port, running

ROOT = Path(__file__).resolve().parent.parent
# Runs the exporter with a low open-files limit, as a service manager would set it.
LIMITED = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2]))); "
    "os.execv(sys.executable, [sys.executable, '-m', 'exporter', *sys.argv[3:]])"
)


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> str:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/ok"


@pytest.fixture
async def exporter(upstream: str, tmp_path: Path) -> AsyncIterator[str]:
    config = tmp_path / "lookout.yml"
    config.write_text(
        "defaults: {interval: 200ms, timeout: 150ms}\n"
        f"targets:\n  - {{name: api, kind: http, url: '{upstream}'}}\n"
        "heartbeats:\n  - {name: job, period: 1h, grace: 1h}\n"
    )
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        LIMITED,
        "128",
        "256",
        "--config",
        str(config),
        "--storage.path",
        str(tmp_path / "data"),
        "--web.read-timeout",
        "1s",
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    base = f"http://127.0.0.1:{port}"
    async with running(argv, f"{base}/-/healthy", tmp_path / "exporter.log", cwd=ROOT):
        yield base


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200
        return await response.text()


async def test_idle_connections_beyond_the_descriptors_keep_no_scrape_or_probe_out(
    exporter: str,
) -> None:
    port = int(exporter.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(200):  # more than the exporter could hold with 256 descriptors
            sock = socket.create_connection(("127.0.0.1", port))
            idle.append(sock)
        await asyncio.sleep(0.3)
        for _ in range(5):
            text = await scrape(exporter)
        assert sample_value(text, "process_max_fds") == 256, "soft limit raised to the hard"
        assert sample_value(text, "lookout_http_server_connections_limit") == 64
        connections = sample_value(text, "lookout_http_server_connections")
        assert connections is not None
        assert connections <= 64
        rejected = sample_value(text, "lookout_http_server_connections_rejected_total")
        assert rejected is not None
        assert rejected >= 30  # beyond the cap (the rest may still wait in the listen backlog)
        runs = sample_value(text, "lookout_probe_duration_seconds_count", target="api")
        await asyncio.sleep(0.5)
        text = await scrape(exporter)
        later = sample_value(text, "lookout_probe_duration_seconds_count", target="api")
        assert runs is not None
        assert later is not None
        assert later > runs, "probes went on"
        assert sample_value(text, "lookout_probe_success", target="api") == 1
    finally:
        for sock in idle:
            sock.close()


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the peer closed ``sock`` (reading whatever it sent first)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(65536):
        pass
    return time.monotonic() - started


async def test_a_request_head_that_trickles_is_cut_off_after_the_read_timeout(
    exporter: str,
) -> None:
    port = int(exporter.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        waited = await asyncio.to_thread(_closed_within, sock, 10)
    assert 0.5 < waited < 6
    text = await scrape(exporter)
    timed_out = sample_value(text, "lookout_http_server_requests_timed_out_total")
    assert timed_out is not None
    assert timed_out >= 1


async def test_a_kept_alive_connection_is_cut_off_a_read_timeout_after_its_last_answer(
    exporter: str,
) -> None:
    port = int(exporter.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        opened = time.monotonic()
        while time.monotonic() - opened < 2.5:  # well past the 1 s read timeout of the opening
            sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
            await asyncio.sleep(0.4)
        waited = await asyncio.to_thread(_closed_within, sock, 10)
    assert 0.3 < waited < 6


async def test_an_incomplete_request_body_is_answered_408_after_the_read_timeout(
    exporter: str,
) -> None:
    port = int(exporter.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /ping/job HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        started = time.monotonic()
        sock.settimeout(10)
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert 0.5 < waited < 6
