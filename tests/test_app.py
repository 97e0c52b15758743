"""The exporter's HTTP endpoints, reloads and series lifecycle, with real loopback targets."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.runtime import Options
from exporter.scheduler import Shard
from tests.metrics import assert_promtool_accepts, sample_value, series_names

Client = TestClient[web.Request, web.Application]


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def targets_yaml(upstream: str, *names: str, extra: str = "") -> str:
    lines = ["defaults: {interval: 100ms, timeout: 100ms}", extra, "targets:"]
    lines += [f"  - {{name: {n}, kind: http, url: '{upstream}/healthz'}}" for n in names]
    return "\n".join(lines) + "\n"


async def scrape(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def wait_for(client: Client, name: str, minimum: float, **labels: str) -> str:
    """Scrape until sample ``name`` reaches ``minimum`` (fails after 5 s)."""
    for _ in range(100):
        text = await scrape(client)
        value = sample_value(text, name, **labels)
        if value is not None and value >= minimum:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {minimum}")


async def test_metrics_serves_the_text_format_with_process_and_probe_series(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api", extra="location: eu-west-1"))
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    text = await wait_for(client, "lookout_probe_success", 1, target="api")
    response = await client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = series_names(text)
    assert {"process_cpu_seconds_total", "python_info", "lookout_build_info"} <= names
    assert sample_value(text, "lookout_probe_success", target="api", kind="http") == 1
    assert sample_value(text, "lookout_probe_success", location="eu-west-1") == 1
    assert sample_value(text, "lookout_targets", kind="http") == 1
    assert sample_value(text, "lookout_config_last_reload_successful") == 1


async def test_metrics_are_gzipped_when_asked(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    loaded = config.load_text(targets_yaml(upstream, "api"), config.Source("t", tmp_path), {})
    client = await aiohttp_client(create_app(Options(), loaded))
    response = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert b"lookout_build_info" in gzip.decompress(await response.read())


async def test_health_and_readiness(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    loaded = config.load_text("targets: []", config.Source("t", tmp_path), {})
    client = await aiohttp_client(create_app(Options(), loaded))
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200


async def test_reload_keeps_unchanged_counters_and_drops_removed_series(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "kept", "removed"))
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    await wait_for(client, "lookout_probe_duration_seconds_count", 3, target="kept")
    await wait_for(client, "lookout_probe_duration_seconds_count", 1, target="removed")
    before = sample_value(
        await scrape(client), "lookout_probe_duration_seconds_count", target="kept"
    )
    assert before is not None

    path.write_text(targets_yaml(upstream, "kept", "added"))
    response = await client.post("/-/reload")
    assert response.status == 200
    text = await wait_for(client, "lookout_probe_duration_seconds_count", 1, target="added")
    after = sample_value(text, "lookout_probe_duration_seconds_count", target="kept")
    assert after is not None
    assert after >= before, "the unchanged target kept its histogram"
    assert 'target="removed"' not in text


async def test_a_bad_reload_keeps_the_old_config_and_says_why(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    await wait_for(client, "lookout_probe_success", 1, target="api")
    path.write_text("targets:\n  - {name: api, kind: http, url: 'ftp://nope'}\n")
    response = await client.post("/-/reload")
    assert response.status == 500
    body = await response.text()
    assert f"{path}:2: targets[0].url: 'ftp://nope' is not an http:// or https:// URL" in body
    text = await scrape(client)
    assert sample_value(text, "lookout_config_last_reload_successful") == 0
    count = sample_value(text, "lookout_probe_duration_seconds_count", target="api")
    assert count is not None
    await wait_for(client, "lookout_probe_duration_seconds_count", count + 1, target="api")

    path.write_text(targets_yaml(upstream, "api"))
    assert (await client.post("/-/reload")).status == 200
    assert sample_value(await scrape(client), "lookout_config_last_reload_successful") == 1


async def test_a_shard_probes_only_its_share(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    names = [f"t{i}" for i in range(12)]
    loaded = config.load_text(targets_yaml(upstream, *names), config.Source("t", tmp_path), {})
    shard = Shard.parse("1/3")
    client = await aiohttp_client(create_app(Options(shard=shard), loaded))
    text = await scrape(client)
    owned = {n for n in names if shard.owns(n)}
    assert 0 < len(owned) < len(names)
    assert sample_value(text, "lookout_targets", kind="http") == len(owned)
    for name in names:
        assert (f'target="{name}"' in text) == (name in owned)


async def test_promtool_finds_no_problem_in_the_exposition(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    text = targets_yaml(upstream, "api") + (
        "  - name: slo-api\n    kind: http\n    url: 'http://127.0.0.1:1/'\n"
        "    labels: {team: core}\n"
        "    slo: {availability: 99.9, latency: {threshold: 300ms, objective: 99}}\n"
    )
    loaded = config.load_text(text, config.Source("t", tmp_path), {})
    client = await aiohttp_client(create_app(Options(location="lab"), loaded))
    exposition = await wait_for(client, "lookout_probe_duration_seconds_count", 1, target="slo-api")
    assert_promtool_accepts(exposition)


async def test_the_configured_links_are_exported_for_the_notifications(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    web_links = (
        "web: {external_url: 'https://lookout.example.com/', grafana_url: 'https://g.example.com'}"
    )
    loaded = config.load_text(
        targets_yaml(upstream, "api", extra=web_links), config.Source("t", tmp_path), {}
    )
    client = await aiohttp_client(create_app(Options(), loaded))
    text = await wait_for(client, "lookout_probe_success", 1, target="api")
    links = {"external_url": "https://lookout.example.com", "grafana_url": "https://g.example.com"}
    assert sample_value(text, "lookout_links_info", **links) == 1
    assert sample_value(text, "lookout_probe_endpoint_info", endpoint=f"{upstream}/healthz") == 1


async def test_without_links_in_the_config_no_links_are_exported(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    loaded = config.load_text("targets: []", config.Source("t", tmp_path), {})
    client = await aiohttp_client(create_app(Options(), loaded))
    assert "lookout_links_info{" not in await scrape(client)


def test_a_link_that_is_not_an_absolute_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"web\.grafana_url"):
        config.load_text(
            "web: {grafana_url: grafana.example.com}\ntargets: []\n",
            config.Source("t", tmp_path),
            {},
        )
