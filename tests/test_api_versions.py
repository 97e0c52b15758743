"""The ``versions:`` matrix: one target per API version, named ``<name>@<key>`` and labelled
``api_version``, with each version's mapping merged over the target, problems reported at the key
where they were written, and v1/v2/v3 of a loopback API probed end to end."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.clock import SystemClock
from exporter.config import ConfigError
from exporter.probes.clients import SharedClients
from exporter.probes.http import HttpSpec
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runtime import Options
from exporter.status.views import request_json, select
from exporter.targets import Target
from tests.conftest import config_from_text
from tests.metrics import sample_value
from tests.test_api import get_json

SUNSET = datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)
V3 = "application/vnd.example.v3+json"
Client = TestClient[web.Request, web.Application]

MATRIX = """
targets:
  - name: orders-api
    kind: http
    url: "http://127.0.0.1:1/{{ version }}/orders?limit=1"
    interval: 30s
    labels: {team: orders}
    http: {headers: {Accept: application/json, X-Api-Version: "{{version}}"}}
    expect: {status: [200], body_matches: ['"orders"']}
    versions:
      v1: {expect: {deprecated: true}, labels: {tier: legacy}}
      v2: {}
      v3:
        http: {headers: {Accept: "application/vnd.example.v3+json"}}
        expect: {headers: [{name: Content-Type, matches: 'vnd\\.example\\.v3'}]}
        interval: 10s
  - {name: plain, kind: http, url: "http://127.0.0.1:1/"}
