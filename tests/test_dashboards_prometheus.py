"""Every dashboard query, run by a real Prometheus against a real exporter.

The exporter probes passing and failing loopback targets (plain HTTP, HTTPS with a test CA, DNS
over TCP, a grpcio health service, ICMP echo to 127.0.0.1, an RDAP server, a versions: matrix)
and holds heartbeats that are up, failed, running and flapping; Debian's ``prometheus`` scrapes
it every second with the bundled rules loaded, once keeping classic histograms and once with
native histograms (the protobuf exposition). Each panel query and each variable query is then
sent through the HTTP API with the variables substituted: it must parse, and it must return data
(a sample that is not NaN) within a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from itertools import count, cycle
from pathlib import Path
from typing import Any

import aiohttp
import dns.message
import dns.rrset
import pytest
import trustme
import yaml
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.runtime import Options
from tests import processes
from tests.kind_peers import grpc_health_server, rdap_domain
from tests.test_dashboards import BY_UID, ROOT, panels

pytestmark = pytest.mark.tools

LOCATION = "test-location"
TARGETS = (
    "api-ok",
    "api-failing",
    "api-tls",
    "api-dns",
    "api-grpc",
    "api-icmp",
    "api-domain",
    "api-flaky",
    "api-flow",
    "api-versions@v1",
)
# Windows for Grafana's interval variables: with a 1 s scrape interval, 4 s holds enough samples
# for rate(), and 1m covers everything since the exporter started.
RATE_INTERVAL = "4s"
RANGE = "1m"
DEADLINE_SECONDS = 40.0
# Heartbeats in every state a panel shows: up after a measured run with exit code 0, failed
# after a success (so it has an age), running, and one of two expected workers alive.
PINGS = (
    "/ping/hb-ok/start?rid=run-1",
    "/ping/hb-ok/0?rid=run-1",
    "/ping/hb-failed",
    "/ping/hb-failed/1",
    "/ping/hb-running/start",
    "/ping/hb-workers?instance=worker-1",
)
# hb-flapping fails and succeeds in turn while Prometheus scrapes: incidents that open and
# close, for the heartbeats' MTTR and MTBF.
FLAPPING = ("/ping/hb-flapping/fail", "/ping/hb-flapping")
FLAP_SECONDS = 0.5


@dataclass(frozen=True)
class PanelQuery:
    where: str
    expr: str
    instant: bool
    per_target: bool


def substitute(expr: str, instance: str, target: str) -> str:
    values = {
        "job": "lookout",
        "instance": instance,
        "location": LOCATION,
        "target": target,
        "base": target.partition("@")[0],
        "heartbeat": ".*",
        "slo_window": RANGE,
        "__rate_interval": RATE_INTERVAL,
        "__range": RANGE,
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def panel_queries() -> Iterator[PanelQuery]:
    for uid, board in sorted(BY_UID.items()):
        for item in panels(board):
            for target in item["targets"]:
                # The panel id keeps two panels of one title (a stat and a graph) apart.
                yield PanelQuery(
                    where=f"{uid}/{item['id']}:{item['title']}/{target['refId']}",
                    expr=target["expr"],
                    instant=target["instant"],
                    per_target=bool(re.search(r"\$(target|base)\b", target["expr"])),
                )


def variable_queries() -> Iterator[tuple[str, str, str]]:
    """(where, series selector, label) of every ``label_values`` variable."""
    for uid, board in sorted(BY_UID.items()):
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            found = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"])
            assert found, f"{uid}/${variable['name']}: not a label_values query"
            yield f"{uid}/${variable['name']}", found.group(1), found.group(2)


def rule_files(directory: Path) -> list[str]:
    """The bundled Prometheus rule files (YAML documents with ``groups``), copied into
    ``directory`` without the groups' own evaluation intervals, so every group runs at the
    test's one-second interval. ``rules/optional/`` is left out: its files replace defaults."""
    found = []
    for path in sorted((ROOT / "rules").rglob("*.yml")):
        if "optional" in path.parent.parts:
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "groups" in document:
            for group in document["groups"]:
                group.pop("interval", None)
            copy = directory / f"{path.parent.name}-{path.name}"
            copy.write_text(yaml.safe_dump(document), encoding="utf-8")
            found.append(str(copy))
    return found


