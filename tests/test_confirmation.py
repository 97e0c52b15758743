"""Confirmation: every attempt is counted, the state the alerts read changes only after the
target's ``confirm`` number of consecutive attempts, and a failing target is probed faster
(``interval_when_failing``) until its state is settled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.clock import SystemClock
from exporter.collectors.probes import ProbeCollector
from exporter.config import Source, load_text
from exporter.probes.clients import SharedClients
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.scheduler import Scheduler
from exporter.stats import ProbeStats
from exporter.targets import Target
from tests.metrics import sample_value


async def eventually(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


def target(settings: str = "confirm: {failures: 2, successes: 1}") -> Target[Any]:
    text = (
        "targets:\n  - {name: api, kind: http, url: 'http://127.0.0.1:1/', "
        f"interval: 1m, {settings}}}\n"
    )
    return load_text(text, Source("t", Path(".")), {}).targets[0]


def attempt(passed: bool, at: float = 1.0) -> ProbeResult:
    reason = None if passed else Reason.REFUSED
    return ProbeResult("api", passed, 0.01, at, reason, "" if passed else "refused")


def exposition(stats: ProbeStats) -> str:
    return "".join(ProbeCollector(lambda: [stats], lambda: None).expose())


def test_a_single_failed_attempt_never_flips_the_state_with_failures_2() -> None:
    stats = ProbeStats(target())
    for passed in (True, False, True, False, True):
        stats.record(attempt(passed))
        assert stats.confirmed is True
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_success") == 1
    assert sample_value(text, "lookout_probe_attempt_success") == 1
    assert sample_value(text, "lookout_probe_failures_total", reason="refused") == 2
    assert sample_value(text, "lookout_probe_duration_seconds_count") == 5
    assert sample_value(text, "lookout_probe_confirmed_state_changes_total") == 0


def test_two_failed_attempts_in_a_row_confirm_the_outage_and_one_success_ends_it() -> None:
    stats = ProbeStats(target())
    stats.record(attempt(True))
    stats.record(attempt(False))
    assert stats.confirmed is True
    assert stats.confirming
    assert sample_value(exposition(stats), "lookout_probe_attempt_success") == 0
    stats.record(attempt(False))
    assert stats.confirmed is False
    assert not stats.confirming
    assert sample_value(exposition(stats), "lookout_probe_success") == 0
    stats.record(attempt(True))
    assert stats.confirmed is True
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_success") == 1
    assert sample_value(text, "lookout_probe_confirmed_state_changes_total") == 2


def test_the_state_is_unknown_until_first_confirmed() -> None:
    stats = ProbeStats(target("confirm: {failures: 3, successes: 2}"))
    stats.record(attempt(False))
    stats.record(attempt(False))
    assert stats.confirmed is None
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_success") is None
    assert sample_value(text, "lookout_probe_attempt_success") == 0
    stats.record(attempt(False))
    assert stats.confirmed is False
    # The first confirmation is not a change of state.
    assert sample_value(exposition(stats), "lookout_probe_confirmed_state_changes_total") == 0
    stats.record(attempt(True))
    assert stats.confirmed is False
    stats.record(attempt(True))
    assert stats.confirmed is True


def test_without_confirm_every_attempt_is_the_state_and_no_extra_series_show() -> None:
    stats = ProbeStats(target(""))
    stats.record(attempt(False))
    assert stats.confirmed is False
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_success") == 0
    assert "lookout_probe_attempt_success" not in text
    assert "lookout_probe_confirmed_state_changes_total" not in text


def test_confirm_comes_from_defaults_and_a_target_overrides_part_of_it() -> None:
    text = (
        "defaults: {confirm: {failures: 3, successes: 2}, interval_when_failing: 10s}\n"
        "targets:\n"
        "  - {name: a, kind: http, url: 'http://127.0.0.1:1/'}\n"
        "  - {name: b, kind: http, url: 'http://127.0.0.1:1/', confirm: {failures: 1},"
        " interval: 5s, timeout: 1s}\n"
    )
    a, b = load_text(text, Source("t", Path(".")), {}).targets
    assert (a.confirm.failures, a.confirm.successes, a.interval_when_failing) == (3, 2, 10.0)
    # A default faster interval longer than the target's own interval leaves it as it is.
    assert (b.confirm.failures, b.confirm.successes, b.interval_when_failing) == (1, 2, None)


async def test_a_real_outage_is_confirmed_within_interval_when_failing_times_failures(
    aiohttp_server: AiohttpServer,
) -> None:
    healthy = True
    arrivals: list[float] = []

    async def health(_request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        return web.Response(status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/", health)
    server = await aiohttp_server(app)
    text = (
        "targets:\n"
        f"  - {{name: api, kind: http, url: 'http://127.0.0.1:{server.port}/', interval: 2s,"
        " timeout: 100ms, interval_when_failing: 150ms, confirm: {failures: 3}}\n"
    )
    clients = SharedClients()
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=4)
    scheduler.reconcile(load_text(text, Source("t", Path(".")), {}).targets)
    stats = scheduler.stats["api"]
    try:
        await eventually(lambda: stats.confirmed is True)
        before = len(arrivals)
        await eventually(lambda: len(arrivals) > before)  # the next regular probe, within 2 s
        healthy = False
        await eventually(lambda: len(arrivals) > before + 1)
        outage_seen = arrivals[-1]
        await eventually(lambda: stats.confirmed is False)
        confirmed_after = time.monotonic() - outage_seen
        probes_to_confirm = len(arrivals) - before - 1  # the first after "before" passed
    finally:
        await scheduler.close()
        await clients.close()
    # Three failed attempts 150 ms apart: well under one regular interval (2 s); at the
    # regular interval it would have taken 4 s.
    assert probes_to_confirm == 3
    assert confirmed_after < 1.5, confirmed_after
    print(f"outage confirmed {confirmed_after:.2f} s after its first failed attempt")
