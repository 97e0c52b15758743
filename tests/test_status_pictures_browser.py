"""The pictures of the status pages in a real headless Chromium, at 1400 px and at 400 px wide:
uptime bars, sparklines, the target's latency chart, the worker pool's instances and the public
page load without console errors or CSP violations, with one target and with 10,000, and leave
screenshots in ``tests/artifacts/`` (those of ``docs/status-page.md``).

The one-target exporter runs under a controlled clock moved a bucket at a time, its target
failing in some buckets, so the bar's cells in the browser can be compared with the history."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter import config
from exporter.app import create_app
from exporter.runtime import RUNTIME, Options
from tests.clock import FakeClock
from tests.test_status_browser import (
    ARTIFACTS,
    DevTools,
    chromium,
    console_errors,
    evaluate,
    navigate,
    open_page,
    screenshot,
)

BUCKET = 900.0
WIDTHS = (1400, 400)
# Buckets, oldest first: whether the target fails in each.
PATTERN = (False, False, True, False, True, True, False, False)


def flaky_app(failing: list[bool]) -> web.Application:
    async def flaky(_request: web.Request) -> web.Response:
        return web.Response(status=503 if failing[0] else 200, text="fine")

    app = web.Application()
    app.router.add_get("/health", flaky)
    return app


ONE_TARGET = """
defaults: {{interval: 500ms, timeout: 500ms}}
targets:
  - {{name: orders-api, kind: http, url: '{base}/health', labels: {{service: orders}}}}
heartbeats:
  - {{name: orders-consumer, period: 1h, grace: 1h, instances: 2}}
status_page:
  refresh: 30s
  public:
    enabled: true
    title: Example status
    groups:
      - {{name: orders, title: Orders, targets: [{{name: orders-api, title: Orders API}}],
         heartbeats: [{{name: orders-consumer, title: Order processing}}]}}
