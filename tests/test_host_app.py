"""Host metrics in the running exporter: on by default, off by config, changed by a reload."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from exporter import config
from exporter.app import create_app
from exporter.runtime import Options
from tests.metrics import sample_value, series_names

Client = TestClient[web.Request, web.Application]


async def scrape(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


def host_series(text: str) -> set[str]:
    return {name for name in series_names(text) if name.startswith("lookout_host_")}


def write(path: Path, text: str) -> str:
    path.write_text(text if "targets:" in text else text + "targets: []\n")
    return str(path)


async def start(aiohttp_client: AiohttpClient, path: Path, text: str) -> Client:
    name = write(path, text)
    return await aiohttp_client(create_app(Options(config_path=name), config.load(name)))


async def reload(client: Client, path: Path, text: str) -> None:
    write(path, text)
    response = await client.post("/-/reload")
    assert response.status == 200, await response.text()


async def test_the_first_scrape_already_shows_the_host(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, tmp_path / "lookout.yml", "targets: []\n")
    text = await scrape(client)
    assert {
        "lookout_host_cpu_seconds_total",
        "lookout_host_load1",
        "lookout_host_memory_available_bytes",
        "lookout_host_filesystem_avail_bytes",
        "lookout_host_network_receive_bytes_total",
        "lookout_host_boot_time_seconds",
    } <= host_series(text)
    assert sample_value(text, "lookout_host_filesystem_device_error", mountpoint="/") == 0


async def test_host_enabled_false_leaves_the_host_out(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, tmp_path / "lookout.yml", "host: {enabled: false}\n")
    text = await scrape(client)
    assert host_series(text) == set()
    assert "lookout_build_info" in series_names(text)


async def test_a_reload_applies_changed_host_settings_on_the_next_scrape(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    client = await start(aiohttp_client, path, "host: {max_age: 1h}\n")
    assert (
        sample_value(await scrape(client), "lookout_host_network_receive_bytes_total", device="lo")
        is not None
    )

    await reload(client, path, "host: {max_age: 1h, enabled: false}\n")
    assert host_series(await scrape(client)) == set()

    await reload(client, path, "host: {max_age: 1h, network: {devices: {include: ^lo$}}}\n")
    text = await scrape(client)
    devices = {
        sample.labels["device"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "lookout_host_network_receive_bytes_total"
    }
    assert devices == {"lo"}


async def test_the_embedded_default_config_reports_the_host(aiohttp_client: AiohttpClient) -> None:
    loaded = config.load(None, {"LOOKOUT_SELF_ADDRESS": "127.0.0.1:9"})
    assert loaded.host.enabled
    client = await aiohttp_client(create_app(Options(), loaded))
    assert "lookout_host_cpus" in host_series(await scrape(client))
