"""Response bodies are streamed: counted in bounded chunks, kept only for checks that need them,
and within one budget of body bytes in flight for all probes together."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.clock import SystemClock
from exporter.probes.clients import BodyBudget, SharedClients
from exporter.probes.http import HttpObservation
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runtime import Options
from tests.conftest import config_from_text
from tests.metrics import sample_value

MiB = 1024 * 1024


async def streaming(request: web.Request) -> web.StreamResponse:
    """``?mib=N`` MiB in 64 KiB chunks, chunked (no Content-Length)."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b"x" * 65536
    for _ in range(int(request.query.get("mib", "12")) * 16):
        await response.write(chunk)
    await response.write_eof()
    return response


async def sized(request: web.Request) -> web.StreamResponse:
    """``?kib=N`` KiB with a Content-Length; with ``&together=K`` the bodies start only once K
    requests have their heads, so that K probes want the budget at once."""
    size = int(request.query["kib"]) * 1024
    response = web.StreamResponse(headers={"Content-Length": str(size)})
    await response.prepare(request)
    together = int(request.query.get("together", "1"))
    heads = request.app[HEADS]
    heads.append(request)
    if len(heads) >= together:
        request.app[ALL_IN].set()
    await request.app[ALL_IN].wait()
    await response.write(b"y" * size)
    await response.write_eof()
    return response


HEADS = web.AppKey("heads", list[web.Request])
ALL_IN = web.AppKey("all_in", asyncio.Event)


@pytest.fixture
async def base(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app[HEADS] = []
    app[ALL_IN] = asyncio.Event()
    app.router.add_get("/stream", streaming)
    app.router.add_get("/sized", sized)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def targets(url: str, expect: str, count: int = 1, scheduler: str = "") -> str:
    items = "".join(
        f"  - {{name: t{i}, kind: http, url: '{url}', timeout: 5s, expect: {expect}}}\n"
        for i in range(count)
    )
    return f"{scheduler}\ntargets:\n{items}"


async def probe_all(text: str, tmp_path: Path, clients: SharedClients) -> list[ProbeResult]:
    loaded = config_from_text(text, tmp_path)
    return list(
        await asyncio.gather(*(run_probe(t, clients, SystemClock()) for t in loaded.targets))
    )


async def traced_peak(
    text: str, tmp_path: Path, clients: SharedClients
) -> tuple[list[ProbeResult], int]:
    """The results and the peak of memory allocated by Python while the probes ran."""
    loaded = config_from_text(text, tmp_path)
    tracemalloc.start()
    try:
        results = [await run_probe(t, clients, SystemClock()) for t in loaded.targets]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return results, peak


async def test_a_12_mib_streaming_body_without_body_checks_is_never_held(
    base: str, tmp_path: Path
) -> None:
    clients = SharedClients()
    try:
        (result,), peak = await traced_peak(
            targets(f"{base}/stream?mib=12", "{status: [2xx]}"), tmp_path, clients
        )
        assert result.reason is Reason.SIZE  # past the 10 MiB limit for checks, as before
        assert isinstance(result.observation, HttpObservation)
        assert result.observation.response_size == 10 * MiB + 1
        assert peak < 2 * MiB, "chunks are counted and dropped, not collected"
        assert clients.bodies.held == 0
        assert clients.bodies.waits == 0
    finally:
        await clients.close()


async def test_a_body_check_holds_the_body_once_and_gives_the_budget_back(
    base: str, tmp_path: Path
) -> None:
    clients = SharedClients()
    try:
        (result,), peak = await traced_peak(
            targets(f"{base}/stream?mib=4", "{body_matches: ['^x+$']}"), tmp_path, clients
        )
        assert result.success, result.message
        # The bytes once, their text once; no list of chunks joined into a copy.
        assert peak < 4 * MiB * 2 + MiB
        assert clients.bodies.held == 0
    finally:
        await clients.close()


async def test_probes_waiting_for_the_budget_never_hold_more_than_it(
    base: str, tmp_path: Path
) -> None:
    clients = SharedClients(bodies=BodyBudget(3 * MiB))
    highest = 0
    running = True

    async def watch() -> None:
        nonlocal highest
        while running:
            highest = max(highest, clients.bodies.held)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        text = targets(f"{base}/sized?kib=2048&together=4", "{body_matches: ['^y+$']}", count=4)
        results = await probe_all(text, tmp_path, clients)
        assert all(r.success for r in results), [r.message for r in results]
        assert 2 * MiB <= highest <= 3 * MiB
        assert clients.bodies.waits >= 1
        assert clients.bodies.held == 0
    finally:
        running = False
        await watcher
        await clients.close()


async def test_a_body_larger_than_the_whole_budget_fails_as_size_naming_the_budget(
    base: str, tmp_path: Path
) -> None:
    clients = SharedClients(bodies=BodyBudget(1 * MiB))
    try:
        (result,) = await probe_all(
            targets(f"{base}/stream?mib=12", "{json_schema: {type: object}}"), tmp_path, clients
        )
        assert result.reason is Reason.SIZE
        assert "scheduler.body_bytes_in_flight" in result.message
        assert clients.bodies.held == 0
    finally:
        await clients.close()


async def test_a_cancelled_wait_leaves_the_budget_whole() -> None:
    budget = BodyBudget(100)
    assert await budget.reserve(80) == 80
    waiting = asyncio.create_task(budget.reserve(50))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.release(80)
    assert budget.held == 0
    assert await budget.reserve(500) == 100  # at most the whole budget


async def test_the_budget_is_configured_and_exported(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("scheduler: {body_bytes_in_flight: 32MiB}\ntargets: []\n")
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    text = await (await client.get("/metrics")).text()
    assert sample_value(text, "lookout_http_body_budget_bytes") == 32 * MiB
    assert sample_value(text, "lookout_http_body_bytes_in_flight") == 0
    assert sample_value(text, "lookout_http_body_budget_waits_total") == 0
