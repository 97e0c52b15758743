"""The HTTP prober against real loopback servers: every check and every failure reason."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.clock import SystemClock
from exporter.probes.clients import SharedClients
from exporter.probes.http import HttpObservation
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from tests.conftest import ProbeOnce, config_from_text
from tests.probes.conftest import blocking_tls_server

ORDERS_SCHEMA = {
    "type": "object",
    "required": ["orders", "total"],
    "properties": {
        "orders": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "integer"}},
            },
        },
        "total": {"type": "integer"},
    },
}


async def orders(_request: web.Request) -> web.Response:
    return web.json_response(
        {"orders": [{"id": 1}], "total": 1},
        headers={"X-Api-Version": "2", "Cache-Control": "no-store"},
    )


async def bad_orders(_request: web.Request) -> web.Response:
    return web.json_response({"orders": [{"id": "one"}], "total": 1})


async def not_json(_request: web.Request) -> web.Response:
    return web.Response(text="<html>maintenance</html>")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.3")))
    return web.Response(text="slow but fine")


async def hang(_request: web.Request) -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def big(_request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"x" * (2 * 1024 * 1024))


async def redirect_loop(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def redirect_once(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/orders")


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.json_response(
        {"method": request.method, "headers": dict(request.headers), "body": body}
    )


async def reset_mid_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": "100000"})
    await response.prepare(request)
    await response.write(b"x" * 100)
    assert request.transport is not None
    request.transport.close()
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/orders", orders)
    app.router.add_get("/bad-orders", bad_orders)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/hang", hang)
    app.router.add_get("/big", big)
    app.router.add_get("/loop", redirect_loop)
    app.router.add_get("/moved", redirect_once)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/reset", reset_mid_body)
    return app


@pytest.fixture
async def base(aiohttp_server: AiohttpServer) -> str:
    server = await aiohttp_server(make_app())
    return f"http://127.0.0.1:{server.port}"


def target(url: str, extra: str = "", timeout: str = "2s") -> str:
    return f"""
targets:
  - name: api
    kind: http
    url: "{url}"
    timeout: {timeout}
{extra}"""


async def test_a_valid_response_passes_every_check(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(
        target(
            f"{base}/orders",
            f"""    expect:
      status: [200]
      headers:
        - {{name: X-Api-Version, matches: "^2$"}}
        - {{name: Set-Cookie, absent: true}}
      body_matches: ['"total": 1']
      body_not_matches: ["error"]
      json_schema: {json.dumps(ORDERS_SCHEMA)}
      max_size: 1KiB
      max_duration: 2s
      http_version: ["1.1"]