async def ok(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def broken(_request: web.Request) -> web.Response:
    """A deprecated version in maintenance: 503 with Retry-After, Sunset and Deprecation."""
    headers = {
        "Retry-After": "120",
        "Sunset": "Wed, 31 Mar 2027 23:59:59 GMT",
        "Deprecation": "@1767225600",
    }
    return web.json_response({"status": "broken"}, status=503, headers=headers)


async def backlog(_request: web.Request) -> web.Response:
    return web.json_response({"backlog": 3})


def flaky() -> Callable[[web.Request], Awaitable[web.Response]]:
    """Fails every other request: incidents that open and close, for MTTR and MTBF."""
    requests = count()

    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({}, status=503 if next(requests) % 2 else 200)

    return handler


@pytest.fixture
async def upstreams(aiohttp_server: AiohttpServer, ca: trustme.CA) -> dict[str, str]:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/rdap/domain/{name}", rdap_domain)
    app.router.add_get("/flaky", flaky())
    app.router.add_get("/backlog", backlog)
    plain = await aiohttp_server(app)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    secure_app = web.Application()
    secure_app.router.add_get("/ok", ok)
    secure = await aiohttp_server(secure_app, ssl=server_context)
    return {
        "plain": f"http://127.0.0.1:{plain.port}",
        "secure": f"https://127.0.0.1:{secure.port}",
    }


async def answer_dns(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """DNS over TCP: two A records for any name, until the client hangs up."""
    try:
        while size := int.from_bytes(await reader.readexactly(2), "big"):
            query = dns.message.from_wire(await reader.readexactly(size))
            response = dns.message.make_response(query)
            name = query.question[0].name
            response.answer.append(
                dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1", "192.0.2.2")
            )
            wire = response.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def nameserver() -> AsyncIterator[str]:
    server = await asyncio.start_server(answer_dns, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def grpc_health() -> AsyncIterator[str]:
    """A grpcio server whose health service says NOT_SERVING for the whole server."""
    async with grpc_health_server(serving=False) as address:
        yield address


@pytest.fixture
async def exporter(
    aiohttp_server: AiohttpServer,
    upstreams: dict[str, str],
    nameserver: str,
    grpc_health: str,
    ca_file: Path,
    tmp_path: Path,
) -> AsyncIterator[str]:
    """The exporter on a loopback port, probing every target every 200 ms, with hb-flapping
    failing and succeeding in turn; its address."""
    path = tmp_path / "lookout.yml"
    path.write_text(
        f"""
defaults: {{interval: 200ms, timeout: 200ms}}
targets:
  - name: api-ok
    kind: http
    url: {upstreams["plain"]}/ok
    labels: {{service: orders}}
    slo: {{availability: 99.9, latency: {{threshold: 100ms, objective: 99}}}}
    sla: {{availability: 99.5}}
  - name: api-failing
    kind: http
    url: {upstreams["plain"]}/broken
    slo: {{availability: 99}}
    confirm: {{failures: 2}}
  - name: api-versions
    kind: http
    url: {upstreams["plain"]}/ok
    versions:
      v1: {{url: "{upstreams["plain"]}/broken"}}
      v2: {{}}
  - name: api-flaky
    kind: http
    url: {upstreams["plain"]}/flaky
    labels: {{service: orders}}
    sla: {{availability: 99.9}}
  - name: api-tls
    kind: http
    url: {upstreams["secure"]}/ok
    http: {{tls: {{ca_file: {ca_file}}}}}
  - name: api-dns
    kind: dns
    query: api.example.test
    dns: {{nameserver: "{nameserver}", transport: tcp}}
  - name: api-grpc
    kind: grpc
    address: "{grpc_health}"
  - name: api-icmp
    kind: icmp
    host: 127.0.0.1
    icmp: {{count: 2, interval: 10ms, reply_timeout: 100ms}}
  - name: api-domain
    kind: domain
    domain: example.test
    interval: 1s
    rdap: {{server: "{upstreams["plain"]}/rdap/"}}
  - name: api-flow
    kind: flow
    flow:
      steps:
        - name: backlog
          url: {upstreams["plain"]}/backlog
          export: {{backlog: {{json: "$.backlog"}}}}
        - name: broken
          url: {upstreams["plain"]}/broken
heartbeats:
  - {{name: hb-ok, period: 1h, grace: 10m, max_runtime: 30m, min_runtime: 1s}}
  - {{name: hb-failed, period: 1h, grace: 10m}}
  - {{name: hb-running, period: 1h, grace: 10m, max_runtime: 30m}}
  - {{name: hb-workers, period: 1h, grace: 10m, instances: 2}}
  - {{name: hb-flapping, period: 1h, grace: 10m, labels: {{service: orders}}}}
""",
        encoding="utf-8",
    )
    options = Options(
        config_path=str(path), location=LOCATION, storage_path=tmp_path / "heartbeats"
    )
    server = await aiohttp_server(create_app(options, config.load(str(path))), host="127.0.0.1")
    address = f"127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(f"http://{address}") as session:
        for ping in PINGS:
            async with session.post(ping) as response:
                assert response.status == 200, f"{ping}: {response.status}"

        async def flap() -> None:
            for ping in cycle(FLAPPING):
                async with session.post(ping) as response:
                    assert response.status == 200, f"{ping}: {response.status}"
                await asyncio.sleep(FLAP_SECONDS)

        flapping = asyncio.create_task(flap())
        try:
            yield address
        finally:
            flapping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flapping


# How Prometheus is run: scraping text and keeping classic histograms, or negotiating the
# protobuf exposition and ingesting the duration histograms as native ones.
PROMETHEUS_MODES = {"classic": (), "native": ("--enable-feature=native-histograms",)}


@pytest.fixture(params=sorted(PROMETHEUS_MODES))
async def prometheus(
    request: pytest.FixtureRequest, exporter: str, tmp_path: Path
) -> AsyncIterator[str]:
    """Debian's prometheus scraping the exporter every second, with classic or native
    histograms; its base URL."""
    settings = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files(tmp_path),
        "scrape_configs": [{"job_name": "lookout", "static_configs": [{"targets": [exporter]}]}],
    }
    flags = PROMETHEUS_MODES[request.param]
    async with processes.prometheus(settings, tmp_path, "--log.level=warn", *flags) as base:
        yield base


def has_data(result: dict[str, Any]) -> bool:
    """True when a result holds at least one sample that is not NaN (or a native histogram)."""
    if result["resultType"] == "scalar":
        return not math.isnan(float(result["result"][1]))
    for series in result["result"]:
        if "histogram" in series or "histograms" in series:
            return True
        points = series.get("values") or [series["value"]]
        if any(not math.isnan(float(value)) for _, value in points):
            return True
    return False


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def query(self, expr: str, instant: bool) -> tuple[bool, str]:
        """(has data, error); the error is Prometheus' message when the query is rejected."""
        now = time.time()
        if instant:
            path, params = "query", {"query": expr, "time": f"{now:.3f}"}
        else:
            path = "query_range"
            params = {"query": expr, "start": f"{now - 60:.3f}", "end": f"{now:.3f}", "step": "1"}
        async with self.session.post(f"{self.base}/api/v1/{path}", data=params) as response:
            body = await response.json()
        if body["status"] != "success":
            return False, f"{body['errorType']}: {body['error']}"
        return has_data(body["data"]), ""

    async def label_values(self, selector: str, label: str) -> tuple[list[str], str]:
        now = time.time()
        params = {"match[]": selector, "start": f"{now - 60:.3f}", "end": f"{now:.3f}"}
        async with self.session.post(f"{self.base}/api/v1/series", data=params) as response:
            body = await response.json()
        if body["status"] != "success":
            return [], f"{body['errorType']}: {body['error']}"
        return sorted({s[label] for s in body["data"] if label in s}), ""


async def test_every_panel_and_variable_query_parses_and_returns_data(
    prometheus: str, exporter: str
) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, prometheus)
        queries = list(panel_queries())
        pending = {query.where: query for query in queries}
        assert len(pending) == len(queries)
        variables = {where: (selector, label) for where, selector, label in variable_queries()}
        errors: dict[str, str] = {}
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (pending or variables) and time.monotonic() < deadline:
            for where, query in list(pending.items()):
                for target in TARGETS if query.per_target else TARGETS[:1]:
                    data, error = await api.query(
                        substitute(query.expr, exporter, target), query.instant
                    )
                    if error:
                        errors[where] = error
                    if data or error:
                        del pending[where]
                        break
            for where, (selector, label) in list(variables.items()):
                values, error = await api.label_values(
                    substitute(selector, exporter, TARGETS[0]), label
                )
                if error:
                    errors[where] = error
                if values or error:
                    del variables[where]
            if pending or variables:
                await asyncio.sleep(1)

    assert not errors, "rejected by Prometheus:\n" + "\n".join(
        f"{where}: {error}" for where, error in sorted(errors.items())
    )
    assert not pending, f"no data after {DEADLINE_SECONDS}s:\n" + "\n".join(sorted(pending))
    assert not variables, f"variables without values: {sorted(variables)}"
