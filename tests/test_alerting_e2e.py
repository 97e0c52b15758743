"""End to end: the exporter, Debian's Prometheus with the rule pack and Alertmanager with the
example routes deliver Lookout alerts to a webhook, firing and then resolved; and every metric
the rules use is in the exporter's output.

The rules wait minutes (``for:``) and hold alerts after recovery (``keep_firing_for``), which is
too long for a test. The test therefore loads a temporary copy of the rule files in which every
``for:`` is 1s and ``keep_firing_for`` is removed; the expressions are the shipped ones.
Prometheus scrapes the exporter and evaluates the rules every second, and Alertmanager flushes
its groups after one second (``loopback_alertmanager_config``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import dns.message
import dns.rrset
import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.smtp import SMTP
from prometheus_client.parser import text_string_to_metric_families

from exporter.protobuf.metrics_pb2 import HISTOGRAM
from tests.exporter_process import run_exporter
from tests.metrics import sample_value, series_names
from tests.processes import free_port, prometheus, running
from tests.protobuf_samples import PROMETHEUS_ACCEPT, read_families
from tests.rules.pack import ROOT, RULE_FILES, loopback_alertmanager_config
from tests.rules.stack import webhook_server
from tests.tools import require_tool

pytestmark = pytest.mark.tools

# Seconds to wait for one notification; they arrive within a few seconds.
NOTIFY_TIMEOUT = 60


def fast_rule_files(dest: Path) -> None:
    """Copies of the rule files under ``dest`` with every ``for:`` at 1s, no
    ``keep_firing_for`` and no group ``interval`` (every group at the test's one second)."""
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
                rule.pop("keep_firing_for", None)
        copy = dest / path.relative_to(ROOT / "rules")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml.safe_dump(document, sort_keys=False))


class Upstream:
    """A loopback HTTP service whose health endpoint answers ``status``."""

    def __init__(self) -> None:
        self.status = 200

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(status=self.status, text="ok" if self.status == 200 else "broken")

    async def retiring(self, _request: web.Request) -> web.Response:
        """An API version that announces its removal (RFC 8594)."""
        return web.Response(text="ok", headers={"Sunset": "Sat, 31 Dec 2099 23:59:59 GMT"})


@contextlib.asynccontextmanager
async def upstream_server(
    context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[Upstream, str]]:
    upstream = Upstream()
    app = web.Application()
    app.router.add_get("/health", upstream.health)
    app.router.add_get("/v1/health", upstream.retiring)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=context)
    scheme = "https" if context else "http"
    try:
        yield upstream, f"{scheme}://127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def exporter(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[str]:
    """``python -m exporter`` from this tree on a loopback port; yields its base URL."""
    path = tmp_path / "lookout.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    async with run_exporter(["--config", str(path)], tmp_path, ready="/-/ready") as process:
        yield process.url


async def ping(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url) as response:
        assert response.status == 200, await response.text()


async def keep_pinging(session: aiohttp.ClientSession, url: str) -> None:
    """A healthy job: a success ping twice a second."""
    while True:
        await ping(session, url)
        await asyncio.sleep(0.5)