""",
        )
    )
    assert result.success, result.message
    assert result.reason is None
    assert result.observation == HttpObservation(
        200, "1.1", len(b'{"orders": [{"id": 1}], "total": 1}')
    )
    assert {name for name, _ in result.phases} >= {"connect", "processing", "transfer"}
    assert all(check.passed for check in result.checks)
    assert len(result.checks) == 9


@pytest.mark.parametrize(
    ("path", "expect", "reason", "message"),
    [
        pytest.param(
            "/status/503", "status: [2xx]", Reason.STATUS, "status 503, expected 2xx", id="status"
        ),
        pytest.param(
            "/orders",
            'headers: [{name: X-Api-Version, matches: "^3$"}]',
            Reason.HEADER,
            "X-Api-Version must match '^3$', got '2'",
            id="header-mismatch",
        ),
        pytest.param(
            "/orders",
            "headers: [{name: Cache-Control, absent: true}]",
            Reason.HEADER,
            "Cache-Control must be absent, got 'no-store'",
            id="header-present",
        ),
        pytest.param(
            "/orders",
            "headers: [{name: X-Request-Id}]",
            Reason.HEADER,
            "X-Request-Id must be present",
            id="header-missing",
        ),
        pytest.param(
            "/orders",
            'body_matches: ["pending"]',
            Reason.BODY,
            "body does not match 'pending'",
            id="body-match",
        ),
        pytest.param(
            "/orders",
            'body_not_matches: ["total"]',
            Reason.BODY,
            "body matches 'total': found 'total'",
            id="body-not-match",
        ),
        pytest.param(
            "/bad-orders",
            f"json_schema: {json.dumps(ORDERS_SCHEMA)}",
            Reason.JSON_SCHEMA,
            "JSON Schema: $.orders[0].id: 'one' is not of type 'integer'",
            id="json-schema",
        ),
        pytest.param(
            "/not-json",
            "json_schema: {type: object}",
            Reason.JSON,
            "body is not JSON: Expecting value at line 1 column 1",
            id="not-json",
        ),
        pytest.param(
            "/big",
            "max_size: 64KiB",
            Reason.SIZE,
            "body is more than 65536 bytes (stopped reading)",
            id="size",
        ),
        pytest.param("/slow?s=0.3", "max_duration: 100ms", Reason.SLOW, None, id="max-duration"),
        pytest.param(
            "/orders",
            'http_version: ["1.0"]',
            Reason.HTTP_VERSION,
            "HTTP/1.1, expected 1.0",
            id="http-version",
        ),
    ],
)
async def test_a_failed_check_gives_its_reason(
    base: str, probe_once: ProbeOnce, path: str, expect: str, reason: Reason, message: str | None
) -> None:
    """With ``response_excerpts`` the messages quote a short excerpt of the response."""
    result = await probe_once(
        target(
            f"{base}{path}", f"    http: {{response_excerpts: true}}\n    expect: {{{expect}}}\n"
        )
    )
    assert not result.success
    assert result.reason is reason
    if message is not None:
        assert result.message == message
    assert any(not check.passed for check in result.checks)


async def test_the_body_limit_stops_reading_a_huge_body(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(target(f"{base}/big", "    expect: {max_size: 1KiB}\n"))
    assert result.reason is Reason.SIZE
    assert isinstance(result.observation, HttpObservation)
    assert result.observation.response_size == 1025


async def test_a_server_that_never_answers_times_out(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(target(f"{base}/hang", timeout="300ms"))
    assert result.reason is Reason.TIMEOUT
    assert result.message == "no result within 300ms during processing"
    assert 0.3 <= result.duration < 1.0


async def test_a_closed_port_is_refused(probe_once: ProbeOnce) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await probe_once(target(f"http://127.0.0.1:{port}/"))
    assert result.reason is Reason.REFUSED
    assert result.message == f"connection to 127.0.0.1:{port} refused"


async def test_a_reset_mid_body_is_a_reset(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(target(f"{base}/reset"))
    assert result.reason is Reason.RESET
    assert result.message.startswith("response body incomplete")


async def test_a_redirect_loop_fails_with_redirect(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(target(f"{base}/loop", "    http: {max_redirects: 3}\n"))
    assert result.reason is Reason.REDIRECT
    assert "too many redirects (3)" in result.message


async def test_redirects_are_followed_or_not_as_configured(
    base: str, probe_once: ProbeOnce
) -> None:
    followed = await probe_once(target(f"{base}/moved"))
    assert followed.success
    assert followed.status_code == 200
    kept = await probe_once(
        target(
            f"{base}/moved", "    http: {follow_redirects: false}\n    expect: {status: [302]}\n"
        )
    )
    assert kept.success, kept.message
    assert kept.status_code == 302


async def test_a_server_speaking_garbage_is_a_protocol_failure(probe_once: ProbeOnce) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\nnot http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await probe_once(target(f"http://127.0.0.1:{port}/"))
    assert result.reason is Reason.PROTOCOL
    assert result.message.startswith("invalid HTTP response")


async def test_method_body_headers_and_secrets_are_sent(
    base: str, probe_once: ProbeOnce, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    (tmp_path / "payload.json").write_text('{"ping": true}')
    result = await probe_once(
        target(
            f"{base}/echo",
            """    http:
      method: POST
      headers: {Accept: application/json, X-Tenant: "${TENANT}"}
      body_file: payload.json
      bearer_token_file: token
    expect:
      body_matches:
        - '"Authorization": "Bearer s3cret-token"'
        - '"X-Tenant": "acme"'
        - '"method": "POST"'
      body_not_matches: ['s3cret-token\\\\n']
