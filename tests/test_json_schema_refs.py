"""JSON Schema ``$ref`` values are loaded with the config, never by a probe: from files, from
http(s) only when allowed, once, within a timeout, off the event loop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.clock import SystemClock
from exporter.config_source import ConfigError
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from exporter.runtime import Options
from tests.conftest import ProbeOnce, config_from_text
from tests.metrics import sample_value

ORDER = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


async def order(request: web.Request) -> web.Response:
    return web.json_response({"id": request.query.get("id", 1)})


@pytest.fixture
async def api(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/order", order)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A schema host that accepts connections (the kernel completes them) and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def target(url: str, expect: str, timeout: str = "2s") -> str:
    return f"""
targets:
  - name: api
    kind: http
    url: "{url}"
    timeout: {timeout}
    expect: {expect}
"""


async def test_a_schema_file_reference_is_read_at_load_and_checked(
    api: str, probe_once: ProbeOnce, tmp_path: Path
) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "defs.json").write_text(json.dumps({"$defs": {"order": ORDER}}))
    (schemas / "order.json").write_text(json.dumps({"$ref": "defs.json#/$defs/order"}))
    passed = await probe_once(target(f"{api}/order", "{json_schema: schemas/order.json}"))
    assert passed.success, passed.message
    failed = await probe_once(target(f"{api}/order?id=one", "{json_schema: schemas/order.json}"))
    assert failed.reason is Reason.JSON_SCHEMA
    assert "$.id" in failed.message


async def test_an_inline_schema_resolves_references_against_the_config_folder(
    api: str, probe_once: ProbeOnce, tmp_path: Path
) -> None:
    (tmp_path / "order.json").write_text(json.dumps(ORDER))
    failed = await probe_once(target(f"{api}/order?id=x", "{json_schema: {$ref: order.json}}"))
    assert failed.reason is Reason.JSON_SCHEMA


def test_a_missing_referenced_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_text(
            target("http://127.0.0.1:1/", "{json_schema: {$ref: gone.json}}"), tmp_path
        )
    (problem,) = caught.value.problems
    assert problem.at == ("targets", 0, "expect", "json_schema")
    assert "'gone.json'" in problem.message
    assert "cannot read file" in problem.message


def test_a_remote_reference_is_refused_unless_allowed(silent_host: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        config_from_text(
            target("http://127.0.0.1:1/", f"{{json_schema: {{$ref: '{silent_host}/s.json'}}}}"),
            tmp_path,
        )
    assert time.monotonic() - started < 3, "nothing was fetched (that would wait 5 s)"
    (problem,) = caught.value.problems
    assert "json_schema_remote_refs" in problem.message


def test_a_remote_reference_to_a_silent_host_times_out_at_load(
    silent_host: str, tmp_path: Path
) -> None:
    expect = (
        f"{{json_schema: {{$ref: '{silent_host}/s.json'}}, json_schema_remote_refs: true, "
        "json_schema_fetch_timeout: 300ms}"
    )
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        config_from_text(target("http://127.0.0.1:1/", expect), tmp_path)
    assert time.monotonic() - started < 4
    (problem,) = caught.value.problems
    assert problem.at == ("targets", 0, "expect", "json_schema")
    assert "took longer than 0.3s" in problem.message


async def test_a_remote_reference_is_fetched_once_and_never_by_a_probe(
    aiohttp_server: AiohttpServer, api: str, probe_once: ProbeOnce
) -> None:
    fetches = 0

    async def schema(_request: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        return web.json_response(ORDER)

    app = web.Application()
    app.router.add_get("/order.json", schema)
    host = await aiohttp_server(app)
    expect = (
        f"{{json_schema: {{$ref: 'http://127.0.0.1:{host.port}/order.json'}}, "
        "json_schema_remote_refs: true}"
    )
    text = target(f"{api}/order?id=x", expect)
    loaded = await asyncio.to_thread(config_from_text, text, Path("."))
    assert fetches == 1
    await host.close()  # a probe that fetched now would fail to connect
    clients = SharedClients()
    try:
        for _ in range(3):
            result = await run_probe(loaded.targets[0], clients, SystemClock())
            assert result.reason is Reason.JSON_SCHEMA, result.message
    finally:
        await clients.close()
    assert fetches == 1


async def test_a_reload_waiting_on_a_silent_schema_host_never_stops_scrapes(
    aiohttp_client: AiohttpClient, api: str, silent_host: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(
        "defaults: {interval: 100ms, timeout: 100ms}\n"
        + target(f"{api}/order", "{json_schema: {type: object}}", timeout="100ms")
    )
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    path.write_text(
        target(
            f"{api}/order",
            f"{{json_schema: {{$ref: '{silent_host}/s.json'}}, json_schema_remote_refs: true, "
            "json_schema_fetch_timeout: 4s}",
        )
    )
    reload = asyncio.ensure_future(client.post("/-/reload"))
    await asyncio.sleep(0.1)
    for _ in range(3):  # scrapes answer while the reload waits for the schema host
        started = time.monotonic()
        response = await client.get("/metrics")
        assert response.status == 200
        assert time.monotonic() - started < 1
        assert not reload.done()
    response = await reload
    assert response.status == 500
    assert "took longer than 4s" in await response.text()
    text = await (await client.get("/metrics")).text()
    assert sample_value(text, "lookout_config_last_reload_successful") == 0
