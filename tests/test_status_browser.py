"""The status pages in a real headless Chromium, driven over the DevTools protocol: they load
without console errors (CSP violations included), show the failing targets and heartbeats first,
run none of the script that probed servers put into failure messages or jobs into ping bodies,
and leave screenshots in ``tests/artifacts/``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter import config
from exporter.app import create_app
from exporter.runtime import Options
from tests.processes import started
from tests.status_support import HOSTILE, service_app, wait_probed, write_config
from tests.tools import require_tool

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
HEARTBEATS = """
heartbeats:
  - {name: backup, period: 1d, grace: 1h}
  - {name: nightly, period: 1d, grace: 1h}
  - {name: consumer, period: 1m, grace: 1m}
"""
STARTUP_SECONDS = 30.0
STEP_SECONDS = 15.0


class DevTools:
    """A small Chrome DevTools Protocol client: one websocket, flattened target sessions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            data = message.json()
            if "id" in data:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self.events.append(data)
                self._arrived.set()

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_json(message)
        async with asyncio.timeout(STEP_SECONDS):
            return await future

    async def wait_for(self, method: str, session: str, after: int) -> dict[str, Any]:
        """The first event ``method`` of ``session`` among those from index ``after`` on."""
        async with asyncio.timeout(STEP_SECONDS):
            while True:
                for event in self.events[after:]:
                    if event["method"] == method and event.get("sessionId") == session:
                        return event
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[str]:
    """Start headless Chromium; yields its browser DevTools websocket URL."""
    binary = require_tool("chromium")
    argv = [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
    async with started(argv, profile.parent / "chromium.log") as process:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            assert process.returncode is None, "chromium exited during startup"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port, path = active.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"


async def open_page(devtools: DevTools) -> str:
    """A new tab with the domains this test listens to; returns its session id."""
    created = await devtools.call("Target.createTarget", {"url": "about:blank"})
    attached = await devtools.call(
        "Target.attachToTarget", {"targetId": created["targetId"], "flatten": True}
    )
    session: str = attached["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        await devtools.call(f"{domain}.enable", session=session)
    await devtools.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    return session


async def navigate(devtools: DevTools, session: str, url: str) -> int:
    """Load ``url`` and wait for its load event; returns the event index it started at."""
    start = len(devtools.events)
    result = await devtools.call("Page.navigate", {"url": url}, session=session)
    assert "errorText" not in result, result
    await devtools.wait_for("Page.loadEventFired", session, start)
    return start


def console_errors(devtools: DevTools, session: str, since: int) -> list[str]:
    errors = []
    for event in devtools.events[since:]:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event["params"]
        if method == "Runtime.exceptionThrown":
            errors.append(str(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(str(params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


async def evaluate(devtools: DevTools, session: str, expression: str) -> Any:
    result = await devtools.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session
    )
    assert "exceptionDetails" not in result, result
    return result["result"].get("value")


async def screenshot(devtools: DevTools, session: str, name: str) -> Path:
    shot = await devtools.call(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True},
        session=session,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


@pytest.fixture
async def status_url(aiohttp_server: Any, tmp_path: Path) -> str:
    """The status page of an exporter with probed targets and pinged heartbeats."""
    service = await aiohttp_server(service_app())
    path = write_config(tmp_path, str(service.make_url("")).rstrip("/"))
    with path.open("a", encoding="utf-8") as file:
        file.write(HEARTBEATS)
    options = Options(config_path=str(path), storage_path=tmp_path / "data")
    app = create_app(options, config.load(str(path)))
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        for ping, body in (("nightly/0", "all good"), ("backup/2", f"error: {HOSTILE}")):
            async with http.post(server.make_url(f"/ping/{ping}"), data=body) as response:
                assert response.status == 200
    await wait_probed(app, probes=3)
    return str(server.make_url("/"))


async def test_status_page_in_headless_chromium(status_url: str, tmp_path: Path) -> None:
    """Loads cleanly, failing targets first, hostile markup inert, screenshots saved."""
    async with (
        chromium(tmp_path / "profile") as browser_url,
        aiohttp.ClientSession() as http,
        http.ws_connect(browser_url, max_msg_size=0) as ws,
    ):
        devtools = DevTools(ws)
        try:
            session = await open_page(devtools)
            start = await navigate(devtools, session, status_url)
            rows = await evaluate(
                devtools,
                session,
                "Array.from(document.querySelectorAll('tr.target'))"
                ".map(r => [r.dataset.state, r.querySelector('a').textContent])",
            )
            assert rows == [["down", "m-hostile"], ["down", "z-broken"], ["up", "a-healthy"]]
            beats = await evaluate(
                devtools,
                session,
                "Array.from(document.querySelectorAll('tr.heartbeat'))"
                ".map(r => [r.dataset.state, r.querySelector('a').textContent])",
            )
            assert beats == [["failed", "backup"], ["new", "consumer"], ["up", "nightly"]]
            shown = await evaluate(devtools, session, "document.body.innerText")
            assert f"error: {HOSTILE}" in shown
            assert await evaluate(devtools, session, "document.scripts.length") == 0
            assert await evaluate(devtools, session, "typeof window.pwned") == "undefined"
            index_shot = await screenshot(devtools, session, "status-page.png")
            assert console_errors(devtools, session, start) == []

            href = await evaluate(devtools, session, "document.querySelector('tr.target a').href")
            assert href == f"{status_url}targets/m-hostile"
            start = await navigate(devtools, session, href)
            text = await evaluate(devtools, session, "document.body.innerText")
            assert f"got {HOSTILE[:40] + '…'!r}" in text  # an excerpt (http.response_excerpts)
            assert await evaluate(devtools, session, "document.scripts.length") == 0
            assert await evaluate(devtools, session, "document.images.length") == 0
            assert await evaluate(devtools, session, "typeof window.pwned") == "undefined"
            history = await evaluate(
                devtools, session, "document.querySelectorAll('tr[data-success]').length"
            )
            assert history >= 3
            detail_shot = await screenshot(devtools, session, "status-target.png")
            assert console_errors(devtools, session, start) == []

            start = await navigate(devtools, session, f"{status_url}heartbeats/backup")
            text = await evaluate(devtools, session, "document.body.innerText")
            assert f"error: {HOSTILE}" in text
            assert await evaluate(devtools, session, "document.scripts.length") == 0
            assert await evaluate(devtools, session, "document.images.length") == 0
            assert await evaluate(devtools, session, "typeof window.pwned") == "undefined"
            pings = await evaluate(
                devtools, session, "document.querySelectorAll('tr[data-signal]').length"
            )
            assert pings == 1
            heartbeat_shot = await screenshot(devtools, session, "status-heartbeat.png")
            assert console_errors(devtools, session, start) == []
        finally:
            await devtools.close()
    for shot in (index_shot, detail_shot, heartbeat_shot):
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert shot.stat().st_size > 10_000