""",
        ),
        environ={"TENANT": "acme"},
    )
    assert result.success, result.message


async def test_basic_auth_is_sent(base: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(
        target(
            f"{base}/echo",
            """    http: {basic_auth: {username: probe, password: "${PW}"}}
    expect: {body_matches: ['"Authorization": "Basic cHJvYmU6cHc="']}
""",
        ),
        environ={"PW": "pw"},
    )
    assert result.success, result.message


# --- TLS ---------------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def tls_server(aiohttp_server: AiohttpServer, cert: trustme.LeafCert) -> int:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = await aiohttp_server(make_app(), ssl=context)
    assert server.port is not None
    return server.port


@pytest.mark.parametrize(
    ("kind", "reason", "message"),
    [
        pytest.param(
            "expired",
            Reason.CERT_EXPIRED,
            "certificate verification failed: certificate has expired",
            id="expired",
        ),
        pytest.param(
            "not-yet-valid",
            Reason.CERT_NOT_YET_VALID,
            "certificate verification failed: certificate is not yet valid",
            id="not-yet-valid",
        ),
        pytest.param(
            "wrong-host",
            Reason.CERT_HOSTNAME,
            "certificate verification failed: "
            "IP address mismatch, certificate is not valid for '127.0.0.1'.",
            id="wrong-host",
        ),
        pytest.param(
            "untrusted",
            Reason.CERT_INVALID,
            "certificate verification failed: unable to get local issuer certificate",
            id="untrusted",
        ),
    ],
)
async def test_a_bad_certificate_fails_and_still_exports_its_expiry(
    aiohttp_server: AiohttpServer,
    ca: trustme.CA,
    ca_file: Path,
    probe_once: ProbeOnce,
    kind: str,
    reason: Reason,
    message: str,
) -> None:
    now = _now()
    issuer = trustme.CA() if kind == "untrusted" else ca
    cert = {
        "expired": lambda: issuer.issue_cert(
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
        "not-yet-valid": lambda: issuer.issue_cert(
            "127.0.0.1",
            not_before=now + datetime.timedelta(days=1),
            not_after=now + datetime.timedelta(days=90),
        ),
        "wrong-host": lambda: issuer.issue_cert("other.example"),
        "untrusted": lambda: issuer.issue_cert("127.0.0.1"),
    }[kind]()
    port = await tls_server(aiohttp_server, cert)
    result = await probe_once(
        target(f"https://127.0.0.1:{port}/orders", f"    http: {{tls: {{ca_file: {ca_file}}}}}\n")
    )
    assert result.reason is reason
    assert result.message == message
    assert result.chain, "the presented chain is exported although verification failed"
    leaf = result.chain[0]
    assert result.cert_expiry == leaf.not_after
    if kind == "expired":
        assert leaf.not_after < now.timestamp()
    assert "tls" not in dict(result.phases) or dict(result.phases)["tls"] >= 0


async def test_a_trusted_certificate_passes_with_tls_phase_and_identity(
    aiohttp_server: AiohttpServer, ca: trustme.CA, ca_file: Path, probe_once: ProbeOnce
) -> None:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    port = await tls_server(aiohttp_server, cert)
    result = await probe_once(
        target(f"https://127.0.0.1:{port}/orders", f"    http: {{tls: {{ca_file: {ca_file}}}}}\n")
    )
    assert result.success, result.message
    phases = dict(result.phases)
    assert phases["tls"] > 0
    assert phases["connect"] > 0
    assert result.tls_version in {"TLSv1.2", "TLSv1.3"}
    leaf = result.chain[0]
    assert leaf.dns_names == ("localhost", "127.0.0.1")
    assert len(leaf.fingerprint_sha256) == 64
    assert leaf.not_after > _now().timestamp()


async def test_insecure_skip_verify_accepts_an_untrusted_certificate(
    aiohttp_server: AiohttpServer, probe_once: ProbeOnce
) -> None:
    cert = trustme.CA().issue_cert("127.0.0.1")
    port = await tls_server(aiohttp_server, cert)
    result = await probe_once(
        target(
            f"https://127.0.0.1:{port}/orders", "    http: {tls: {insecure_skip_verify: true}}\n"
        )
    )
    assert result.success, result.message
    assert result.chain


async def test_server_name_selects_the_name_verified(
    aiohttp_server: AiohttpServer, ca: trustme.CA, ca_file: Path, probe_once: ProbeOnce
) -> None:
    cert = ca.issue_cert("api.internal")
    port = await tls_server(aiohttp_server, cert)
    result = await probe_once(
        target(
            f"https://127.0.0.1:{port}/orders",
            f"    http: {{tls: {{ca_file: {ca_file}, server_name: api.internal}}}}\n",
        )
    )
    assert result.success, result.message


async def test_a_self_signed_certificate_is_invalid_and_still_exports_its_expiry(
    aiohttp_server: AiohttpServer, probe_once: ProbeOnce, tmp_path: Path
) -> None:
    own = trustme.CA()
    own.cert_pem.write_to_path(str(tmp_path / "self.pem"))
    own.private_key_pem.write_to_path(str(tmp_path / "self.key"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "self.pem", tmp_path / "self.key")
    server = await aiohttp_server(make_app(), ssl=context)
    result = await probe_once(target(f"https://127.0.0.1:{server.port}/orders"))
    assert result.reason is Reason.CERT_INVALID
    assert result.message == "certificate verification failed: self-signed certificate"
    (leaf,) = result.chain
    assert leaf.subject == leaf.issuer
    assert result.cert_expiry == leaf.not_after


async def test_a_client_certificate_is_presented_when_configured(
    aiohttp_server: AiohttpServer,
    ca: trustme.CA,
    ca_file: Path,
    probe_once: ProbeOnce,
    tmp_path: Path,
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server = await aiohttp_server(make_app(), ssl=context)
    client = ca.issue_cert("prober@lookout")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    url = f"https://127.0.0.1:{server.port}/orders"
    tls = f"ca_file: {ca_file}, cert_file: client.pem, key_file: client.pem"
    with_cert = await probe_once(target(url, f"    http: {{tls: {{{tls}}}}}\n"))
    assert with_cert.success, with_cert.message
    without = await probe_once(target(url, f"    http: {{tls: {{ca_file: {ca_file}}}}}\n"))
    assert not without.success
    assert without.reason in {Reason.TLS, Reason.RESET}


def _server_context(
    ca: trustme.CA, *, max_version: ssl.TLSVersion, client_cert: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.maximum_version = max_version
    if client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def test_a_server_below_min_version_fails_as_tls_version(
    ca: trustme.CA, ca_file: Path, probe_once: ProbeOnce
) -> None:
    """The server's protocol-version alert makes it tls_version, as for the tls prober."""
    context = _server_context(ca, max_version=ssl.TLSVersion.TLSv1_2)
    tls = f"ca_file: {ca_file}, min_version: TLS1.3"
    with blocking_tls_server(context) as port:
        url = f"https://127.0.0.1:{port}/orders"
        result = await probe_once(target(url, f"    http: {{tls: {{{tls}}}}}\n"))
    assert result.reason is Reason.TLS_VERSION
    assert result.message == "TLS handshake failed: TLSV1_ALERT_PROTOCOL_VERSION"
    assert {"connect", "tls"} <= set(dict(result.phases))


