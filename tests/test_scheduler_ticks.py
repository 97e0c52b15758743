"""Probes start on the scheduler's 50 ms ticks, so probes due close together share a wake-up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.clock import SystemClock
from exporter.config import Source, load_text
from exporter.probes.clients import SharedClients
from exporter.scheduler import TICK, Scheduler


async def test_probes_start_on_ticks_whatever_their_offsets(aiohttp_server: AiohttpServer) -> None:
    arrivals: list[float] = []

    async def ok(_request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/"
    text = "defaults: {interval: 1s, timeout: 500ms}\ntargets:\n" + "".join(
        f"  - {{name: spread-{i}, kind: http, url: '{url}'}}\n" for i in range(20)
    )
    clients = SharedClients()
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=64)
    scheduler.reconcile(load_text(text, Source("t", Path(".")), {}).targets)
    try:
        for _ in range(100):
            if len(arrivals) >= 40:
                break
            await asyncio.sleep(0.05)
    finally:
        await scheduler.close()
        await clients.close()
    assert len(arrivals) >= 40, "every target probed twice within 5 s"
    # The stable offsets spread the 20 targets over the 1 s interval. Started on ticks, the
    # requests arrive a few ms after a multiple of TICK (the first run of a target may be later,
    # while everything starts); spread evenly, only 30 % would arrive within 15 ms of a tick.
    after_tick = sorted(round(at % TICK, 4) for at in arrivals)
    on_tick = sum(offset <= 0.015 for offset in after_tick)
    assert on_tick >= 0.7 * len(arrivals), f"seconds after a tick: {after_tick}"
