"""Reloads through ``POST /-/reload``: atomic, reported as text or JSON, guarded by the admin
token, coalesced, refusing to empty a running config, and the whole bad-config corpus tried
against a running exporter whose old config keeps probing."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import psutil
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.collectors import probes as probes_module
from exporter.host.reading import HostReader
from exporter.host.settings import HostSettings
from exporter.host.snapshot import HostSnapshot
from exporter.runtime import RUNTIME, Options
from exporter.stats import ProbeStats
from tests.metrics import sample_value
from tests.test_config_corpus import CORPUS, ENVIRON, TESTDATA, expected
from tests.test_probe_collector import counted_renders

Client = TestClient[web.Request, web.Application]


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/healthz"


def targets_yaml(url: str, *names: str, extra: str = "") -> str:
    lines = ["defaults: {interval: 100ms, timeout: 100ms}", extra, "targets:"]
    lines += [f"  - {{name: {n}, kind: http, url: '{url}'}}" for n in names]
    return "\n".join(lines) + "\n"


async def start(aiohttp_client: AiohttpClient, path: Path) -> Client:
    app = create_app(
        Options(config_path=str(path), storage_path=path.parent / "data"), config.load(str(path))
    )
    return await aiohttp_client(app)


async def reload_flag(client: Client) -> float | None:
    text = await (await client.get("/metrics")).text()
    return sample_value(text, "lookout_config_last_reload_successful")


async def probes_of(client: Client, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    return sample_value(text, "lookout_probe_duration_seconds_count", target=name) or 0


async def wait_for_probes(client: Client, name: str, minimum: float) -> None:
    for _ in range(100):
        if await probes_of(client, name) >= minimum:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was never probed {minimum} times")


async def test_a_failed_reload_answers_its_problems_as_json_when_asked(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    path.write_text("targets:\n  - {name: api, kind: http, url: 'ftp://nope'}\n")
    response = await client.post("/-/reload", headers={"Accept": "application/json"})
    assert response.status == 500
    assert await response.json() == {
        "status": "error",
        "problems": [
            {
                "file": str(path),
                "line": 2,
                "key": "targets[0].url",
                "message": "'ftp://nope' is not an http:// or https:// URL",
                "text": f"{path}:2: targets[0].url: 'ftp://nope' is not an http:// or https:// URL",
            }
        ],
    }
    path.write_text(targets_yaml(upstream, "api"))
    response = await client.post("/-/reload?format=json")
    assert (response.status, await response.json()) == (200, {"status": "success", "problems": []})


async def test_a_status_pattern_the_schema_accepts_but_units_refuse_fails_the_reload_cleanly(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    """The ValueError of issue 24: a bare 500 with the flag still 1 before."""
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    path.write_text(
        targets_yaml(upstream, "api", "new").replace(
            "url: '" + upstream + "'}\n",
            "url: '" + upstream + "', expect: {status: ['299-200']}}\n",
        )
    )
    response = await client.post("/-/reload")
    assert response.status == 500
    text = await response.text()
    assert "targets[0].expect.status[0]: status range '299-200' ends below its start" in text
    assert await reload_flag(client) == 0
    assert [t.name for t in client.app[RUNTIME].config.targets] == ["api"]


async def test_an_empty_config_does_not_replace_a_running_one_unless_allowed(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    path.write_text("targets: []\n")
    response = await client.post("/-/reload")
    assert response.status == 500
    assert await response.text() == (
        "config reload failed, old config kept:\n"
        f"{path}: the new config has no targets and no heartbeats, the running one has 1 "
        "targets and 0 heartbeats: not replacing it (POST /-/reload?allow_empty=true to apply "
        "it anyway)\n"
    )
    assert await reload_flag(client) == 0
    assert len(client.app[RUNTIME].config.targets) == 1
    response = await client.post("/-/reload?allow_empty=true")
    assert response.status == 200
    assert client.app[RUNTIME].config.targets == ()
    assert await reload_flag(client) == 1


async def test_the_admin_token_guards_reloads_and_a_reload_can_change_it(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    token = tmp_path / "admin-token"
    token.write_text("s3cret-token\n")
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api", extra=f"web: {{admin_token_file: {token}}}"))
    client = await start(aiohttp_client, path)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        response = await client.post("/-/reload", headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="lookout"'
    assert await reload_flag(client) == 1, "a refused request is no reload"
    token.write_text("n3w-token\n")
    response = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 200
    response = await client.post("/-/reload", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status == 401
    response = await client.post("/-/reload", headers={"Authorization": "Bearer n3w-token"})
    assert response.status == 200


def test_an_empty_admin_token_file_is_a_config_problem(tmp_path: Path) -> None:
    token = tmp_path / "admin-token"
    token.write_text("\n")
    text = f"web:\n  admin_token_file: {token}\ntargets: []\n"
    with pytest.raises(config.ConfigError) as caught:
        config.load_text(text, config.Source("t.yml", tmp_path), {})
    assert [str(p) for p in caught.value.problems] == [
        "t.yml:2: web.admin_token_file: the admin token file is empty"
    ]


async def test_concurrent_reloads_share_one_load_after_the_running_one(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    path.write_text(targets_yaml(upstream, "api", "second"))
    with caplog.at_level(logging.INFO, logger="exporter.runtime"):
        answers = await asyncio.gather(*(client.post("/-/reload") for _ in range(6)))
    assert [a.status for a in answers] == [200] * 6
    reloaded = [r for r in caplog.records if r.getMessage() == "config reloaded"]
    assert 1 <= len(reloaded) <= 2
    assert [t.name for t in client.app[RUNTIME].config.targets] == ["api", "second"]


async def test_a_reload_renders_its_new_targets_before_they_go_live(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first scrape after a reload that renames every target joins the text rendered
    during the reload instead of rendering each new target while it answers."""
    rendered: list[tuple[str, bool]] = []
    real = probes_module.render_target

    def counting(stats: ProbeStats, location: str | None) -> tuple[bytes, ...]:
        live = stats.target.name in client.app[RUNTIME].scheduler.stats
        rendered.append((stats.target.name, live))
        return real(stats, location)

    monkeypatch.setattr(probes_module, "render_target", counting)
    path = tmp_path / "lookout.yml"
    slow = "defaults: {interval: 1h, timeout: 5s}\ntargets:\n"
    path.write_text(
        slow + "".join(f"  - {{name: a-{n}, kind: http, url: '{upstream}'}}\n" for n in range(3))
    )
    client = await start(aiohttp_client, path)
    await client.get("/metrics")
    path.write_text(
        slow + "".join(f"  - {{name: b-{n}, kind: http, url: '{upstream}'}}\n" for n in range(3))
    )
    rendered.clear()
    assert (await client.post("/-/reload")).status == 200
    text = await (await client.get("/metrics")).text()
    assert sorted(rendered) == [("b-0", False), ("b-1", False), ("b-2", False)]
    assert sample_value(text, "lookout_probe_duration_seconds_count", target="b-1") == 0


