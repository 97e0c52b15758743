"""The run-time maintenance API over real loopback HTTP: windows created with the admin token are
kept in the heartbeat store (a real SQLite file, or the suite's real PostgreSQL) and survive a
restart, silence what they cover in /metrics and on the status page, end early on DELETE, and
every bad request gets a problem+json answer naming the field and why."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exporter import config
from exporter.app import create_app
from exporter.heartbeats.sqlite_store import DB_FILE
from exporter.runtime import Options
from tests.metrics import sample_value
from tests.postgres import PostgresServer
from tests.test_api import OPENAPI, schema_validator

TOKEN = "maintenance-admin-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = schema_validator("Problem")
WINDOW = schema_validator("Maintenance")
LISTING = schema_validator("MaintenanceList")

Client = TestClient[Any, Any]


def write_config(
    directory: Path,
    *,
    token: bool = True,
    heartbeats: bool = True,
    storage: str | None = None,
    windows: str = "",
) -> Path:
    """Two targets (probed hourly: these tests need their names, not their probes), two
    heartbeats unless ``heartbeats`` is false, the admin token file unless ``token`` is false."""
    (directory / "admin-token").write_text(TOKEN + "\n", encoding="utf-8")
    lines = [
        "defaults: {interval: 1h, timeout: 1s}",
        "targets:",
        "  - {name: orders-api, kind: tcp, address: '127.0.0.1:9', labels: {service: orders}}",
        "  - {name: billing-db, kind: tcp, address: '127.0.0.1:9', labels: {service: billing}}",
    ]
    if heartbeats:
        lines += [
            "heartbeats:",
            "  - {name: nightly-billing, period: 1d, grace: 1h, labels: {service: billing}}",
            "  - {name: orders-consumer, period: 1m, grace: 1m, labels: {service: orders}}",
        ]
    if token:
        lines.append("web: {admin_token_file: admin-token}")
    if storage is not None:
        lines.append(f"storage: {storage}")
    path = directory / "lookout.yml"
    path.write_text("\n".join(lines) + "\n" + windows, encoding="utf-8")
    return path


Start = Callable[[Path], Awaitable[Client]]


@pytest.fixture
async def start(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Start]:
    """Start the exporter on a loopback port with a config file; storage under tmp_path."""
    clients: list[Client] = []

    async def run(path: Path) -> Client:
        options = Options(config_path=str(path), storage_path=tmp_path / "data")
        client: Client = await aiohttp_client(create_app(options, config.load(str(path))))
        clients.append(client)
        return client

    yield run
    for client in clients:
        await client.close()


async def create(client: Client, body: Any, status: int = 201) -> dict[str, Any]:
    response = await client.post("/api/v1/maintenance", json=body, headers=AUTH)
    assert response.status == status, await response.text()
    answer: dict[str, Any] = await response.json(content_type=None)
    if status == 201:
        assert response.content_type == "application/json"
        assert response.headers["Location"] == f"/api/v1/maintenance/{answer['id']}"
        WINDOW.validate(answer)
    return answer


async def listed(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/maintenance")
    assert response.status == 200
    body = await response.json()
    LISTING.validate(body)
    windows: list[dict[str, Any]] = body["maintenance"]
    return windows


async def metrics(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


def active(samples: str, **labels: str) -> float:
    """The value of the lookout_maintenance_active series whose labels include ``labels``."""
    value = sample_value(samples, "lookout_maintenance_active", **labels)
    assert value is not None, f"no lookout_maintenance_active{labels}"
    return value


def assert_problem(status: int, body: dict[str, Any], field: str | None, fragment: str) -> None:
    PROBLEM.validate(body)
    assert body["status"] == status
    assert body.get("field") == field
    assert fragment in body["detail"], body["detail"]
    assert body["error"] == body["detail"]


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest) -> str | None:
    """Where the windows are kept: SQLite under --storage.path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