"""


def test_a_matrix_becomes_one_target_per_version_named_name_at_key(tmp_path: Path) -> None:
    loaded = config_from_text(MATRIX, tmp_path)
    names = [t.name for t in loaded.targets]
    assert names == ["orders-api@v1", "orders-api@v2", "orders-api@v3", "plain"]
    urls = [t.spec.url for t in loaded.targets[:3]]
    assert urls == [f"http://127.0.0.1:1/{v}/orders?limit=1" for v in ("v1", "v2", "v3")]


def test_each_version_is_merged_over_the_target(tmp_path: Path) -> None:
    v1, v2, v3, _ = config_from_text(MATRIX, tmp_path).targets
    specs = [t.spec for t in (v1, v2, v3)]
    assert all(isinstance(s, HttpSpec) for s in specs)
    headers = [dict(s.headers) for s in specs]
    assert headers[0] == {"Accept": "application/json", "X-Api-Version": "v1"}
    assert headers[2] == {"Accept": V3, "X-Api-Version": "v3"}  # merged key by key
    assert (v1.interval, v2.interval, v3.interval) == (30, 30, 10)
    assert specs[0].expect.deprecated
    assert not specs[1].expect.deprecated
    assert [p.pattern for p in specs[2].expect.body_matches] == ['"orders"']  # kept from the target
    assert [h.name for h in specs[2].expect.headers] == ["Content-Type"]
    assert not specs[1].expect.headers


def test_each_version_is_labelled_api_version(tmp_path: Path) -> None:
    v1, v2, _, plain = config_from_text(MATRIX, tmp_path).targets
    assert v1.labels == (("api_version", "v1"), ("team", "orders"), ("tier", "legacy"))
    assert v2.labels == (("api_version", "v2"), ("team", "orders"))
    assert plain.labels == ()


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_text(text, tmp_path)
    return [str(p) for p in caught.value.problems]


def test_a_mistake_in_a_version_names_the_versions_key_path(tmp_path: Path) -> None:
    text = MATRIX.replace("v2: {}", "v2: {expect: {json_schema: missing.json}}")
    (found,) = problems(text, tmp_path)
    assert found.startswith("test.yml:")
    assert "targets[0].versions.v2.expect.json_schema: " in found


def test_a_schema_mistake_in_a_version_names_the_versions_key_path(tmp_path: Path) -> None:
    text = MATRIX.replace("v2: {}", "v2: {expect: {status: [299x]}, kind: tcp}")
    found = "\n".join(problems(text, tmp_path))
    assert "targets[0].versions.v2" in found
    assert "kind" in found


def test_a_bad_duration_in_a_version_names_the_versions_key_path(tmp_path: Path) -> None:
    text = MATRIX.replace("interval: 10s", "interval: 10 parsecs")
    (found,) = problems(text, tmp_path)
    assert "targets[0].versions.v3.interval: " in found


def test_a_mistake_of_the_target_says_which_version_it_breaks(tmp_path: Path) -> None:
    text = MATRIX.replace("interval: 30s", "interval: 30s\n    timeout: 20s")
    (found,) = problems(text, tmp_path)
    assert "targets[0].timeout: timeout (20s) exceeds the interval (in version v3)" in found
    text = MATRIX.replace("interval: 10s", "interval: 10s\n        timeout: 20s")
    (found,) = problems(text, tmp_path)
    assert "targets[0].versions.v3.timeout: timeout (20s) exceeds the interval" in found


def test_the_api_version_label_of_a_matrix_is_its_own(tmp_path: Path) -> None:
    text = MATRIX.replace("tier: legacy", "api_version: one")
    (found,) = problems(text, tmp_path)
    assert "targets[0].versions.v1.labels.api_version: label 'api_version' is set by" in found


def test_a_version_placeholder_without_versions_is_a_mistake(tmp_path: Path) -> None:
    text = 'targets:\n  - {name: a, kind: http, url: "http://127.0.0.1:1/{{ version }}/"}\n'
    (found,) = problems(text, tmp_path)
    assert "targets[0].url: {{ version }} is only replaced in a target with `versions:`" in found


@pytest.mark.parametrize(
    ("versions", "wanted"),
    [
        pytest.param("{}", "versions", id="empty"),
        pytest.param("{'v/2': {}}", "versions", id="bad-key"),
        pytest.param("{v2: {kind: tcp}}", "versions.v2", id="not-a-version-key"),
    ],
)
def test_bad_versions_are_rejected_with_their_key_path(
    tmp_path: Path, versions: str, wanted: str
) -> None:
    text = (
        f"targets:\n  - {{name: a, kind: http, url: 'http://127.0.0.1:1/', versions: {versions}}}\n"
    )
    found = "\n".join(problems(text, tmp_path))
    assert f"targets[0].{wanted}" in found


def test_versions_are_only_for_http_targets(tmp_path: Path) -> None:
    text = "targets:\n  - {name: a, kind: tcp, address: '127.0.0.1:1', versions: {v1: {}}}\n"
    found = "\n".join(problems(text, tmp_path))
    assert "targets[0]" in found
    assert "versions" in found


def test_an_expanded_target_can_be_loaded_alone_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(MATRIX + "  - {name: broken, kind: http, url: 'http://127.0.0.1:1/', x: 1}\n")
    loaded = config.load(str(path), {}, target="orders-api@v3")
    assert "orders-api@v3" in [t.name for t in loaded.targets]


async def versioned(request: web.Request) -> web.Response:
    """v1 (deprecated, with Sunset) and v2 by path, v3 only to a client that asks for it."""
    version = request.match_info["version"]
    if version == "v1":
        headers = {"Sunset": format_datetime(SUNSET, usegmt=True), "Deprecation": "@1767225600"}
        return web.json_response({"orders": []}, headers=headers)
    if version == "v2":
        return web.json_response({"orders": []})
    if version == "v3" and request.headers.get("Accept") == V3:
        return web.Response(text=json.dumps({"orders": []}), content_type=V3)
    if version == "v3":
        return web.json_response({"orders": []})  # not negotiated: plain JSON
    raise web.HTTPNotFound()


@pytest.fixture
async def api(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/{version}/orders", versioned)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def matrix(api: str, interval: str = "30s") -> str:
    return (
        MATRIX.replace("http://127.0.0.1:1", api)
        .replace("interval: 30s", f"interval: {interval}")
        .replace("interval: 10s", f"interval: {interval}")
    )


async def probe_all(targets: tuple[Target[Any], ...]) -> list[ProbeResult]:
    clients = SharedClients()
    try:
        return [await run_probe(t, clients, SystemClock()) for t in targets]
    finally:
        await clients.close()


async def test_every_version_of_a_loopback_api_is_probed_on_its_own(
    api: str, tmp_path: Path
) -> None:
    results = await probe_all(config_from_text(matrix(api), tmp_path).targets[:3])
    assert [r.reason for r in results] == [None, None, None]


async def test_a_version_that_stops_negotiating_fails_alone(api: str, tmp_path: Path) -> None:
    text = matrix(api).replace(f"Accept: {json.dumps(V3)}", "Accept: application/json")
    text = text.replace(f'Accept: "{V3}"', "Accept: application/json")
    results = await probe_all(config_from_text(text, tmp_path).targets[:3])
    assert [r.reason for r in results] == [None, None, Reason.HEADER]


@pytest.fixture
async def running(aiohttp_client: AiohttpClient, api: str, tmp_path: Path) -> Client:
    """An exporter probing the matrix against the loopback API, once every version probed."""
    path = tmp_path / "lookout.yml"
    # A timeout far above a loopback answer's time: a probe that fails on a busy machine would
    # make the versions' success 0.
    text = matrix(api, "1s").replace("targets:", "defaults: {timeout: 1s}\ntargets:")
    path.write_text(text)
    client: Client = await aiohttp_client(
        create_app(Options(config_path=str(path)), config.load(str(path)))
    )
    for _ in range(200):
        text = await (await client.get("/metrics")).text()
        done = [
            sample_value(text, "lookout_probe_success", target=f"orders-api@{v}")
            for v in ("v1", "v2", "v3")
        ]
        if all(d is not None for d in done):
            return client
        await asyncio.sleep(0.05)
    raise AssertionError("the versions were never probed")


async def test_metrics_carry_api_version_and_the_sunset_of_each_version(running: Client) -> None:
    text = await (await running.get("/metrics")).text()
    for version in ("v1", "v2", "v3"):
        labels = {"target": f"orders-api@{version}", "api_version": version, "team": "orders"}
        assert sample_value(text, "lookout_probe_success", **labels) == 1
        assert sample_value(text, "lookout_probe_duration_seconds_count", **labels)
    sunset = sample_value(text, "lookout_http_sunset_timestamp_seconds", api_version="v1")
    assert sunset == SUNSET.timestamp()
    assert sample_value(text, "lookout_http_sunset_timestamp_seconds", api_version="v2") is None


async def test_the_api_groups_the_versions_of_a_matrix(running: Client) -> None:
    body = await get_json(running, "/api/v1/targets?sort=name", 200, "/api/v1/targets")
    matrices = {t["name"]: t["matrix"] for t in body["targets"]}
    assert matrices["plain"] is None
    assert matrices["orders-api@v2"] == {
        "name": "orders-api",
        "version": "v2",
        "versions": ["v1", "v2", "v3"],
    }
    one = await get_json(running, "/api/v1/targets/orders-api@v3", 200, "/api/v1/targets/{name}")
    assert one["matrix"]["versions"] == ["v1", "v2", "v3"]
    assert one["labels"]["api_version"] == "v3"


async def test_the_status_page_links_the_versions_of_a_matrix(running: Client) -> None:
    page = await (await running.get("/")).text()
    assert "version v1 of orders-api" in page
    assert 'href="targets/orders-api%40v2"' in page
    detail = await running.get("/targets/orders-api%40v2")
    assert detail.status == 200
    text = await detail.text()
    assert '<a href="orders-api%40v1">v1</a>' in text
    assert "<strong>v2</strong>" in text


def row(name: str, state: str, versions: tuple[str, ...] = ()) -> dict[str, Any]:
    base, _, version = name.partition("@")
    matrix = {"name": base, "version": version, "versions": list(versions)} if version else None
    return {"name": name, "state": state, "matrix": matrix}


@pytest.mark.parametrize("sort", ["state", "name"])
def test_the_versions_of_a_matrix_are_listed_together_in_version_order(sort: str) -> None:
    """Where the matrix's first row stands (its worst version when sorted by state)."""
    order = ("v3", "v1", "v2")
    rows = [
        row("orders@v1", "up", order),
        row("billing", "down"),
        row("orders@v2", "down", order),
        row("orders@v3", "up", order),
        row("zeta", "up"),
        row("alpha", "up"),
    ]
    names = [item["name"] for item in select(rows, "all", sort)]
    versions = ["orders@v3", "orders@v1", "orders@v2"]
    if sort == "state":
        assert names == ["billing", *versions, "alpha", "zeta"]
    else:
        assert names == ["alpha", "billing", *versions, "zeta"]
    failing = [item["name"] for item in select(rows, "failing", sort)]
    assert failing == ["billing", "orders@v2"]


