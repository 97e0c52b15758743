"""Connectivity canaries: when every canary fails too, a failed probe is the exporter's own
outage (``exporter_offline``) and leaves the target's confirmed state alone; when a canary
passes again, failures are the targets' own again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter.app import create_app
from exporter.config import ConfigError, Source, load_text
from exporter.runtime import RUNTIME, Options
from tests.metrics import sample_value


class Switch:
    """A loopback HTTP server that answers 200 while ``up``, else 503."""

    def __init__(self) -> None:
        self.up = True
        self.requests = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=200 if self.up else 503)


async def started(aiohttp_server: AiohttpServer, switch: Switch) -> str:
    app = web.Application()
    app.router.add_get("/", switch.handle)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/"


async def eventually(condition: Callable[[], object], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def metrics(client: TestClient[web.Request, web.Application]) -> str:
    return await (await client.get("/metrics")).text()


async def test_canaries_failing_turn_every_failed_probe_into_exporter_offline_and_back(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    network, canary = Switch(), Switch()
    backend, canary_url = (
        await started(aiohttp_server, network),
        await started(aiohttp_server, canary),
    )
    text = f"""
defaults: {{interval: 200ms, timeout: 150ms}}
targets:
  - {{name: orders, kind: http, url: '{backend}'}}
  - {{name: billing, kind: http, url: '{backend}'}}
connectivity:
  interval: 200ms
  canaries:
    - {{name: well-known, kind: http, url: '{canary_url}'}}
"""
    config = load_text(text, Source("t.yml", tmp_path), {})
    client = await aiohttp_client(create_app(Options(storage_path=tmp_path), config))
    runtime = client.app[RUNTIME]
    stats = runtime.scheduler.stats
    await eventually(lambda: all(s.confirmed for s in stats.values()))
    assert sample_value(await metrics(client), "lookout_exporter_connectivity_ok") == 1

    # The exporter's network goes: targets and canary fail together.
    network.up = canary.up = False
    await eventually(lambda: all(s.failures for s in stats.values()))
    text_now = await metrics(client)
    assert sample_value(text_now, "lookout_exporter_connectivity_ok") == 0
    assert sample_value(text_now, "lookout_connectivity_canary_success", canary="well-known") == 0
    for name in ("orders", "billing"):
        assert sample_value(
            text_now, "lookout_probe_failures_total", target=name, reason="exporter_offline"
        )
        assert (
            sample_value(text_now, "lookout_probe_failures_total", target=name, reason="status")
            is None
        )
        # The confirmed state stays what it was: this says nothing about the target.
        assert sample_value(text_now, "lookout_probe_success", target=name) == 1
    last = stats["orders"].last
    assert last is not None
    assert last.message.startswith("every connectivity canary failed too; the probe said status")

    # The network is back but the backend is really down: the targets' own failures again.
    canary.up = True
    await eventually(
        lambda: all(
            s.last.reason is not None and s.failures.get(s.last.reason) and s.confirmed is False
            for s in stats.values()
            if s.last
        )
    )
    text_now = await metrics(client)
    assert sample_value(text_now, "lookout_exporter_connectivity_ok") == 1
    for name in ("orders", "billing"):
        assert sample_value(text_now, "lookout_probe_failures_total", target=name, reason="status")
        assert sample_value(text_now, "lookout_probe_success", target=name) == 0


async def test_one_round_of_canary_probes_serves_many_failing_targets(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    network, canary = Switch(), Switch()
    network.up = canary.up = False
    backend, canary_url = (
        await started(aiohttp_server, network),
        await started(aiohttp_server, canary),
    )
    targets = "".join(f"  - {{name: t{i}, kind: http, url: '{backend}'}}\n" for i in range(20))
    text = (
        "defaults: {interval: 1s, timeout: 500ms}\ntargets:\n"
        + targets
        + "connectivity:\n  interval: 1h\n  canaries:\n"
        + f"    - {{name: c, kind: http, url: '{canary_url}'}}\n"
    )
    config = load_text(text, Source("t.yml", tmp_path), {})
    client = await aiohttp_client(create_app(Options(storage_path=tmp_path), config))
    stats = client.app[RUNTIME].scheduler.stats
    await eventually(lambda: all(s.probes for s in stats.values()))
    # The start-up check and the failures of 20 targets within the verdict's 5 s lifetime.
    assert canary.requests <= 3, canary.requests


def test_canary_names_must_be_unique(tmp_path: Path) -> None:
    text = (
        "connectivity:\n  canaries:\n"
        "    - {name: c, kind: http, url: 'http://127.0.0.1:1/'}\n"
        "    - {name: c, kind: http, url: 'http://127.0.0.1:2/'}\n"
        "targets: []\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_text(text, Source("t.yml", tmp_path), {})
    assert [str(p) for p in raised.value.problems] == [
        "t.yml:4: connectivity.canaries[1].name: duplicate canary name 'c' "
        "(first at connectivity.canaries[0])"
    ]