async def test_a_window_created_over_the_api_survives_a_restart(
    start: Start, tmp_path: Path, storage: str | None
) -> None:
    path = write_config(tmp_path, storage=storage)
    first = await start(path)
    window = await create(
        first,
        {
            "targets": ["orders-*"],
            "heartbeats": ["orders-consumer"],
            "duration": "1h",
            "reason": "orders database upgrade",
            "author": "alice",
        },
    )
    assert window["source"] == "api"
    assert window["state"] == "active"
    assert window["covers"] == {"targets": ["orders-api"], "heartbeats": ["orders-consumer"]}
    assert window["end"] - window["start"] == pytest.approx(3600)
    samples = await metrics(first)
    assert sample_value(samples, "lookout_maintenance_window_active", window=window["id"]) == 1
    assert active(samples, target="orders-api") == 1
    assert active(samples, heartbeat="orders-consumer") == 1
    await first.close()

    second = await start(path)
    [kept] = await listed(second)
    assert kept == window | {"state": "active"}
    samples = await metrics(second)
    assert active(samples, target="orders-api") == 1
    assert active(samples, heartbeat="orders-consumer") == 1

    response = await second.delete(f"/api/v1/maintenance/{window['id']}", headers=AUTH)
    assert response.status == 200
    ended = await response.json()
    WINDOW.validate(ended)
    assert ended["state"] == "ended"
    assert ended["ended_at"] == pytest.approx(time.time(), abs=5)
    assert active(await metrics(second), target="orders-api") == 0
    await second.close()

    third = await start(path)
    [after] = await listed(third)
    assert after["state"] == "ended"
    assert after["ended_at"] == ended["ended_at"]
    assert active(await metrics(third), target="orders-api") == 0


async def test_the_sqlite_file_holds_the_window_in_its_own_table(
    start: Start, tmp_path: Path
) -> None:
    client = await start(write_config(tmp_path))
    window = await create(client, {"labels": {"service": "billing"}, "duration": "30m"})
    await client.close()
    with sqlite3.connect(tmp_path / "data" / DB_FILE) as db:
        [(version,)] = db.execute("PRAGMA user_version").fetchall()
        rows = db.execute("SELECT id, window FROM maintenance").fetchall()
    assert version == 3
    assert [(rid, json.loads(text)["labels"]) for rid, text in rows] == [
        (window["id"], {"service": "billing"})
    ]


async def test_without_heartbeats_the_store_is_opened_for_the_maintenance_api(
    start: Start, tmp_path: Path
) -> None:
    path = write_config(tmp_path, heartbeats=False)
    client = await start(path)
    assert (tmp_path / "data" / DB_FILE).exists()
    window = await create(client, {"duration": "2h"})
    assert window["covers"] == {"targets": ["orders-api", "billing-db"], "heartbeats": []}
    assert (await client.get("/-/ready")).status == 200
    await client.close()
    again = await start(path)
    assert [w["id"] for w in await listed(again)] == [window["id"]]
    samples = await metrics(again)
    assert active(samples, target="orders-api") == active(samples, target="billing-db") == 1