async def test_a_failing_target_and_a_missed_heartbeat_page_and_then_resolve(
    tmp_path: Path,
) -> None:
    require_tool("prometheus")
    alertmanager = require_tool("alertmanager")
    rules = tmp_path / "rules"
    fast_rule_files(rules)
    am_port = free_port()
    async with (
        upstream_server() as (upstream, upstream_url),
        webhook_server() as (hook, hook_url),
    ):
        config = {
            "defaults": {"interval": "1s", "timeout": "500ms"},
            "targets": [
                {
                    "name": "e2e-api",
                    "kind": "http",
                    "url": f"{upstream_url}/health",
                    "labels": {"service": "e2e"},
                }
            ],
            "heartbeats": [{"name": "e2e-job", "period": "2s", "grace": "1s"}],
        }
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(loopback_alertmanager_config(hook_url)))
        async with (
            exporter(config, tmp_path) as exporter_url,
            running(
                [
                    alertmanager,
                    f"--config.file={am_config}",
                    f"--storage.path={tmp_path / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                f"http://127.0.0.1:{am_port}/-/ready",
                tmp_path / "alertmanager.log",
            ),
        ):
            settings = {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [
                    str(rules / "recording" / "*.yml"),
                    str(rules / "alerts" / "*.yml"),
                ],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "lookout",
                        "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
                    }
                ],
            }
            async with (
                # Alerts that fire before Prometheus has found Alertmanager (the watchdog) are
                # resent after this delay, 1m by default.
                prometheus(settings, tmp_path, "--rules.alert.resend-delay=1s"),
                aiohttp.ClientSession() as session,
            ):
                heartbeat = f"{exporter_url}/ping/e2e-job"
                # One success: the deadline is 3s (period + grace) away and nothing follows it.
                await ping(session, heartbeat)
                upstream.status = 503
                async with asyncio.timeout(NOTIFY_TIMEOUT):
                    failing = await hook.wait_for(
                        "pager", "firing", "LookoutProbeFailing", target="e2e-api"
                    )
                    missed = await hook.wait_for(
                        "pager", "firing", "LookoutHeartbeatMissed", heartbeat="e2e-job"
                    )
                assert failing["labels"] == {
                    "alertname": "LookoutProbeFailing",
                    "severity": "critical",
                    "job": "lookout",
                    "target": "e2e-api",
                    "kind": "http",
                    "service": "e2e",
                }
                assert failing["annotations"]["runbook_url"].endswith("/lookout-probe-failing.md")
                assert failing["annotations"]["dashboard_url"] == (
                    "/d/lookout-endpoint/lookout-endpoint?var-target=e2e-api"
                )
                assert missed["labels"]["severity"] == "critical"
                assert missed["annotations"]["runbook_url"].endswith("/lookout-heartbeat-missed.md")

                upstream.status = 200
                pinger = asyncio.create_task(keep_pinging(session, heartbeat))
                try:
                    async with asyncio.timeout(NOTIFY_TIMEOUT):
                        await hook.wait_for(
                            "pager", "resolved", "LookoutProbeFailing", target="e2e-api"
                        )
                        await hook.wait_for(
                            "pager", "resolved", "LookoutHeartbeatMissed", heartbeat="e2e-job"
                        )
                finally:
                    pinger.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pinger
                # The watchdog reached the dead man's switch along the way.
                assert hook.delivered("deadmansswitch")


def metric_names_in_rules() -> set[str]:
    """Every exporter metric a rule expression selects (recorded series and `up` excluded)."""
    names: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                names.update(re.findall(r"(?<![\w:])lookout_[a-z0-9_]+(?![\w:])", rule["expr"]))
    return names


class DnsResponder(asyncio.DatagramProtocol):
    """A loopback DNS server over UDP: every A question gets 192.0.2.10."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        name = query.question[0].name
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.10"))
        self.transport.sendto(response.to_wire(), addr)


@contextlib.asynccontextmanager
async def dns_server() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DnsResponder, local_addr=("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def smtp_server() -> AsyncIterator[str]:
    """aiosmtpd on loopback (no STARTTLS, no AUTH: the probe's defaults accept that)."""
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(Sink(), hostname="mx.test"), "127.0.0.1", 0
    )
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


class Sink:
    """aiosmtpd handler: probes never send mail."""


@contextlib.asynccontextmanager
async def grpc_server() -> AsyncIterator[str]:
    """A grpcio server whose standard health service says SERVING."""
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio

    server = aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def rdap_domain(request: web.Request) -> web.Response:
    """An RDAP domain object (RFC 9083) with an expiration event."""
    document = {
        "objectClassName": "domain",
        "ldhName": request.match_info["name"],
        "status": ["active"],
        "events": [{"eventAction": "expiration", "eventDate": "2030-01-01T00:00:00Z"}],
    }
    return web.json_response(document, content_type="application/rdap+json")


@contextlib.asynccontextmanager
async def rdap_server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/rdap/domain/{name}", rdap_domain)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}/rdap/"
    finally:
        await server.close()


