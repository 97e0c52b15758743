"""The HTTP probes' connector (``exporter.probes.clients.DirectConnector``): it overrides a
private aiohttp method, so these tests fail when that method's signature changes or a probe to
a single address stops taking the event loop's own connect."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import aiohttp
import pytest
import trustme
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.probes.clients import DirectConnector
from tests.conftest import ProbeOnce

# aiohttp's own (3.14): the connector subclass takes and passes on exactly these.
UPSTREAM_PARAMETERS = [
    ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ("args", inspect.Parameter.VAR_POSITIONAL),
    ("addr_infos", inspect.Parameter.KEYWORD_ONLY),
    ("req", inspect.Parameter.KEYWORD_ONLY),
    ("timeout", inspect.Parameter.KEYWORD_ONLY),
    ("client_error", inspect.Parameter.KEYWORD_ONLY),
    ("kwargs", inspect.Parameter.VAR_KEYWORD),
]


def test_aiohttps_connection_hook_has_the_signature_the_connector_overrides() -> None:
    upstream = aiohttp.TCPConnector._wrap_create_connection
    for method in (upstream, DirectConnector._wrap_create_connection):
        parameters = inspect.signature(method).parameters.values()
        assert [(p.name, p.kind) for p in parameters] == UPSTREAM_PARAMETERS
    assert inspect.iscoroutinefunction(upstream)
    # aiohttp's direct connection passes these on to the hook: the TLS context and SNI name.
    source = inspect.getsource(aiohttp.TCPConnector._create_direct_connection)
    assert "ssl=sslcontext" in source
    assert "server_hostname=server_hostname" in source


@pytest.fixture
def happy_eyeballs_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection aiohttp makes through its happy-eyeballs path from now on."""
    calls: list[object] = []
    real: Callable[..., Awaitable[Any]] = aiohappyeyeballs.start_connection

    async def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("addr_infos"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(aiohappyeyeballs, "start_connection", recording)
    return calls


async def hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


def target(url: str, extra: str = "") -> str:
    return f"targets:\n  - {{name: api, kind: http, url: '{url}', timeout: 2s{extra}}}\n"


async def test_a_probe_to_one_address_connects_with_the_event_loops_own_connect(
    aiohttp_server: AiohttpServer, probe_once: ProbeOnce, happy_eyeballs_calls: list[object]
) -> None:
    server = await aiohttp_server(hello_app())
    url = f"http://127.0.0.1:{server.port}/"
    # The control: aiohttp's own connector takes its happy-eyeballs path.
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
    assert len(happy_eyeballs_calls) == 1
    result = await probe_once(target(f"http://127.0.0.1:{server.port}/"))
    assert result.success, result.message
    assert dict(result.phases)["connect"] > 0
    assert len(happy_eyeballs_calls) == 1, "the probe took aiohttp's happy-eyeballs path"


async def test_a_tls_probe_through_the_connector_verifies_names_and_times_the_handshake(
    aiohttp_server: AiohttpServer,
    ca: trustme.CA,
    ca_file: Path,
    probe_once: ProbeOnce,
    happy_eyeballs_calls: list[object],
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = await aiohttp_server(hello_app(), ssl=context)
    tls = f", http: {{tls: {{ca_file: {ca_file}, server_name: localhost}}}}"
    result = await probe_once(target(f"https://127.0.0.1:{server.port}/", tls))
    assert result.success, result.message
    phases = dict(result.phases)
    assert phases["connect"] > 0
    assert phases["tls"] > 0
    wrong = f", http: {{tls: {{ca_file: {ca_file}, server_name: other.example}}}}"
    refused = await probe_once(target(f"https://127.0.0.1:{server.port}/", wrong))
    assert not refused.success
    assert "certificate" in refused.message
    assert happy_eyeballs_calls == []