async def test_without_an_admin_token_the_api_is_off_and_nothing_is_written(
    start: Start, tmp_path: Path
) -> None:
    windows = "maintenance:\n  - {name: sundays, cron: '0 3 * * 0', duration: 2h}\n"
    client = await start(write_config(tmp_path, token=False, heartbeats=False, windows=windows))
    response = await client.post("/api/v1/maintenance", json={"duration": "1h"}, headers=AUTH)
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    assert_problem(403, await response.json(content_type=None), None, "web.admin_token_file")
    assert not (tmp_path / "data").exists()
    [window] = await listed(client)
    assert window["id"] == "sundays"
    assert window["source"] == "config"
    assert window["state"] in ("waiting", "active")
    assert window["schedule"] == "cron '0 3 * * 0' in UTC for 2h"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-header"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, 401, id="other-scheme"),
        pytest.param({"Authorization": "Bearer "}, 401, id="empty-token"),
        pytest.param({"Authorization": "Bearer maintenance-admin-7f3b"}, 403, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, 403, id="longer-token"),
    ],
)
async def test_creating_or_ending_without_the_right_token_is_refused(
    start: Start, tmp_path: Path, headers: dict[str, str], status: int
) -> None:
    client = await start(write_config(tmp_path))
    window = await create(client, {"duration": "1h"})
    answers = [
        await client.post(f"/api/v1/maintenance?token={TOKEN}", json={}, headers=headers),
        await client.delete(f"/api/v1/maintenance/{window['id']}", headers=headers),
    ]
    for response in answers:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        expected = "needs the admin token" if status == 401 else "the admin token is wrong"
        assert_problem(status, body, None, expected)
        if status == 401:
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="lookout"'
    [kept] = await listed(client)
    assert kept["state"] == "active"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        pytest.param(b'{"duration": "1h"', None, "not JSON: Expecting ',' delimiter", id="cut"),
        pytest.param(b"\xff\xfe", None, "not UTF-8", id="binary"),
        pytest.param(b"[1, 2]", None, "must be a JSON object", id="array"),
        pytest.param({}, "end", "needs an end or a duration", id="no-end"),
        pytest.param({"duration": "1h", "colour": "red"}, "colour", "unknown field", id="field"),
        pytest.param({"end": "tomorrow"}, "end", "invalid time 'tomorrow'", id="bad-time"),
        pytest.param({"end": "2036-12-05T22:00:00"}, "end", "has no offset", id="no-offset"),
        pytest.param({"start": 1764800000, "duration": "1h"}, "start", "ISO 8601", id="number"),
        pytest.param(
            {"start": "2036-01-02T00:00:00Z", "end": "2036-01-01T00:00:00Z"},
            "end",
            "not after the start",
            id="backwards",
        ),
        pytest.param(
            {"start": "2001-01-01T00:00:00Z", "end": "2001-01-01T02:00:00Z"},
            "end",
            "in the past",
            id="past",
        ),
        pytest.param({"duration": "soon"}, "duration", "invalid duration 'soon'", id="duration"),
        pytest.param({"duration": "0s"}, "duration", "greater than 0", id="zero"),
        pytest.param({"duration": 3600}, "duration", "such as", id="seconds"),
        pytest.param({"duration": "40d"}, "end", "at most 31d", id="too-long"),
        pytest.param(
            {"duration": "1h", "end": "2036-01-01T00:00:00Z"}, "duration", "not both", id="both"
        ),
        pytest.param(
            {"duration": "1h", "targets": ["orders-api", "payments-api"]},
            "targets[1]",
            "no target named 'payments-api' in the config",
            id="unknown-target",
        ),
        pytest.param(
            {"duration": "1h", "targets": ["pay*"]},
            "targets[0]",
            "'pay*' matches no target",
            id="glob",
        ),
        pytest.param(
            {"duration": "1h", "heartbeats": ["weekly-report"]},
            "heartbeats[0]",
            "no heartbeat named 'weekly-report'",
            id="unknown-heartbeat",
        ),
        pytest.param(
            {"duration": "1h", "targets": "orders-api"}, "targets", "non-empty list", id="text"
        ),
        pytest.param({"duration": "1h", "targets": [""]}, "targets[0]", "non-empty", id="empty"),
        pytest.param(
            {"duration": "1h", "labels": {"service": "payments"}},
            "labels",
            "no target or heartbeat in the config has these labels",
            id="labels",
        ),
        pytest.param(
            {"duration": "1h", "labels": {"service": 3}}, "labels.service", "string", id="label"
        ),
        pytest.param({"duration": "1h", "reason": ["x"]}, "reason", "string", id="reason"),
    ],
)
async def test_a_bad_request_is_a_400_naming_the_field_and_nothing_is_kept(
    start: Start, tmp_path: Path, body: Any, field: str | None, fragment: str
) -> None:
    client = await start(write_config(tmp_path))
    if isinstance(body, bytes):
        response = await client.post(
            "/api/v1/maintenance",
            data=body,
            headers=AUTH | {"Content-Type": "application/json"},
        )
    else:
        response = await client.post("/api/v1/maintenance", json=body, headers=AUTH)
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert_problem(400, await response.json(content_type=None), field, fragment)
    assert await listed(client) == []


async def test_ending_an_unknown_or_a_config_window_is_refused(
    start: Start, tmp_path: Path
) -> None:
    windows = "maintenance:\n  - {name: patching, cron: '0 3 * * 0', duration: 2h}\n"
    client = await start(write_config(tmp_path, windows=windows))
    response = await client.delete("/api/v1/maintenance/m-00000000", headers=AUTH)
    assert response.status == 404
    assert_problem(404, await response.json(content_type=None), None, "'m-00000000'")
    response = await client.delete("/api/v1/maintenance/patching", headers=AUTH)
    assert response.status == 409
    assert_problem(409, await response.json(content_type=None), None, "comes from the config")
    response = await client.get("/api/v1/maintenance/patching")
    assert response.status == 200
    WINDOW.validate(await response.json())


