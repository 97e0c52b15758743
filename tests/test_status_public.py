"""The public status page (``/status``, ``/status.json``, ``/status/badge/GROUP.svg``): off by
default, only the chosen groups and titles, none of the internals of a hostile config, and
uptime bars that match the history recorded under a controlled clock."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter import __version__, config
from exporter.app import create_app
from exporter.history import DOWN
from exporter.runtime import RUNTIME, Options
from tests.clock import FakeClock
from tests.status_support import HOSTILE, service_app, wait_probed, write_config

BUCKET = 900.0
PUBLIC = f"""
heartbeats:
  - {{name: nightly-export, period: 1h, grace: 1h, labels: {{owner: 'ops {HOSTILE}'}}}}
status_page:
  refresh: 30s
  public:
    enabled: true
    title: 'Example & Co <shop>'
    groups:
      - name: shop
        title: 'Shop <b>now</b>'
        targets: [{{name: a-healthy, title: Storefront}}, {{name: z-broken, title: Checkout}}]
        heartbeats: [{{name: nightly-export, title: Nightly export}}]
      - name: api
        targets: [{{name: m-hostile, title: Public API}}]
"""


async def public_client(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, extra: str, clock: FakeClock
) -> tuple[TestClient[Any, Any], str, web.Application]:
    service = await aiohttp_server(service_app())
    base = str(service.make_url("")).rstrip("/")
    path = write_config(tmp_path, base)
    text = path.read_text(encoding="utf-8").replace("{team: web}", "{team: web-secret-team}")
    path.write_text(text + extra, encoding="utf-8")
    options = Options(config_path=str(path), storage_path=tmp_path / "data")
    app = create_app(options, config.load(str(path)), clock)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client, base, app


@pytest.fixture
async def public(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> tuple[TestClient[Any, Any], str, FakeClock, web.Application]:
    clock = FakeClock()
    client, base, app = await public_client(aiohttp_server, aiohttp_client, tmp_path, PUBLIC, clock)
    for _ in range(3):  # the fake clock moves, the scheduler's timer fires in real time
        clock.advance(0.3)
        await wait_probed(app, probes=1)
    response = await client.post("/ping/nightly-export", data=f"body {HOSTILE}")
    assert response.status == 200
    return client, base, clock, app


async def test_the_public_page_is_off_by_default(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    client, _, _ = await public_client(aiohttp_server, aiohttp_client, tmp_path, "", FakeClock())
    for path in ("/status", "/status.json", "/status/badge/shop.svg"):
        assert (await client.get(path)).status == 404, path


async def test_the_public_page_shows_none_of_the_internals(
    public: tuple[TestClient[Any, Any], str, FakeClock, web.Application],
) -> None:
    """No URL, address, label value, failure message, reason, config name behind a title, ping
    body, or anything about the exporter; titles are escaped."""
    client, base, _, _ = public
    api = await (await client.get("/api/v1/targets")).json()
    messages = [t["last_failure"]["message"] for t in api["targets"] if t["last_failure"]]
    assert len(messages) >= 2  # the broken and the hostile target failed (a slow machine: more)
    page = await client.get("/status")
    assert page.status == 200
    assert "script-src" not in page.headers["Content-Security-Policy"]
    html = await page.text()
    feed = await (await client.get("/status.json")).text()
    for text in (html, feed):
        for internal in (
            base,
            "127.0.0.1",
            "/hostile",
            "/broken",
            "web-secret-team",
            "team",
            "owner",
            "X-Evil",
            "<script",
            "pwned",
            "a-healthy",
            "z-broken",
            "m-hostile",
            "nightly-export",
            "lookout.yml",
            __version__,
            '"http"',
            ">http<",
            "kind",
            *messages,
        ):
            assert internal not in text, internal
    visible = re.sub(r"<[^>]*>", " ", html.split("</style>")[1])
    for reason in {t["last_failure"]["reason"] for t in api["targets"] if t["last_failure"]}:
        assert not re.search(rf"\b{reason}\b", visible), reason
        assert reason not in feed, reason
    assert "Storefront" in html
    assert "Checkout" in html
    assert "Shop &lt;b&gt;now&lt;/b&gt;" in html
    assert "Example &amp; Co &lt;shop&gt;" in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert 'href="../' not in html
    assert 'href="targets/' not in html


async def test_the_feed_and_the_badges_say_each_groups_state(
    public: tuple[TestClient[Any, Any], str, FakeClock, web.Application],
) -> None:
    client, _, _, _ = public
    feed = await (await client.get("/status.json")).json()
    shop, api = feed["groups"]
    assert (shop["name"], shop["title"], api["title"]) == ("shop", "Shop <b>now</b>", "api")
    states = {item["title"]: item["state"] for item in shop["items"]}
    assert states == {"Storefront": "up", "Checkout": "down", "Nightly export": "up"}
    assert shop["state"] == "degraded"  # only some of its members are down
    assert api["state"] == "down"
    assert feed["state"] == "down"
    assert 0 < shop["items"][1]["uptime_ratio"] + 1 < 1.01  # every probe of Checkout failed
    assert shop["items"][0]["uptime_ratio"] == 1.0
    assert len(shop["items"][0]["history"]) == 96
    badge = await client.get("/status/badge/shop.svg")
    assert badge.status == 200
    assert badge.content_type == "image/svg+xml"
    svg = await badge.text()
    assert svg.startswith("<svg")
    assert "Shop &lt;b&gt;now&lt;/b&gt;: degraded" in svg
    assert "#dfb317" in svg
    assert "#e05d44" in await (await client.get("/status/badge/api.svg")).text()
    assert (await client.get("/status/badge/nope.svg")).status == 404


async def test_the_uptime_bars_match_the_history_recorded(
    public: tuple[TestClient[Any, Any], str, FakeClock, web.Application],
) -> None:
    """A heartbeat pinged under a controlled clock: up, then a failure a bucket later, then up
    again, then a bucket with no ping while it is still within its period."""
    client, _, clock, _ = public
    assert clock.time() % BUCKET < 5  # the fixture's pings are in the bucket starting at 1.8e9
    clock.advance(BUCKET)
    assert (await client.post("/ping/nightly-export/fail", data="boom")).status == 200
    clock.advance(BUCKET)
    assert (await client.post("/ping/nightly-export")).status == 200
    clock.advance(BUCKET)
    feed = await (await client.get("/status.json")).json()
    history = feed["groups"][0]["items"][2]["history"]
    assert [b["state"] for b in history[-4:]] == ["up", "down", "up", "up"]
    assert [b["state"] for b in history[:-4]] == ["empty"] * 92
    assert history[-1]["start"] == clock.time() - clock.time() % BUCKET
    page = await (await client.get("/status")).text()
    section = page.split('id="group-shop"')[1].split("</section>")[0]
    nightly = section.split('<span class="name">Nightly export</span>')[1]
    cells = re.findall(r'<i class="(\w+)" title="([^"]*)"', nightly.split("</div>")[0])
    assert [state for state, _ in cells[-4:]] == ["up", "down", "up", "up"]
    assert len(cells) == 96
    assert cells[-3][1].endswith(": outage")
    internal = await (await client.get("/heartbeats/nightly-export")).text()
    inner = re.findall(r'<i class="(\w+)" title="([^"]*)"', internal)
    assert [state for state, _ in inner[-4:]] == ["up", "down", "up", "up"]
    assert "1 pings, 1 failed" in inner[-3][1]


async def test_a_targets_probes_land_in_its_history(
    public: tuple[TestClient[Any, Any], str, FakeClock, web.Application],
) -> None:
    _, _, clock, app = public
    stats = app[RUNTIME].scheduler.stats["z-broken"]
    bucket = stats.history.buckets(clock.time())[-1]
    assert (bucket.probes, bucket.failures) == (stats.probes, stats.probes)
    assert bucket.state == DOWN


MATRIX = """
targets:
  - name: orders-api
    kind: http
    url: "http://127.0.0.1:9/{{ version }}/orders"
    versions: {v1: {}, v2: {}}
  - {name: checkout, kind: http, url: "http://127.0.0.1:9/checkout"}
status_page:
  public:
    enabled: true
    groups:
      - name: shop
        targets: [{name: orders-api, title: Orders API}, checkout, orders-api@v2]
"""


async def test_a_group_names_a_versions_matrix_by_its_base_name(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(MATRIX, encoding="utf-8")
    loaded = config.load(str(path))
    (group,) = loaded.status_page.public.groups
    assert [(m.name, m.title) for m in group.targets] == [
        ("orders-api@v1", "Orders API v1"),
        ("orders-api@v2", "Orders API v2"),
        ("checkout", "checkout"),
        ("orders-api@v2", "orders-api@v2"),
    ]
    app = create_app(Options(config_path=str(path), storage_path=tmp_path / "data"), loaded)
    client = await aiohttp_client(app)
    feed = await (await client.get("/status.json")).json()
    shown = [item["title"] for item in feed["groups"][0]["items"]]
    assert shown[:2] == ["Orders API v1", "Orders API v2"]
    typo = MATRIX.replace("{name: orders-api, title", "{name: orders-ap, title")
    path.write_text(typo, encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"targets\[0\]: no target named 'orders-ap'"):
        config.load(str(path))
