"""The scheduler: spread first runs, the in-flight limit, errors that never escape, reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.clock import SystemClock
from exporter.config import Source, load_text
from exporter.probes.clients import SharedClients
from exporter.probes.context import ProbeContext
from exporter.reasons import Reason
from exporter.scheduler import Scheduler, Shard, _offset
from exporter.stats import ProbeStats
from exporter.targets import Target
from tests.clock import FakeClock


class Gate:
    """A loopback server that counts requests in progress."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.total = 0

    async def handle(self, _request: web.Request) -> web.Response:
        self.active += 1
        self.total += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.05)
        self.active -= 1
        return web.Response(text="ok")


@pytest.fixture
async def clients() -> AsyncIterator[SharedClients]:
    shared = SharedClients()
    yield shared
    await shared.close()


def targets(url: str, count: int, interval: str = "200ms") -> list[Target[Any]]:
    text = f"defaults: {{interval: {interval}, timeout: {interval}}}\ntargets:\n" + "".join(
        f"  - {{name: t{i}, kind: http, url: '{url}'}}\n" for i in range(count)
    )
    return list(load_text(text, Source("t", Path(".")), {}).targets)


def probed_by(
    prober: Callable[[Any, ProbeContext], Awaitable[None]], targets: list[Target[Any]]
) -> list[Target[Any]]:
    """The same targets, probed by ``prober`` instead of their kind's own."""
    return [replace(t, kind=replace(t.kind, probe=prober)) for t in targets]


def test_first_runs_spread_over_the_interval() -> None:
    offsets = sorted(_offset(f"target-{i}", 30.0) for i in range(1000))
    assert offsets[0] >= 0
    assert offsets[-1] < 30
    # Each 3 s tenth of the interval holds roughly a tenth of the targets.
    for start in range(0, 30, 3):
        share = sum(start <= o < start + 3 for o in offsets)
        assert 60 <= share <= 140, (start, share)
    assert _offset("target-1", 30.0) == _offset("target-1", 30.0)


def test_shards_partition_the_targets() -> None:
    names = [f"target-{i}" for i in range(300)]
    shards = [Shard.parse(f"{i}/3") for i in range(3)]
    owners = [[s for s in shards if s.owns(n)] for n in names]
    assert all(len(o) == 1 for o in owners)
    assert all(80 <= sum(s.owns(n) for n in names) <= 120 for s in shards)
    with pytest.raises(ValueError, match="invalid shard '3/3'"):
        Shard.parse("3/3")


async def test_probes_in_flight_never_exceed_the_limit(
    aiohttp_server: AiohttpServer, clients: SharedClients
) -> None:
    gate = Gate()
    app = web.Application()
    app.router.add_get("/", gate.handle)
    server = await aiohttp_server(app)
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=3)
    scheduler.reconcile(targets(f"http://127.0.0.1:{server.port}/", 20))
    await asyncio.sleep(0.6)
    await scheduler.close()
    assert gate.total >= 20
    assert gate.peak == 3
    assert scheduler.lag.total >= 20
    assert all(s.last is not None and s.last.success for s in scheduler.stats.values())


async def test_an_exception_in_a_prober_becomes_an_error_result(
    monkeypatch: pytest.MonkeyPatch, clients: SharedClients
) -> None:
    calls = 0

    async def broken(_spec: object, _ctx: ProbeContext) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("missing")

    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    scheduler.reconcile(probed_by(broken, targets("http://127.0.0.1:1/", 1, interval="50ms")))
    await asyncio.sleep(0.3)
    await scheduler.close()
    stats = scheduler.stats["t0"]
    assert calls >= 3, "the target kept being probed"
    assert stats.failures == {Reason.ERROR: stats.probes}
    assert stats.last is not None
    assert stats.last.message == "KeyError: 'missing'"


async def test_reconcile_leaves_unchanged_targets_running(clients: SharedClients) -> None:
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    first = targets("http://127.0.0.1:1/", 2, interval="10s")
    scheduler.reconcile(first)
    stats_before = dict(scheduler.stats)
    runs_before = dict(scheduler._runs)
    scheduler.reconcile(first[:1])
    assert scheduler.stats == {"t0": stats_before["t0"]}
    assert scheduler._runs == {"t0": runs_before["t0"]}
    assert not runs_before["t0"].stopped
    assert runs_before["t1"].stopped
    await scheduler.close()


async def test_waiting_targets_hold_no_task(clients: SharedClients) -> None:
    before = len(asyncio.all_tasks())
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    # Offsets spread the first runs over 1 h: none is due within the test.
    scheduler.reconcile(targets("http://127.0.0.1:1/", 500, interval="1h"))
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) == before
    assert sum(s.probes for s in scheduler.stats.values()) == 0
    await scheduler.close()