async def test_a_scheduled_window_is_not_active_until_it_starts_and_ending_it_cancels_it(
    start: Start, tmp_path: Path
) -> None:
    client = await start(write_config(tmp_path))
    window = await create(
        client,
        {"start": "2036-06-01T22:00:00+02:00", "duration": "4h", "heartbeats": ["nightly-*"]},
    )
    assert window["state"] == "scheduled"
    assert window["start"] == 2095963200.0
    assert active(await metrics(client), heartbeat="nightly-billing") == 0
    response = await client.delete(f"/api/v1/maintenance/{window['id']}", headers=AUTH)
    ended = await response.json()
    assert ended["state"] == "ended"
    again = await client.delete(f"/api/v1/maintenance/{window['id']}", headers=AUTH)
    assert again.status == 200
    assert await again.json() == ended


async def test_the_status_page_shows_the_banner_and_what_is_in_maintenance(
    start: Start, tmp_path: Path
) -> None:
    client = await start(write_config(tmp_path))
    page = await (await client.get("/")).text()
    assert 'id="maintenance"' not in page
    window = await create(
        client,
        {"labels": {"service": "orders"}, "duration": "1h", "reason": "<b>upgrade</b>"},
    )
    page = await (await client.get("/")).text()
    assert 'id="maintenance"' in page
    assert "1 window open" in page
    assert "&lt;b&gt;upgrade&lt;/b&gt;" in page
    orders = next(r for r in page.split("<tr ") if "targets/orders-api" in r)
    billing = next(r for r in page.split("<tr ") if "targets/billing-db" in r)
    assert "badge maintenance" in orders
    assert window["id"] in orders
    assert "badge maintenance" not in billing
    consumer = next(r for r in page.split("<tr ") if "heartbeats/orders-consumer" in r)
    assert window["id"] in consumer
    detail = await (await client.get("/targets/orders-api")).text()
    assert "badge maintenance" in detail
    targets = await (await client.get("/api/v1/targets")).json()
    assert {t["name"]: t["maintenance"] for t in targets["targets"]} == {
        "orders-api": [window["id"]],
        "billing-db": [],
    }
    heartbeats = await (await client.get("/api/v1/heartbeats")).json()
    assert {h["name"]: h["maintenance"] for h in heartbeats["heartbeats"]} == {
        "orders-consumer": [window["id"]],
        "nightly-billing": [],
    }


def test_the_maintenance_paths_are_documented_with_their_errors() -> None:
    paths = OPENAPI["paths"]
    assert set(paths["/api/v1/maintenance"]) == {"get", "post"}
    assert set(paths["/api/v1/maintenance/{id}"]) >= {"get", "delete"}
    for status in ("400", "401", "403", "503"):
        assert status in paths["/api/v1/maintenance"]["post"]["responses"]


async def test_a_reload_that_sets_the_token_file_opens_the_store_and_a_new_token_replaces_it(
    start: Start, tmp_path: Path
) -> None:
    path = write_config(tmp_path, token=False, heartbeats=False)
    client = await start(path)
    assert not (tmp_path / "data").exists()
    write_config(tmp_path, heartbeats=False)
    assert (await client.post("/-/reload")).status == 200
    assert (tmp_path / "data" / DB_FILE).exists()
    window = await create(client, {"targets": ["billing-db"], "duration": "10m"})
    (tmp_path / "admin-token").write_text("rotated-token\n", encoding="utf-8")
    assert (await client.post("/-/reload")).status == 401  # /-/reload needs the running token
    assert (await client.post("/-/reload", headers=AUTH)).status == 200
    response = await client.delete(f"/api/v1/maintenance/{window['id']}", headers=AUTH)
    assert response.status == 403
    rotated = {"Authorization": "Bearer rotated-token"}
    response = await client.delete(f"/api/v1/maintenance/{window['id']}", headers=rotated)
    assert response.status == 200
    (tmp_path / "admin-token").write_text("\n", encoding="utf-8")
    response = await client.post("/-/reload", headers=rotated)
    assert response.status == 500
    assert "web.admin_token_file: the admin token file is empty" in await response.text()
