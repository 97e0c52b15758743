"""Heartbeats inside the exporter app: routes, series, readiness, reloads, the store lifetime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from exporter import config
from exporter.app import create_app
from exporter.heartbeats.sqlite_store import DB_FILE
from exporter.runtime import Options
from tests.exporter_process import exporter_command
from tests.metrics import assert_promtool_accepts, sample_value, series_names
from tests.processes import free_port

Client = TestClient[web.Request, web.Application]

TWO = """
heartbeats:
  - {name: nightly-billing, cron: "0 2 * * *", timezone: Europe/Berlin, grace: 30m,
     max_runtime: 2h, labels: {team: billing}}
  - {name: orders-consumer, period: 1m, grace: 2m, instances: 3}
"""


async def start(aiohttp_client: AiohttpClient, path: Path, storage: Path) -> Client:
    options = Options(config_path=str(path), storage_path=storage)
    return await aiohttp_client(create_app(options, config.load(str(path))))


async def scrape(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_pings_show_up_in_the_metrics(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(TWO)
    client = await start(aiohttp_client, path, tmp_path / "data")
    assert (await client.get("/-/ready")).status == 200
    assert (await client.get("/ping/nightly-billing/start?rid=r1")).status == 200
    assert (await client.post("/ping/nightly-billing/0?rid=r1", data=b"42 invoices")).status == 200
    for worker in ("w1", "w2"):
        assert (await client.get(f"/ping/orders-consumer?instance={worker}")).status == 200
    text = await scrape(client)
    billing = {"heartbeat": "nightly-billing", "team": "billing"}
    assert sample_value(text, "lookout_heartbeats") == 2
    assert sample_value(text, "lookout_heartbeat_status", **billing, status="up") == 1
    assert sample_value(text, "lookout_heartbeat_pings_total", **billing, signal="start") == 1
    assert sample_value(text, "lookout_heartbeat_last_exit_code", **billing) == 0
    assert sample_value(text, "lookout_heartbeat_max_runtime_seconds", **billing) == 7200
    deadline = sample_value(text, "lookout_heartbeat_deadline_timestamp_seconds", **billing)
    success = sample_value(text, "lookout_heartbeat_last_success_timestamp_seconds", **billing)
    assert deadline is not None
    assert success is not None
    assert 0 < deadline - success <= 86400 + 3600 + 1800
    consumer = {"heartbeat": "orders-consumer"}
    assert sample_value(text, "lookout_heartbeat_instances_alive", **consumer) == 2
    assert sample_value(text, "lookout_heartbeat_instances_expected", **consumer) == 3


async def test_reload_adds_and_removes_heartbeats(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(TWO)
    client = await start(aiohttp_client, path, tmp_path / "data")
    assert (await client.get("/ping/orders-consumer")).status == 200
    path.write_text("heartbeats:\n  - {name: reports, period: 1h, grace: 5m}\n")
    assert (await client.post("/-/reload")).status == 200
    text = await scrape(client)
    assert 'heartbeat="orders-consumer"' not in text
    assert 'heartbeat="nightly-billing"' not in text
    assert sample_value(text, "lookout_heartbeat_status", heartbeat="reports", status="new") == 1
    assert (await client.get("/ping/orders-consumer")).status == 404
    assert (await client.get("/ping/reports")).status == 200

    path.write_text(TWO)
    assert (await client.post("/-/reload")).status == 200
    restored = sample_value(
        await scrape(client),
        "lookout_heartbeat_pings_total",
        heartbeat="orders-consumer",
        signal="success",
    )
    assert restored == 1, "a heartbeat added back keeps its counts"


async def test_no_store_is_created_without_heartbeats(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets: []\n")
    storage = tmp_path / "data"
    client = await start(aiohttp_client, path, storage)
    assert (await client.get("/-/ready")).status == 200
    assert sample_value(await scrape(client), "lookout_heartbeats") == 0
    assert not storage.exists()
    path.write_text("heartbeats:\n  - {name: reports, period: 1h, grace: 5m}\n")
    assert (await client.post("/-/reload")).status == 200
    assert (storage / DB_FILE).is_file()
    assert (await client.get("/ping/reports")).status == 200


async def test_a_reload_that_needs_an_unusable_store_keeps_the_old_config(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets: []\n")
    storage = tmp_path / "data"
    storage.write_text("a file where the store directory should be")
    client = await start(aiohttp_client, path, storage)
    path.write_text("heartbeats:\n  - {name: reports, period: 1h, grace: 5m}\n")
    response = await client.post("/-/reload")
    assert response.status == 500
    assert "cannot create storage directory" in await response.text()
    text = await scrape(client)
    assert sample_value(text, "lookout_config_last_reload_successful") == 0
    assert sample_value(text, "lookout_heartbeats") == 0
    assert (await client.get("/ping/reports")).status == 404


async def test_promtool_finds_no_problem_in_the_heartbeat_exposition(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(TWO)
    client = await start(aiohttp_client, path, tmp_path / "data")
    await client.get("/ping/nightly-billing/start")
    await client.get("/ping/nightly-billing/1?duration=3")
    await client.get("/ping/orders-consumer?instance=w1")
    exposition = await scrape(client)
    assert "lookout_heartbeat_last_duration_seconds" in series_names(exposition)
    assert_promtool_accepts(exposition)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        pytest.param(
            lambda storage: storage.write_text("a file, not a directory"),
            "cannot create storage directory",
            id="path-is-a-file",
        ),
        pytest.param(
            lambda storage: (storage.mkdir(), (storage / DB_FILE).write_bytes(b"garbage" * 999)),
            "file is not a database",
            id="corrupt-database",
        ),
    ],
)
async def test_an_unusable_store_stops_the_start_with_one_clear_line(
    tmp_path: Path, prepare: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("heartbeats:\n  - {name: reports, period: 1h, grace: 5m}\n")
    storage = tmp_path / "data"
    prepare(storage)
    code, out, err = await exporter_command(
        "run",
        "--config",
        str(path),
        "--storage.path",
        str(storage),
        "--web.listen-address",
        f"127.0.0.1:{free_port()}",
    )
    assert code == 1
    lines = (out + err).splitlines()
    assert len(lines) == 1, lines
    assert 'msg="cannot start"' in lines[0]
    assert message in lines[0]