"""


async def set_width(devtools: DevTools, session: str, width: int) -> None:
    await devtools.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
        session=session,
    )


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[tuple[DevTools, str]]:
    async with (
        chromium(tmp_path / "profile") as browser_url,
        aiohttp.ClientSession() as http,
        http.ws_connect(browser_url, max_msg_size=0) as ws,
    ):
        devtools = DevTools(ws)
        try:
            yield devtools, await open_page(devtools)
        finally:
            await devtools.close()


async def probed_once_more(app: web.Application, clock: FakeClock, seconds: float) -> None:
    """Moves the clock by ``seconds`` (at least the interval), then waits for the next probe."""
    stats = app[RUNTIME].scheduler.stats["orders-api"]
    before = stats.probes
    clock.advance(seconds)
    deadline = time.monotonic() + 5
    while stats.probes == before:
        assert time.monotonic() < deadline, "the target was not probed"
        await asyncio.sleep(0.02)


async def test_pictures_of_one_target_in_chromium(
    aiohttp_server: Any, tmp_path: Path, browser: tuple[DevTools, str]
) -> None:
    failing = [False]
    service = await aiohttp_server(flaky_app(failing))
    path = tmp_path / "lookout.yml"
    path.write_text(ONE_TARGET.format(base=str(service.make_url("")).rstrip("/")))
    clock = FakeClock()  # 1.8e9, the start of a bucket
    options = Options(config_path=str(path), storage_path=tmp_path / "data")
    app = create_app(options, config.load(str(path)), clock)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        for index, fails in enumerate(PATTERN):
            failing[0] = fails
            # Two probes in each bucket, 60 s and 120 s after its start.
            await probed_once_more(app, clock, 60 if index == 0 else BUCKET - 60)
            await probed_once_more(app, clock, 60)
            for query in ("?instance=w1", "?instance=w2" if index < 3 else "?instance=w1"):
                async with http.get(server.make_url(f"/ping/orders-consumer{query}")) as reply:
                    assert reply.status == 200
        failing[0] = False
        await probed_once_more(app, clock, 3 * 3600)  # w2 is no longer alive 3 hours later
        async with http.get(server.make_url("/ping/orders-consumer?instance=w1")) as reply:
            assert reply.status == 200
    history = app[RUNTIME].scheduler.stats["orders-api"].history
    expected = ["down" if fails else "up" for fails in PATTERN] + ["empty"] * 11 + ["up"]
    recorded = [
        {0: "empty", 1: "up", 2: "degraded", 3: "down"}[s] for s in history.states(clock.time())
    ]
    assert recorded[-len(expected) :] == expected, recorded[-len(expected) :]

    devtools, session = browser
    base = str(server.make_url("/"))
    shots = []
    for width in WIDTHS:
        await set_width(devtools, session, width)
        suffix = "" if width == 1400 else "-mobile"

        start = await navigate(devtools, session, base)
        bar = await evaluate(
            devtools,
            session,
            "Array.from(document.querySelectorAll('tr.target .bar i'))"
            ".map(c => [c.className, c.style.flexGrow])",
        )
        runs = [[state, str(length)] for length, state, _ in _runs(recorded)]
        assert bar == runs
        assert await evaluate(devtools, session, "document.querySelectorAll('svg.spark').length")
        assert await evaluate(devtools, session, "document.scripts.length") == 0
        meta = "document.querySelector('meta[http-equiv=refresh]').content"
        assert await evaluate(devtools, session, meta) == "30"
        shots.append(await screenshot(devtools, session, f"status-pictures-index{suffix}.png"))
        assert console_errors(devtools, session, start) == []

        start = await navigate(devtools, session, f"{base}targets/orders-api")
        cells = await evaluate(
            devtools,
            session,
            "Array.from(document.querySelectorAll('.bar.cells i')).map(c => c.className)",
        )
        assert cells == recorded
        titles = await evaluate(
            devtools,
            session,
            "Array.from(document.querySelectorAll('.bar.cells i')).map(c => c.title)",
        )
        third = history.buckets(clock.time())[-len(expected) + 2]
        assert third.probes == 2
        assert third.failures == third.probes
        assert titles[-len(expected) + 2].endswith(
            f"{third.probes} probes, {third.probes} failed (last: status), p50 0.1 ms, max 0.1 ms"
        )
        failures = await evaluate(
            devtools, session, "document.querySelectorAll('.chart rect.failed').length"
        )
        assert failures == PATTERN.count(True)
        shown = await evaluate(devtools, session, "document.body.innerText")
        assert "for 3h" in shown  # up since the last failed bucket's end
        shots.append(await screenshot(devtools, session, f"status-pictures-target{suffix}.png"))
        assert console_errors(devtools, session, start) == []

        start = await navigate(devtools, session, f"{base}heartbeats/orders-consumer")
        workers = await evaluate(
            devtools,
            session,
            "Array.from(document.querySelectorAll('tr.instance'))"
            ".map(r => [r.cells[0].textContent, r.dataset.alive])",
        )
        assert workers == [["w1", "true"], ["w2", "false"]]
        shots.append(await screenshot(devtools, session, f"status-pictures-heartbeat{suffix}.png"))
        assert console_errors(devtools, session, start) == []

        start = await navigate(devtools, session, f"{base}status")
        public = await evaluate(devtools, session, "document.body.innerText")
        assert "Orders API" in public
        assert "orders-api" not in public
        assert "/health" not in await evaluate(
            devtools, session, "document.documentElement.outerHTML"
        )
        shots.append(await screenshot(devtools, session, f"status-public{suffix}.png"))
        assert console_errors(devtools, session, start) == []

        start = await navigate(devtools, session, f"{base}?refresh=off")
        no_meta = "document.querySelector('meta[http-equiv]') === null"
        assert await evaluate(devtools, session, no_meta)
        assert console_errors(devtools, session, start) == []
    for shot in shots:
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def _runs(states: list[str]) -> list[tuple[int, str, str]]:
    runs: list[tuple[int, str, str]] = []
    for state in states:
        if runs and runs[-1][1] == state:
            runs[-1] = (runs[-1][0] + 1, state, "")
        else:
            runs.append((1, state, ""))
    return runs


MANY = 10_000


async def test_ten_thousand_targets_in_chromium(
    aiohttp_server: Any, tmp_path: Path, browser: tuple[DevTools, str]
) -> None:
    """10,000 targets in 20 services, none due for an hour; their histories are written as a day
    of probes would write them, every seventh target failing in one bucket. The page shows the
    20 groups collapsed (their rows not sent), a group's own page its 500 rows with pictures."""
    lines = ["defaults: {interval: 1h, timeout: 1s}", "targets:"]
    lines += [
        f"  - {{name: api-{i:05d}, kind: tcp, address: '127.0.0.1:9', "
        f"labels: {{service: svc-{i % 20:02d}}}}}"
        for i in range(MANY)
    ]
    path = tmp_path / "lookout.yml"
    path.write_text("\n".join(lines) + "\n")
    clock = FakeClock()
    app = create_app(Options(config_path=str(path)), config.load(str(path)), clock)
    server = await aiohttp_server(app)
    now = clock.time()
    for number, stats in enumerate(app[RUNTIME].scheduler.stats.values()):
        history = stats.history
        last = history.index(now)
        for index in range(last - history.count + 1, last + 1):
            failed = number % 7 == 0 and index == last - 10
            history.add(index * BUCKET, 0.002 + (index % 5) / 1000, failed)
    devtools, session = browser
    for width in WIDTHS:
        await set_width(devtools, session, width)
        suffix = "" if width == 1400 else "-mobile"
        start = await navigate(devtools, session, str(server.make_url("/")))
        # No group is failing: each is collapsed to its heading and a link to its own page.
        rows = await evaluate(devtools, session, "document.querySelectorAll('tr.target').length")
        assert rows == 0
        links = await evaluate(
            devtools,
            session,
            "Array.from(document.querySelectorAll('details a')).map(a => a.textContent)",
        )
        assert links == ["show its 500 targets"] * 20
        shot = await screenshot_viewport(devtools, session, f"status-10000{suffix}.png")
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert console_errors(devtools, session, start) == []

        start = await navigate(devtools, session, str(server.make_url("/?group=svc-03")))
        bars = await evaluate(
            devtools, session, "document.querySelectorAll('tr.target .bar').length"
        )
        assert bars == MANY // 20
        assert await evaluate(devtools, session, "document.querySelectorAll('svg.spark').length")
        shot = await screenshot_viewport(devtools, session, f"status-10000-group{suffix}.png")
        assert console_errors(devtools, session, start) == []


async def screenshot_viewport(devtools: DevTools, session: str, name: str) -> Path:
    """The visible part only: a page of 10,000 rows is too tall for one capture."""
    shot = await devtools.call("Page.captureScreenshot", {"format": "png"}, session=session)
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.write_bytes(base64.b64decode(shot["data"]))
    return target