async def test_a_reload_that_changes_targets_in_place_renders_them_before_the_next_scrape(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targets whose config changes but whose series stay (here their SLO) are rendered
    again by the reload, after the swap: the next scrape shows the new SLO without rendering
    any of them while it answers."""
    rendered = counted_renders(monkeypatch)
    path = tmp_path / "lookout.yml"
    path.write_text(named_targets(upstream, "a", 3))
    client = await start(aiohttp_client, path)
    await client.get("/metrics")
    path.write_text(named_targets(upstream, "a", 3).replace("'}", "', slo: {availability: 99.5}}"))
    answer = await client.post("/-/reload")
    assert answer.status == 200, await answer.text()
    rendered.clear()
    text = await (await client.get("/metrics")).text()
    assert rendered == []
    for name in ("a-0", "a-1", "a-2"):
        assert sample_value(text, "lookout_probe_slo_objective_ratio", target=name) == 0.995


def named_targets(url: str, prefix: str, count: int) -> str:
    lines = [f"  - {{name: {prefix}-{n}, kind: http, url: '{url}'}}\n" for n in range(count)]
    return "defaults: {interval: 1h, timeout: 5s}\ntargets:\n" + "".join(lines)


async def renamed_after_a_reload(
    aiohttp_client: AiohttpClient, upstream: str, path: Path
) -> Client:
    """An exporter of ``a-0`` to ``a-2`` whose loader process is up (one reload done), its
    config file now naming ``b-0`` to ``b-2``."""
    await asyncio.to_thread(path.write_text, named_targets(upstream, "a", 3))
    client = await start(aiohttp_client, path)
    assert (await client.post("/-/reload")).status == 200
    await asyncio.to_thread(path.write_text, named_targets(upstream, "b", 3))
    return client


async def a_reload_held_back(client: Client) -> asyncio.Future[ClientResponse]:
    """A reload, asserted to have changed nothing a second after it began."""
    reload = asyncio.ensure_future(client.post("/-/reload"))
    await asyncio.sleep(1.0)  # a load of three targets takes milliseconds
    assert not reload.done()
    assert sorted(client.app[RUNTIME].scheduler.stats) == ["a-0", "a-1", "a-2"]
    return reload


async def test_a_reload_steps_aside_while_a_scrape_is_answered(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    """A scrape pauses every few milliseconds of its work; the steps of a reload wait until
    it is answered instead of taking those turns (which made a scrape twice as slow)."""
    client = await renamed_after_a_reload(aiohttp_client, upstream, tmp_path / "lookout.yml")
    runtime = client.app[RUNTIME]
    pieces = runtime.render_pieces()
    await anext(pieces)  # a scrape under way
    reload = await a_reload_held_back(client)
    async for _piece in pieces:
        pass
    assert (await asyncio.wait_for(reload, 30)).status == 200
    assert sorted(runtime.scheduler.stats) == ["b-0", "b-1", "b-2"]


async def test_a_reload_steps_aside_while_a_scrape_reads_the_host(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape reads the host in a worker thread before it renders; the steps of a reload
    taking the event loop meanwhile kept that thread waiting for the interpreter lock."""
    client = await renamed_after_a_reload(aiohttp_client, upstream, tmp_path / "lookout.yml")
    runtime = client.app[RUNTIME]
    reading, release = threading.Event(), threading.Event()
    read = HostReader.read

    def held_read(reader: HostReader, settings: HostSettings) -> HostSnapshot:
        reading.set()
        release.wait(10)
        return read(reader, settings)

    monkeypatch.setattr(HostReader, "read", held_read)
    pieces = runtime.render_pieces()
    first = asyncio.ensure_future(anext(pieces))  # a scrape reading the host
    assert await asyncio.to_thread(reading.wait, 10)
    reload = await a_reload_held_back(client)
    release.set()
    assert b"lookout_host_" in await first + b"".join([piece async for piece in pieces])
    assert (await asyncio.wait_for(reload, 30)).status == 200
    assert sorted(runtime.scheduler.stats) == ["b-0", "b-1", "b-2"]


async def test_scrapes_back_to_back_slow_a_reload_down_but_do_not_stop_it(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(named_targets(upstream, "a", 500))
    client = await start(aiohttp_client, path)
    runtime = client.app[RUNTIME]
    path.write_text(named_targets(upstream, "b", 500))
    scrapes = 0

    async def scrape_forever() -> None:
        nonlocal scrapes
        while True:
            async for _piece in runtime.render_pieces():
                await asyncio.sleep(0)
            scrapes += 1

    # Two scrapers, so that one is always under way while the other starts again.
    scrapers = [asyncio.ensure_future(scrape_forever()) for _ in range(2)]
    try:
        assert (await asyncio.wait_for(client.post("/-/reload"), 60)).status == 200
    finally:
        for scraper in scrapers:
            scraper.cancel()
    assert scrapes > 0
    assert len(runtime.scheduler.stats) == 500
    assert "b-499" in runtime.scheduler.stats


async def test_a_failed_reload_never_shows_an_expanded_secret(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOKOUT_TEST_PASSWORD", "hunter-two-secret")
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    path.write_text(
        "targets:\n  - {name: api, kind: http, url: 'ftp://u:${LOOKOUT_TEST_PASSWORD}@h/'}\n"
    )
    response = await client.post("/-/reload")
    answer = await response.text()
    assert response.status == 500
    assert "${LOOKOUT_TEST_PASSWORD}" in answer
    for page in ("/", "/api/v1/exporter"):
        shown = await (await client.get(page)).text()
        assert "LOOKOUT_TEST_PASSWORD" in shown
        assert "hunter-two-secret" not in shown
    assert "hunter-two-secret" not in answer


async def test_every_corpus_file_fails_a_live_reload_and_the_old_config_keeps_probing(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    good = tmp_path / "good.yml"
    good.write_text(targets_yaml(upstream, "api"))
    path = tmp_path / "lookout.yml"
    path.symlink_to(good)
    client = await start(aiohttp_client, path)
    wrong = {}
    for name in sorted(CORPUS):
        path.unlink()
        path.symlink_to(TESTDATA / name)
        response = await client.post("/-/reload")
        lines = (await response.text()).splitlines()
        want = [line.replace(str(TESTDATA / name), str(path), 1) for line in expected(name)]
        if response.status != 500 or lines[1:] != want or await reload_flag(client) != 0:
            wrong[name] = (response.status, lines)
    assert wrong == {}
    assert [t.name for t in client.app[RUNTIME].config.targets] == ["api"]
    count = await probes_of(client, "api")
    await wait_for_probes(client, "api", count + 2)


def loader_workers() -> list[psutil.Process]:
    """This process's config loader workers (multiprocessing's spawned children)."""
    return [p for p in psutil.Process().children() if any("spawn_main" in a for a in p.cmdline())]


async def test_a_killed_loader_process_is_replaced_by_the_next_reload(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(targets_yaml(upstream, "api"))
    client = await start(aiohttp_client, path)
    before = set(loader_workers())
    assert (await client.post("/-/reload")).status == 200
    (worker,) = set(loader_workers()) - before
    worker.kill()
    worker.wait(10)
    path.write_text(targets_yaml(upstream, "api", "second"))
    response = await client.post("/-/reload")
    assert response.status == 200, await response.text()
    assert [t.name for t in client.app[RUNTIME].config.targets] == ["api", "second"]
    assert len(set(loader_workers()) - before) == 1