FLOW_MATRIX = """
targets:
  - name: checkout
    kind: flow
    flow:
      steps:
        - name: orders
          url: "http://127.0.0.1:1/{{ version }}/orders"
          http: {headers: {X-Api-Version: "{{ version }}"}}
    versions:
      v1: {}
      v2: {labels: {tier: current}}
"""


def test_a_flow_matrix_becomes_one_flow_per_version(tmp_path: Path) -> None:
    v1, v2 = config_from_text(FLOW_MATRIX, tmp_path).targets
    assert (v1.name, v2.name) == ("checkout@v1", "checkout@v2")
    assert v2.labels == (("api_version", "v2"), ("tier", "current"))
    (step,) = v2.spec.steps
    assert step.url.render({}) == "http://127.0.0.1:1/v2/orders"
    assert [(name, t.render({})) for name, t in step.headers] == [("X-Api-Version", "v2")]


def test_a_flow_without_versions_cannot_use_the_version_placeholder(tmp_path: Path) -> None:
    text = FLOW_MATRIX.split("    versions:")[0]
    found = "\n".join(problems(text, tmp_path))
    assert "targets[0].flow.steps[0]." in found
    assert "no earlier step extracts 'version'" in found


def test_a_secret_written_in_a_version_is_redacted_like_the_targets(tmp_path: Path) -> None:
    text = MATRIX.replace("v2: {}", 'v2: {http: {headers: {X-Tenant: "${ORDERS_KEY}"}}}')
    v1, v2, *_ = config_from_text(text, tmp_path, {"ORDERS_KEY": "s3cret-key"}).targets
    assert dict(v2.spec.headers)["X-Tenant"] == "s3cret-key"
    shown = json.dumps(request_json(v2))
    assert "s3cret-key" not in shown
    assert "X-Tenant" in shown
    assert "X-Tenant" not in json.dumps(request_json(v1))