async def test_every_metric_the_rules_use_is_in_the_exporter_output(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """An exporter with targets of every kind and heartbeats exports every name the rules use."""
    certificate = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with (
        upstream_server() as (_, plain_url),
        upstream_server(server_context) as (_, tls_url),
        dns_server() as nameserver,
        smtp_server() as smtp_address,
        grpc_server() as grpc_address,
        rdap_server() as rdap_url,
    ):
        config = {
            "defaults": {"interval": "1s", "timeout": "500ms"},
            "targets": [
                {
                    "name": "ok",
                    "kind": "http",
                    "url": f"{plain_url}/health",
                    "slo": {"availability": 99.9, "latency": {"threshold": "1s", "objective": 99}},
                    "sla": {"availability": 99.5},
                },
                {
                    "name": "broken",
                    "kind": "http",
                    "url": f"{plain_url}/health",
                    "expect": {"status": [204]},
                },
                {
                    "name": "https",
                    "kind": "http",
                    "url": f"{tls_url}/health",
                    "http": {"tls": {"ca_file": str(ca_file)}},
                },
                {"name": "tcp", "kind": "tcp", "address": plain_url.removeprefix("http://")},
                {
                    "name": "tls",
                    "kind": "tls",
                    "address": tls_url.removeprefix("https://"),
                    "tls": {"ca_file": str(ca_file)},
                },
                {
                    "name": "dns",
                    "kind": "dns",
                    "query": "api.example.",
                    "dns": {"nameserver": nameserver},
                },
                {"name": "smtp", "kind": "smtp", "address": smtp_address},
                {"name": "retiring", "kind": "http", "url": f"{plain_url}/v1/health"},
                {"name": "grpc", "kind": "grpc", "address": grpc_address},
                {
                    "name": "icmp",
                    "kind": "icmp",
                    "host": "127.0.0.1",
                    "icmp": {"count": 2, "interval": "10ms", "reply_timeout": "200ms"},
                },
                {
                    "name": "domain",
                    "kind": "domain",
                    "domain": "example.test",
                    "interval": "1s",
                    "rdap": {"server": rdap_url},
                },
                {
                    "name": "flow",
                    "kind": "flow",
                    "flow": {"steps": [{"name": "health", "url": f"{plain_url}/health"}]},
                },
            ],
            "connectivity": {
                "interval": "1s",
                "canaries": [
                    {"name": "edge", "kind": "tcp", "address": plain_url.removeprefix("http://")}
                ],
            },
            "maintenance": [
                {
                    "name": "patching",
                    "start": "2020-01-01T00:00:00Z",
                    "end": "2999-01-01T00:00:00Z",
                    "targets": ["broken"],
                }
            ],
            "heartbeats": [
                {"name": "job", "period": "1h", "grace": "1m", "max_runtime": "10m"},
                {"name": "workers", "period": "1h", "grace": "1m", "instances": 2},
            ],
        }
        async with (
            exporter(config, tmp_path) as exporter_url,
            aiohttp.ClientSession() as session,
        ):
            await ping(session, f"{exporter_url}/ping/job/start")
            await ping(session, f"{exporter_url}/ping/job")
            await ping(session, f"{exporter_url}/ping/workers?instance=a")
            probed = {
                "ok",
                "broken",
                "https",
                "tcp",
                "tls",
                "dns",
                "smtp",
                "retiring",
                "grpc",
                "icmp",
                "domain",
                "flow",
            }
            # Every kind's first probe within 30 s, each scrape within 5 s; a failure names
            # the targets still without a result.
            seen: set[str] = set()
            text = ""
            deadline = asyncio.get_running_loop().time() + 30
            while not probed <= seen:
                left = deadline - asyncio.get_running_loop().time()
                assert left > 0, f"no probe result yet for {sorted(probed - seen)}"
                async with asyncio.timeout(5):
                    async with session.get(f"{exporter_url}/metrics") as response:
                        text = await response.text()
                seen = probe_results(text)
                if not probed <= seen:
                    await asyncio.sleep(0.2)
            protobuf = {"Accept": PROMETHEUS_ACCEPT}
            async with session.get(f"{exporter_url}/metrics", headers=protobuf) as response:
                families = read_families(await response.read())

    # The text's series, and the native histograms a Prometheus scraping protobuf ingests.
    native = {f.name for f in families if f.type == HISTOGRAM and f.metric[0].histogram.schema}
    exported = series_names(text) | native
    assert sample_value(text, "lookout_probe_success", target="broken") == 0
    for target in probed - {"broken"}:
        assert sample_value(text, "lookout_probe_success", target=target) == 1, target
    used = metric_names_in_rules()
    assert {"lookout_probe_duration_seconds_bucket", "lookout_host_load1"} <= used
    assert "lookout_probe_duration_seconds" in native & used
    missing = used - exported
    assert not missing, f"the rules use metrics the exporter does not export: {sorted(missing)}"


def probe_results(text: str) -> set[str]:
    """Targets whose latest probe result is in the exposition."""
    return {
        sample.labels["target"]
        for family in text_string_to_metric_families(text)
        if family.name == "lookout_probe_success"
        for sample in family.samples
    }