@pytest.mark.parametrize(
    ("server", "message"),
    [
        pytest.param(
            "openssl", "TLS handshake failed: SSLV3_ALERT_HANDSHAKE_FAILURE", id="with-alert"
        ),
        pytest.param(
            "asyncio",
            "TLS handshake failed: the server closed the connection after presenting its "
            "certificate (Connection reset by peer); it rejected the handshake",
            id="hang-up",
        ),
    ],
)
async def test_a_missing_client_certificate_fails_the_tls_step(
    aiohttp_server: AiohttpServer,
    ca: trustme.CA,
    ca_file: Path,
    probe_once: ProbeOnce,
    server: str,
    message: str,
) -> None:
    """A server that requires a client certificate and gets none rejects the handshake (TLS 1.2:
    an OpenSSL server sends an alert, asyncio's hangs up): tls, not connect, and never empty."""
    context = _server_context(ca, max_version=ssl.TLSVersion.TLSv1_2, client_cert=True)
    extra = f"    http: {{tls: {{ca_file: {ca_file}}}}}\n"
    if server == "openssl":
        with blocking_tls_server(context) as port:
            result = await probe_once(target(f"https://127.0.0.1:{port}/orders", extra))
    else:
        upstream = await aiohttp_server(make_app(), ssl=context)
        assert upstream.port is not None
        result = await probe_once(target(f"https://127.0.0.1:{upstream.port}/orders", extra))
    assert result.reason is Reason.TLS
    assert result.message == message
    assert {"connect", "tls"} <= set(dict(result.phases))
    assert result.chain[0].dns_names == ("127.0.0.1",), "the server's chain is still exported"


