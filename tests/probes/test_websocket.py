"""The websocket prober against an aiohttp WebSocket server on loopback: echo, wrong reply, no
reply, refused upgrade, a close instead of a reply, subprotocols and wss:// with trustme."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, web
from aiohttp.test_utils import TestServer

from exporter.config import ConfigError
from exporter.probes.websocket import WebsocketObservation
from exporter.reasons import Reason
from tests.probes.conftest import Pki, Prober
from tests.probes.support import assert_fails_in_time_without_leaks, never_speaks
from tests.servers import Servers

Start = Callable[..., Awaitable[TestServer]]


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat.v1", "chat.v2"))
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


async def _wrong(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _message in ws:
        await ws.send_str('{"type": "error", "code": 7}')
    return ws


async def _silent(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _message in ws:
        pass
    return ws


async def _greets(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str("hello " + request.headers.get("X-Probe", "?"))
    async for _message in ws:
        pass
    return ws


async def _closes(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.receive()
    await ws.close(code=WSCloseCode.POLICY_VIOLATION)
    return ws


async def _refuses(request: web.Request) -> web.Response:
    return web.Response(status=403, text="forbidden")


async def _plain(request: web.Request) -> web.Response:
    return web.Response(text="no upgrade here")


def ws_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/wrong", _wrong)
    app.router.add_get("/silent", _silent)
    app.router.add_get("/greets", _greets)
    app.router.add_get("/closes", _closes)
    app.router.add_get("/refuses", _refuses)
    app.router.add_get("/plain", _plain)
    return app


@pytest.fixture
async def ws_server(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(ws_app())
    return server


def ws_target(server: TestServer, path: str, scheme: str = "ws", **expect: Any) -> dict[str, Any]:
    target: dict[str, Any] = {
        "kind": "websocket",
        "url": f"{scheme}://127.0.0.1:{server.port}{path}",
        "websocket": {"send": '{"type": "ping"}'},
    }
    if expect:
        target["expect"] = expect
    return target


async def test_echo_reply_matches_and_the_phases_are_recorded(
    probe: Prober, ws_server: TestServer
) -> None:
    result = await probe(ws_target(ws_server, "/echo", reply_matches='"type": "ping"'))
    assert result.success, result.message
    assert result.observation == WebsocketObservation(101, None, 16)
    assert [name for name, _ in result.phases] == ["connect", "upgrade", "reply"]
    assert [(c.name, c.passed) for c in result.checks] == [
        ("upgrade", True),
        ('reply matches \'"type": "ping"\'', True),
        ("close", True),
    ]
    text = probe.metrics(result)
    assert 'lookout_probe_phase_seconds{target="dependency",kind="websocket",phase="reply"}' in text
    assert 'lookout_probe_success{target="dependency",kind="websocket"} 1' in text


async def test_reply_checked_against_a_json_schema(
    probe: Prober, ws_server: TestServer, tmp_path: Path
) -> None:
    schema = {"type": "object", "required": ["type"], "properties": {"type": {"const": "ping"}}}
    (tmp_path / "reply.json").write_text(json.dumps(schema))
    passed = await probe(
        ws_target(ws_server, "/echo", reply_json_schema=str(tmp_path / "reply.json"))
    )
    assert passed.success, passed.message
    failed = await probe(ws_target(ws_server, "/wrong", reply_json_schema=schema))
    assert failed.reason is Reason.WS_REPLY
    assert failed.message == "reply JSON Schema: $.type: 'ping' was expected"


async def test_wrong_reply_fails_as_ws_reply(probe: Prober, ws_server: TestServer) -> None:
    result = await probe(ws_target(ws_server, "/wrong", reply_matches='"type": "pong"'))
    assert result.reason is Reason.WS_REPLY
    assert result.message == (
        'reply does not match \'"type": "pong"\': got \'{"type": "error", "code": 7}\''
    )


async def test_no_reply_times_out_during_the_reply_phase(
    probe: Prober, ws_server: TestServer
) -> None:
    target = ws_target(ws_server, "/silent", reply_matches="pong")
    result = await probe({**target, "timeout": "300ms"})
    assert result.reason is Reason.TIMEOUT
    assert result.message == "no result within 300ms during reply"
    assert 0.3 <= result.duration < 1.0


async def test_a_close_instead_of_a_reply_fails_as_ws_reply(
    probe: Prober, ws_server: TestServer
) -> None:
    result = await probe(ws_target(ws_server, "/closes", reply_matches="pong"))
    assert result.reason is Reason.WS_REPLY
    assert result.message == "the server closed the connection (code 1008) before replying"


@pytest.mark.parametrize(("path", "status"), [("/refuses", 403), ("/plain", 200)])
async def test_refused_upgrade_fails_as_status(
    probe: Prober, ws_server: TestServer, path: str, status: int
) -> None:
    result = await probe(ws_target(ws_server, path))
    assert result.reason is Reason.STATUS
    assert result.message.startswith(f"upgrade refused: status {status}")
    assert result.status_code == status
    assert "upgrade" in dict(result.phases)


async def test_a_greeting_without_sending_is_the_reply(
    probe: Prober, ws_server: TestServer
) -> None:
    target = {
        "kind": "websocket",
        "url": f"ws://127.0.0.1:{ws_server.port}/greets",
        "websocket": {"headers": {"X-Probe": "lookout"}},
        "expect": {"reply_matches": "^hello lookout$"},
    }
    result = await probe(target)
    assert result.success, result.message


async def test_connecting_without_a_message_only_upgrades_and_closes(
    probe: Prober, ws_server: TestServer
) -> None:
    result = await probe({"kind": "websocket", "url": f"ws://127.0.0.1:{ws_server.port}/silent"})
    assert result.success, result.message
    assert "reply" not in dict(result.phases)


async def test_the_negotiated_subprotocol_is_checked(probe: Prober, ws_server: TestServer) -> None:
    url = f"ws://127.0.0.1:{ws_server.port}/echo"
    chosen = await probe(
        {
            "kind": "websocket",
            "url": url,
            "websocket": {"subprotocols": ["chat.v2"]},
            "expect": {"subprotocol": "chat.v2"},
        }
    )
    assert chosen.success, chosen.message
    assert chosen.observation == WebsocketObservation(101, "chat.v2")
    other = await probe(
        {
            "kind": "websocket",
            "url": url.replace("/echo", "/silent"),
            "websocket": {"subprotocols": ["chat.v2"]},
            "expect": {"subprotocol": "chat.v2"},
        }
    )
    assert other.reason is Reason.WS_REPLY
    assert other.message == "subprotocol: server chose none, expected chat.v2"


async def test_refused_connection_fails_as_refused(probe: Prober) -> None:
    from tests.processes import free_port

    result = await probe({"kind": "websocket", "url": f"ws://127.0.0.1:{free_port()}/"})
    assert result.reason is Reason.REFUSED


async def test_wss_verifies_the_certificate_and_exports_it(
    probe: Prober, aiohttp_server: Any, pki: Pki
) -> None:
    server = await aiohttp_server(ws_app(), ssl=Pki.server_context(pki.valid))
    target = ws_target(server, "/echo", scheme="wss", reply_matches="ping")
    target["websocket"]["tls"] = {"ca_file": str(pki.ca_file)}
    result = await probe(target)
    assert result.success, result.message
    assert [name for name, _ in result.phases] == ["connect", "tls", "upgrade", "reply"]
    assert result.cert_expiry is not None
    assert "lookout_tls_cert_expiry_timestamp_seconds" in probe.metrics(result)


async def test_wss_with_an_expired_certificate_fails_and_still_exports_it(
    probe: Prober, aiohttp_server: Any, pki: Pki
) -> None:
    server = await aiohttp_server(ws_app(), ssl=Pki.server_context(pki.expired))
    target = ws_target(server, "/echo", scheme="wss")
    target["websocket"]["tls"] = {"ca_file": str(pki.ca_file)}
    result = await probe(target)
    assert result.reason is Reason.CERT_EXPIRED
    assert result.cert_expiry is not None
    assert "lookout_tls_cert_expiry_timestamp_seconds" in probe.metrics(result)


async def test_expecting_a_subprotocol_that_is_not_offered_is_a_config_error(
    probe: Prober,
) -> None:
    with pytest.raises(ConfigError, match=r"targets\[0\]\.expect\.subprotocol: 'chat' is not"):
        await probe(
            {"kind": "websocket", "url": "ws://127.0.0.1:1/", "expect": {"subprotocol": "chat"}}
        )


async def test_a_url_that_is_not_ws_is_a_config_error(probe: Prober) -> None:
    with pytest.raises(ConfigError, match=r"targets\[0\]\.url: .*a ws:// or wss:// URL"):
        await probe({"kind": "websocket", "url": "http://127.0.0.1:1/"})


async def test_a_silent_server_times_out_without_leaking_tasks_or_sockets(
    probe: Prober, ws_server: TestServer, tasks_and_fds: Callable[[], tuple[int, int]]
) -> None:
    target = ws_target(ws_server, "/silent", reply_matches="pong")
    await assert_fails_in_time_without_leaks(probe, target, Reason.TIMEOUT, tasks_and_fds)


async def test_a_peer_that_accepts_and_never_answers_the_upgrade_times_out_cleanly(
    probe: Prober, servers: Servers, tasks_and_fds: Callable[[], tuple[int, int]]
) -> None:
    port = await servers.start(never_speaks)
    target = {"kind": "websocket", "url": f"ws://127.0.0.1:{port}/"}
    await assert_fails_in_time_without_leaks(probe, target, Reason.TIMEOUT, tasks_and_fds)
