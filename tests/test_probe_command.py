"""``lookout-exporter probe``: one probe now, with its phases, request, response, checks,
certificate chain and metrics: for each HTTP failure reason a loopback server can cause (all but
``dns`` and ``connect``; ``tls_version`` from an OpenSSL server, which sends its alert), for a
failure of each other probe kind, and for every reason through the same rendering of a
``ProbeResult``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rcode
import pytest
import trustme
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter import config
from exporter.cli import main
from exporter.probe_command import build_report, probe_and_report, render_text
from exporter.probes import http
from exporter.probes.dns import DnsObservation
from exporter.probes.http import HttpSpec
from exporter.reasons import Reason
from exporter.results import Certificate, Check, ProbeResult, TlsSeen
from exporter.targets import Target
from tests.exporter_process import exporter_command
from tests.probes.conftest import blocking_tls_server
from tests.processes import free_port
from tests.test_api import schema_validator

DAY = datetime.timedelta(days=1)


def _service() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": 1}]}, headers={"X-Version": "2"})

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.15)
        return web.Response(text="late but fine")

    async def hang(_request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(text="never seen")

    async def loop(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def text(_request: web.Request) -> web.Response:
        return web.Response(text="not json")

    async def wrong(_request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": "one"}]})

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 4000)

    app = web.Application()
    for path, handler in [
        ("/ok", ok),
        ("/broken", broken),
        ("/slow", slow),
        ("/hang", hang),
        ("/loop", loop),
        ("/text", text),
        ("/wrong", wrong),
        ("/big", big),
    ]:
        app.router.add_get(path, handler)
    return app


@contextlib.asynccontextmanager
async def raw_server(reply: bytes, until: bytes = b"\r\n\r\n") -> AsyncIterator[int]:
    """A TCP server that reads up to ``until`` (a request head), writes ``reply`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(until)
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Lab:
    config: Path


def _tls_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
async def lab(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Lab]:
    """Loopback servers for every HTTP failure reason and a config with one target per reason."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = datetime.datetime.now(datetime.UTC)
    plain = await aiohttp_server(_service())
    good = await aiohttp_server(_service(), ssl=_tls_context(ca.issue_cert("127.0.0.1")))
    servers = {
        "expired": ca.issue_cert("127.0.0.1", not_before=now - 30 * DAY, not_after=now - DAY),
        "future": ca.issue_cert("127.0.0.1", not_before=now + DAY, not_after=now + 30 * DAY),
        "other": ca.issue_cert("other.test"),
    }
    tls_ports = {
        name: (await aiohttp_server(_service(), ssl=_tls_context(cert))).port
        for name, cert in servers.items()
    }
    schema = tmp_path / "items.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {"properties": {"id": {"type": "integer"}}},
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    base = f"http://127.0.0.1:{plain.port}"
    tls = {"tls": {"ca_file": str(ca_file)}}
    async with (
        raw_server(b"") as reset_port,
        raw_server(b"SPEAKING GOPHER\r\n\r\n") as garbage_port,
    ):
        targets: list[dict[str, object]] = [
            {"name": "ok", "url": f"https://127.0.0.1:{good.port}/ok", "http": tls},
            {"name": "refused", "url": f"http://127.0.0.1:{free_port()}/"},
            {"name": "reset", "url": f"http://127.0.0.1:{reset_port}/"},
            {"name": "timeout", "url": f"{base}/hang", "timeout": "200ms"},
            {"name": "tls", "url": f"https://127.0.0.1:{plain.port}/ok"},
            {
                "name": "cert_expired",
                "url": f"https://127.0.0.1:{tls_ports['expired']}/ok",
                "http": tls,
            },
            {
                "name": "cert_not_yet_valid",
                "url": f"https://127.0.0.1:{tls_ports['future']}/ok",
                "http": tls,
            },
            {
                "name": "cert_hostname",
                "url": f"https://127.0.0.1:{tls_ports['other']}/ok",
                "http": {"tls": {"ca_file": str(ca_file), "server_name": "wrong.test"}},
            },
            {"name": "cert_invalid", "url": f"https://127.0.0.1:{good.port}/ok"},
            {"name": "protocol", "url": f"http://127.0.0.1:{garbage_port}/"},
            {"name": "redirect", "url": f"{base}/loop", "http": {"max_redirects": 2}},
            {"name": "status", "url": f"{base}/broken"},
            {"name": "http_version", "url": f"{base}/ok", "expect": {"http_version": ["1.0"]}},
            {
                "name": "header",
                "url": f"{base}/ok",
                "http": {"response_excerpts": True},
                "expect": {"headers": [{"name": "X-Version", "matches": "^3$"}]},
            },
            {"name": "body", "url": f"{base}/ok", "expect": {"body_matches": ["ready"]}},
            {"name": "json", "url": f"{base}/text", "expect": {"json_schema": str(schema)}},
            {
                "name": "json_schema",
                "url": f"{base}/wrong",
                "http": {"response_excerpts": True},
                "expect": {"json_schema": str(schema)},
            },
            {"name": "size", "url": f"{base}/big", "expect": {"max_size": "1KiB"}},
            {"name": "slow", "url": f"{base}/slow", "expect": {"max_duration": "50ms"}},
        ]
        document = {
            "location": "lab",
            "defaults": {"interval": "30s", "timeout": "2s"},
            "targets": [{"kind": "http", "labels": {"team": "qa"}, **t} for t in targets],
        }
        path = tmp_path / "lookout.yml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        yield Lab(path)


async def probe_text(lab: Lab, name: str, *, as_json: bool = False) -> tuple[int, str]:
    loaded = config.load(str(lab.config))
    target = next(t for t in loaded.targets if t.name == name)
    out = io.StringIO()
    code = await probe_and_report(target, loaded.location, as_json=as_json, out=out)
    return code, out.getvalue()


def assert_metrics(text: str, name: str, reason: str | None) -> None:
    """The metrics section parses as exposition and carries this probe's outcome."""
    samples = {
        (s.name, s.labels.get("reason")): s
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    success = samples[("lookout_probe_success", None)]
    assert success.labels == {"target": name, "kind": "http", "location": "lab", "team": "qa"}
    assert success.value == (1 if reason is None else 0)
    assert samples[("lookout_probe_duration_seconds_count", None)].value == 1
    failures = {r for (n, r) in samples if n == "lookout_probe_failures_total"}
    assert failures == (set() if reason is None else {reason})


# What each reason's report must say besides "reason <name>": the message and the failed check.
HTTP_REASONS = [
    pytest.param("refused", ["refused", "Phases\n  none completed"], id="refused"),
    pytest.param("reset", ["server closed the connection"], id="reset"),
    pytest.param("timeout", ["no result within 200ms during processing"], id="timeout"),
    pytest.param("tls", ["TLS handshake failed: WRONG_VERSION_NUMBER"], id="tls"),
    pytest.param(
        "cert_expired",
        ["certificate verification failed: certificate has expired", "(-1.0 days left)"],
        id="cert_expired",
    ),
    pytest.param(
        "cert_not_yet_valid", ["certificate is not yet valid", "[0] subject"], id="not_yet_valid"
    ),
    pytest.param(
        "cert_hostname",
        ["Hostname mismatch, certificate is not valid for 'wrong.test'", "names    other.test"],
        id="cert_hostname",
    ),
    pytest.param(
        "cert_invalid", ["unable to get local issuer certificate", "[0] subject"], id="invalid"
    ),
    pytest.param("protocol", ["invalid HTTP response"], id="protocol"),
    pytest.param("redirect", ["too many redirects (2)"], id="redirect"),
    pytest.param(
        "status",
        ["status 503, expected 2xx", "FAIL  status  503, expected 2xx", "Response  status 503"],
        id="status",
    ),
    pytest.param("http_version", ["FAIL  http_version  HTTP/1.1, expected 1.0"], id="http_version"),
    pytest.param(
        "header",
        ["FAIL  header X-Version  X-Version must match '^3$', got '2'", "PASS  status"],
        id="header",
    ),
    pytest.param("body", ["FAIL  body matches 'ready'", "body does not match 'ready'"], id="body"),
    pytest.param("json", ["FAIL  json_schema  body is not JSON: Expecting value"], id="json"),
    pytest.param(
        "json_schema",
        ["FAIL  json_schema  $.items[0].id: 'one' is not of type 'integer'"],
        id="json_schema",
    ),
    pytest.param("size", ["FAIL  max_size  more than 1024 bytes (stopped reading)"], id="size"),
    pytest.param("slow", ["FAIL  max_duration  took 1", "limit 50ms"], id="slow"),
]


@pytest.mark.parametrize(("reason", "expected"), HTTP_REASONS)
async def test_report_names_the_reason_the_failed_check_and_the_metrics(
    lab: Lab, reason: str, expected: list[str]
) -> None:
    code, text = await probe_text(lab, reason)
    assert code == 1
    result_line = next(line for line in text.splitlines() if line.startswith("Result"))
    assert result_line.startswith("Result    FAIL in ")
    assert f", reason {reason}: " in result_line
    for fragment in expected:
        assert fragment in text
    assert_metrics(text.split("\nMetrics\n", 1)[1], reason, reason)


async def test_report_names_tls_version_when_the_server_rejects_the_version(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = _tls_context(ca.issue_cert("127.0.0.1"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with blocking_tls_server(context) as port:
        target = {
            "name": "tls_version",
            "kind": "http",
            "labels": {"team": "qa"},
            "url": f"https://127.0.0.1:{port}/ok",
            "http": {"tls": {"ca_file": str(ca_file), "min_version": "TLS1.3"}},
        }
        path = tmp_path / "lookout.yml"
        path.write_text(yaml.safe_dump({"location": "lab", "targets": [target]}), encoding="utf-8")
        code, text = await probe_text(Lab(path), "tls_version")
    assert code == 1
    assert ", reason tls_version: TLS handshake failed: TLSV1_ALERT_PROTOCOL_VERSION" in text
    phases = text.split("\nPhases\n", 1)[1].split("\n\n", 1)[0].split()
    assert phases[::3] == ["connect", "tls"]
    assert_metrics(text.split("\nMetrics\n", 1)[1], "tls_version", "tls_version")


async def test_a_passing_probe_shows_every_phase_check_and_the_chain_and_exits_0(
    lab: Lab,
) -> None:
    code, text = await probe_text(lab, "ok")
    assert code == 0
    assert "Target    ok (http) from lab\nResult    PASS in " in text
    assert "Request   GET https://127.0.0.1:" in text
    assert "Response  status 200, HTTP/1.1, 22 bytes, TLSv1.3" in text
    phases = text.split("\nPhases\n", 1)[1].split("\n\n", 1)[0].split()
    assert phases[::3] == ["connect", "tls", "processing", "transfer"]
    assert "PASS  status  200, expected 2xx" in text
    assert "FAIL" not in text
    assert "[0] subject  " in text
    assert "names    127.0.0.1" in text
    assert_metrics(text.split("\nMetrics\n", 1)[1], "ok", None)
    assert 'lookout_tls_version_info{target="ok",kind="http",location="lab",team="qa",' in text


async def test_json_output_matches_the_api_schemas_and_carries_the_metrics(lab: Lab) -> None:
    code, text = await probe_text(lab, "json_schema", as_json=True)
    assert code == 1
    report = json.loads(text)
    assert set(report) == {"target", "request", "result", "response", "metrics"}
    schema_validator("ProbeResult").validate(report["result"])
    schema_validator("Request").validate(report["request"])
    assert report["target"] == {
        "name": "json_schema",
        "kind": "http",
        "location": "lab",
        "labels": {"team": "qa"},
    }
    assert report["result"]["reason"] == "json_schema"
    failed = [c for c in report["result"]["checks"] if not c["passed"]]
    assert failed == [
        {
            "name": "json_schema",
            "passed": False,
            "detail": "$.items[0].id: 'one' is not of type 'integer'",
        }
    ]
    assert_metrics(report["metrics"], "json_schema", "json_schema")


def _result(reason: Reason) -> ProbeResult:
    now = 1_800_000_000.0
    cert = Certificate("CN=a", "CN=ca", "ff", "a" * 64, now - 86400, now + 86400, ("a.test",))
    return ProbeResult(
        target="any",
        success=False,
        duration=0.25,
        finished_at=now,
        reason=reason,
        message=f"what went wrong: {reason}",
        phase_names=("resolve", "connect"),
        phase_seconds=(0.001, 0.002),
        checks=(Check(f"check of {reason}", False, "expected this, got that"),),
        tls=TlsSeen((cert,), None),
        observation=DnsObservation(0),
    )


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_every_reason_of_every_kind_renders_with_its_check_and_counter(reason: Reason) -> None:
    target = Target("any", http.KIND, 30.0, 5.0, (), None, HttpSpec(url="http://127.0.0.1:1/"))
    report = build_report(target, None, _result(reason))
    text = render_text(report, 1_800_000_000.0)
    assert f"Result    FAIL in 250.0 ms, reason {reason}: what went wrong: {reason}\n" in text
    assert f"  FAIL  check of {reason}  expected this, got that\n" in text
    assert "  resolve      1.0 ms\n  connect      2.0 ms\n" in text
    assert "Response  0 answers\n" in text
    assert "(1.0 days left)" in text
    reason_line = f'lookout_probe_failures_total{{target="any",kind="http",reason="{reason}"}} 1'
    assert reason_line in text


async def test_adhoc_url_probe_through_the_real_command(aiohttp_server: Any) -> None:
    server = await aiohttp_server(_service())
    url = f"http://127.0.0.1:{server.port}"
    for path, expected in (("/ok", 0), ("/broken", 1)):
        code, stdout, stderr = await exporter_command(
            "probe", "--url", url + path, "--timeout", "2s"
        )
        assert code == expected, stderr
        assert f"Request   GET {url}{path}" in stdout
        assert 'lookout_probe_success{target="adhoc",kind="http"}' in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["probe"], "name a target (with --config FILE) or give --url URL", id="none"),
        pytest.param(["probe", "x"], "probing target 'x' needs --config FILE", id="no-config"),
        pytest.param(
            ["probe", "x", "--url", "http://127.0.0.1:1/"],
            "give either NAME with --config, or --url, not both",
            id="both",
        ),
        pytest.param(
            ["probe", "--url", "ftp://127.0.0.1/"],
            "--url:1: targets[0].url: 'ftp://127.0.0.1/' is not an http:// or https:// URL",
            id="bad-url",
        ),
    ],
)
def test_usage_mistakes_exit_1_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_an_unknown_target_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(
        "targets:\n  - {name: api, kind: http, url: 'http://127.0.0.1:1/'}\n", encoding="utf-8"
    )
    assert main(["probe", "--config", str(path), "apj"]) == 1
    assert f"{path}: no target named 'apj' (targets: api)" in capsys.readouterr().err


def test_an_invalid_config_exits_1_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets:\n  - {name: api, kind: http}\n", encoding="utf-8")
    assert main(["probe", "--config", str(path), "api"]) == 1
    assert f"{path}:2: targets[0]: 'url' is a required property" in capsys.readouterr().err


async def _serve_udp_nxdomain() -> tuple[asyncio.DatagramTransport, int]:
    """A loopback nameserver that answers every question with NXDOMAIN."""

    class Nxdomain(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(dns.rcode.NXDOMAIN)
            self.transport.sendto(response.to_wire(), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Nxdomain, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


@contextlib.asynccontextmanager
async def greeting_server(greeting: bytes) -> AsyncIterator[int]:
    """A TCP server that greets, then holds the connection until the client leaves."""

    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(greeting)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


async def probe_target(document: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "kinds.yml"
    path.write_text(yaml.safe_dump({"targets": [document]}), encoding="utf-8")
    loaded = config.load(str(path))
    out = io.StringIO()
    code = await probe_and_report(loaded.targets[0], None, as_json=False, out=out)
    return code, out.getvalue()


async def test_tcp_dialog_failure_shows_the_dialog_and_the_failed_expectation(
    tmp_path: Path,
) -> None:
    async with raw_server(b"-ERR wrong password\r\n", until=b"\r\n") as port:
        code, text = await probe_target(
            {
                "name": "cache",
                "kind": "tcp",
                "address": f"127.0.0.1:{port}",
                "timeout": "1s",
                "tcp": {"dialog": [{"send": "AUTH hunter2"}, {"expect": r"^\+OK"}]},
            },
            tmp_path,
        )
    assert code == 1
    assert "Target    cache (tcp)\nResult    FAIL in " in text
    assert ", reason dialog: " in text
    assert f"Request   127.0.0.1:{port}\n" in text
    assert "dialog send 14 bytes, expect '^\\\\+OK'" in text
    assert "hunter2" not in text
    assert 'lookout_probe_failures_total{target="cache",kind="tcp",reason="dialog"} 1' in text


async def test_tls_certificate_expiring_too_soon_shows_the_chain(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert(
        "127.0.0.1", not_after=datetime.datetime.now(datetime.UTC) + 5 * DAY + DAY / 2
    )
    server = await aiohttp_server(_service(), ssl=_tls_context(leaf))
    code, text = await probe_target(
        {
            "name": "cert",
            "kind": "tls",
            "address": f"127.0.0.1:{server.port}",
            "tls": {"ca_file": str(ca_file)},
            "expect": {"valid_for": "30d"},
        },
        tmp_path,
    )
    assert code == 1
    assert ", reason cert_expiring: " in text
    assert "valid for at least 30d" in text
    assert "  FAIL  valid_for" in text
    assert "(5.5 days left)" in text
    assert "Response  TLSv1.3" in text
    assert 'lookout_tls_cert_expiry_timestamp_seconds{target="cert",kind="tls"}' in text


async def test_smtp_refusing_greeting_is_reported_with_its_reason(tmp_path: Path) -> None:
    async with greeting_server(b"554 5.3.2 not accepting connections\r\n") as port:
        code, text = await probe_target(
            {"name": "mx", "kind": "smtp", "address": f"127.0.0.1:{port}", "timeout": "2s"},
            tmp_path,
        )
    assert code == 1
    assert ", reason smtp_banner: " in text
    assert "greeting 554" in text
    assert "tls starttls optional" in text
    assert 'lookout_probe_failures_total{target="mx",kind="smtp",reason="smtp_banner"} 1' in text


async def test_dns_answer_code_failure_shows_the_question_and_the_answers(
    tmp_path: Path,
) -> None:
    transport, port = await _serve_udp_nxdomain()
    try:
        code, text = await probe_target(
            {
                "name": "api-dns",
                "kind": "dns",
                "query": "api.example.test",
                "record": "AAAA",
                "timeout": "2s",
                "dns": {"nameserver": f"127.0.0.1:{port}"},
            },
            tmp_path,
        )
    finally:
        transport.close()
    assert code == 1
    assert ", reason dns_rcode: " in text
    assert f"Request   api.example.test AAAA @ 127.0.0.1:{port} (udp)\n" in text
    assert "Response  0 answers" in text
    assert 'lookout_dns_answers{target="api-dns",kind="dns"} 0' in text


async def test_probing_one_target_needs_only_its_own_environment_variables(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server = await aiohttp_server(_service())
    path = tmp_path / "lookout.yml"
    path.write_text(
        "targets:\n"
        f"  - {{name: api, kind: http, url: 'http://127.0.0.1:{server.port}/ok'}}\n"
        "  - {name: other, kind: http, url: '${LOOKOUT_TEST_UNSET_HOST}/'}\n"
        "  - {name: broken, kind: http, url: 'http://x/', intervall: 1s}\n"
        "heartbeats:\n"
        "  - {name: job, period: 1m, grace: 1m, token: '${LOOKOUT_TEST_UNSET_TOKEN}'}\n",
        encoding="utf-8",
    )
    code, stdout, stderr = await exporter_command("probe", "--config", str(path), "api")
    assert (code, stderr) == (0, "")
    assert 'lookout_probe_success{target="api",kind="http"} 1' in stdout
    code, _, stderr = await exporter_command("probe", "--config", str(path), "other")
    assert code == 1
    assert stderr.splitlines() == [
        f"{path}:3: targets[1].url: environment variable LOOKOUT_TEST_UNSET_HOST is not set"
    ]
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(path), {})
    assert len(caught.value.problems) == 3, "loading the whole config reports every problem"