async def test_a_server_hanging_up_on_the_hello_is_a_reset_with_a_message(
    aiohttp_server: AiohttpServer, ca: trustme.CA, ca_file: Path, probe_once: ProbeOnce
) -> None:
    """asyncio's server hangs up on a hello it rejects, without an alert: like the tls prober,
    a connection lost during the handshake (not connect, and with a message)."""
    server = await aiohttp_server(
        make_app(), ssl=_server_context(ca, max_version=ssl.TLSVersion.TLSv1_2)
    )
    tls = f"ca_file: {ca_file}, min_version: TLS1.3"
    url = f"https://127.0.0.1:{server.port}/orders"
    result = await probe_once(target(url, f"    http: {{tls: {{{tls}}}}}\n"))
    assert result.reason is Reason.RESET
    assert result.message == "connection lost during the TLS handshake: Connection reset by peer"
    assert "tls" in dict(result.phases)


async def test_requests_go_through_the_configured_proxy(
    aiohttp_server: AiohttpServer, probe_once: ProbeOnce
) -> None:
    seen: list[str] = []

    async def forward_proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(text="via proxy", headers={"Via": "1.1 test-proxy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward_proxy)
    proxy = await aiohttp_server(app)
    result = await probe_once(
        target(
            "http://127.0.0.1:9/status",
            f"    http: {{proxy_url: 'http://127.0.0.1:{proxy.port}'}}\n"
            "    expect: {headers: [{name: Via, matches: test-proxy}]}\n",
        )
    )
    assert result.success, result.message
    assert seen == ["http://127.0.0.1:9/status"]


async def test_ip6_family_probes_the_ipv6_loopback(
    aiohttp_server: AiohttpServer, probe_once: ProbeOnce
) -> None:
    server = await aiohttp_server(make_app(), host="::1")
    result = await probe_once(
        target(f"http://[::1]:{server.port}/orders", "    http: {ip_family: ip6}\n")
    )
    assert result.success, result.message


async def test_reused_connections_skip_connect_after_the_first_probe(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await aiohttp_server(make_app())
    text = target(f"http://127.0.0.1:{server.port}/orders", "    http: {reuse_connections: true}\n")
    probe_target = config_from_text(text, tmp_path).targets[0]
    clients = SharedClients()
    try:
        first = await run_probe(probe_target, clients, SystemClock())
        second = await run_probe(probe_target, clients, SystemClock())
    finally:
        await clients.close()
    assert "connect" in dict(first.phases)
    assert "connect" not in dict(second.phases)
    assert second.success
