"""Shared by the status page, API and browser tests: a loopback service with a healthy, a broken
and a hostile endpoint, a config probing it, and a wait until every target has probed.

The hostile endpoint answers with HTML and script in a header and in its body; the config's
checks fail on both, so the failure messages the page shows carry that markup.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter.config import Config, Source, load_text
from exporter.runtime import RUNTIME
from tests.clock import FakeClock

# Would set window.pwned if it ever ran in a browser.
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
HOSTILE_QUERY = '?q="><script>window.pwned=3</script>'


def empty_config(**changes: Any) -> Config:
    """A config without targets, with ``changes`` to its fields."""
    return replace(load_text("targets: []\n", Source("test", Path.cwd()), {}), **changes)


def service_app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async def hostile(_request: web.Request) -> web.Response:
        return web.Response(text=f"<html>{HOSTILE}</html>", headers={"X-Evil": HOSTILE})

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/hostile", hostile)
    return app


def write_config(directory: Path, base_url: str) -> Path:
    """A config with a healthy, a broken and a hostile target, probed every 300ms."""
    path = directory / "lookout.yml"
    path.write_text(
        f"""
defaults: {{interval: 300ms, timeout: 250ms}}
targets:
  - name: a-healthy
    kind: http
    url: {base_url}/ok
    labels: {{team: web}}
  - name: z-broken
    kind: http
    url: {base_url}/broken
  - name: m-hostile
    kind: http
    url: '{base_url}/hostile{HOSTILE_QUERY}'
    http: {{response_excerpts: true}}
    expect:
      headers: [{{name: X-Evil, matches: '^fine$'}}]
      body_not_matches: ['<script>.*?</script>']
""",
        encoding="utf-8",
    )
    return path


async def wait_probed(app: web.Application, probes: int = 1, within: float = 5.0) -> None:
    """Until every target has at least ``probes`` results (fails after ``within`` seconds)."""
    runtime = app[RUNTIME]
    deadline = time.monotonic() + within
    while any(len(s.recent) < probes for s in runtime.scheduler.stats.values()):
        assert time.monotonic() < deadline, "targets were not probed in time"
        await asyncio.sleep(0.02)


HEARTBEATS_CONFIG = """
heartbeats:
  - {name: a-fine, period: 1h, grace: 1h}
  - {name: b-new, period: 1h, grace: 1h}
  - {name: c-broken, period: 1h, grace: 1h}
  - {name: d-late, period: 1m, grace: 10m}
  - {name: e-down, period: 1m, grace: 1m}
  - {name: f-workers, period: 1h, grace: 1h, instances: 2}
  - {name: g-secret, period: 1h, grace: 1h, token: s3cret}
"""


async def ping_heartbeats(client: Any, clock: FakeClock) -> None:
    """Pings that leave every state once ``clock`` advanced 3 minutes afterwards.

    a-fine up after an earlier failure, b-new new, c-broken failed (exit code 3, hostile
    output), d-late late, e-down down, f-workers up with one of two instances alive and a 42 s
    run, g-secret failed with a body only its token may read.
    """

    async def ping(path: str, body: str = "", **headers: str) -> None:
        response = await client.post(path, data=body.encode(), headers=headers)
        assert response.status == 200, await response.text()

    await ping("/ping/a-fine/1", "an old failure")
    for name in ("a-fine", "d-late", "e-down"):
        await ping(f"/ping/{name}")
    await ping("/ping/c-broken", "first run fine")
    await ping("/ping/c-broken/3", f"Traceback (most recent call last):\n{HOSTILE}\nboom")
    await ping("/ping/f-workers/start?instance=w1&rid=r1")
    clock.advance(42)
    await ping("/ping/f-workers?instance=w1&rid=r1", "done")
    await ping("/ping/g-secret/fail", "password=hunter2", Authorization="Bearer s3cret")
    clock.advance(180)