async def test_due_probes_beyond_the_limit_wait_without_a_task(clients: SharedClients) -> None:
    """A due probe gets its task when a slot frees; a target removed meanwhile is never probed."""
    release = asyncio.Event()
    probed: list[str] = []

    async def held(spec: Any, _ctx: ProbeContext) -> None:
        probed.append(spec.url)
        await release.wait()

    def probe_tasks() -> int:
        return sum(task.get_name().startswith("probe ") for task in asyncio.all_tasks())

    scheduler = Scheduler(clients, SystemClock(), max_in_flight=2)
    many = probed_by(held, targets("http://127.0.0.1:1/", 6, interval="300ms"))
    many = [
        replace(t, spec=replace(t.spec, url=f"http://127.0.0.1:1/{t.name}"), timeout=10.0)
        for t in many
    ]
    scheduler.reconcile(many)
    await asyncio.sleep(0.5)  # every first run is due by now
    assert probe_tasks() == 2
    assert len(probed) == 2
    waiting = [t for t in many if not any(url.endswith(f"/{t.name}") for url in probed)]
    scheduler.reconcile([t for t in many if t not in waiting[:2]])
    release.set()
    await asyncio.sleep(0.25)
    await scheduler.close()
    assert not any(url.endswith(f"/{t.name}") for t in waiting[:2] for url in probed)
    assert {url.rsplit("/", 1)[1] for url in probed} == {t.name for t in many} - {
        t.name for t in waiting[:2]
    }
    assert scheduler.in_flight == 0


async def test_a_removed_target_stops_its_probe_in_flight_and_is_not_probed_again(
    aiohttp_server: AiohttpServer, clients: SharedClients
) -> None:
    started = asyncio.Event()
    requests = 0

    async def slow(_request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        started.set()
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", slow)
    server = await aiohttp_server(app)
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    scheduler.reconcile(targets(f"http://127.0.0.1:{server.port}/", 1, interval="300ms"))
    await asyncio.wait_for(started.wait(), 2)
    task = scheduler._runs["t0"].task
    assert task is not None
    scheduler.reconcile([])
    await asyncio.sleep(0.8)
    assert task.cancelled()
    assert requests == 1
    assert scheduler.stats == {}
    assert scheduler.in_flight == 0
    await scheduler.close()


async def test_a_failure_handling_a_result_keeps_the_target_on_its_schedule(
    monkeypatch: pytest.MonkeyPatch, clients: SharedClients, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def passes(_spec: object, _ctx: ProbeContext) -> None:
        nonlocal calls
        calls += 1

    def broken(_stats: ProbeStats, _result: object) -> None:
        raise RuntimeError("bookkeeping bug")

    monkeypatch.setattr(ProbeStats, "record", broken)
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    scheduler.reconcile(probed_by(passes, targets("http://127.0.0.1:1/", 1, interval="50ms")))
    await asyncio.sleep(0.3)
    await scheduler.close()
    assert calls >= 3
    assert "handling a probe result failed" in caplog.text


async def test_a_plan_changes_nothing_until_it_is_applied(clients: SharedClients) -> None:
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    first = targets("http://127.0.0.1:1/", 3)
    scheduler.reconcile(first)
    kept = dict(scheduler.stats)
    second = targets("http://127.0.0.1:2/", 450)
    steps = scheduler.plan(second, pause_every=200)
    pauses = 0
    while True:
        try:
            next(steps)
            pauses += 1
        except StopIteration as done:
            plan = done.value
            break
    assert pauses == 2
    assert scheduler.stats == kept, "planning touched nothing"
    assert scheduler.targets_by_kind == {"http": 3}
    scheduler.apply(plan)
    assert sorted(scheduler.stats) == sorted(t.name for t in second)
    assert scheduler.targets_by_kind == {"http": 450}
    await scheduler.close()


async def test_a_target_far_behind_skips_its_missed_runs_and_keeps_its_slots(
    clients: SharedClients,
) -> None:
    probes: asyncio.Queue[None] = asyncio.Queue()

    async def passes(_spec: object, _ctx: ProbeContext) -> None:
        probes.put_nowait(None)

    clock = FakeClock()
    scheduler = Scheduler(clients, clock, max_in_flight=4)
    scheduler.reconcile(probed_by(passes, targets("http://127.0.0.1:1/", 1, interval="100ms")))
    first = scheduler._runs["t0"].scheduled
    clock.advance(0.1)
    await asyncio.wait_for(probes.get(), 5)
    clock.advance(60.03)  # 600 runs missed
    await asyncio.wait_for(probes.get(), 5)
    await asyncio.sleep(0.3)  # a run due at once would have started by now
    assert probes.empty()
    scheduled = scheduler._runs["t0"].scheduled
    assert clock.monotonic() < scheduled <= clock.monotonic() + 0.1
    assert round((scheduled - first) / 0.1, 6) == round((scheduled - first) / 0.1)
    assert scheduler.lag.total == 2
    await scheduler.close()
