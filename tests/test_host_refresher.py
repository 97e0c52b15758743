"""HostRefresher: a scrape reads the host in a worker thread, with a cache and a deadline."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.host import HostCollector
from exporter.host.reading import HostReader
from exporter.host.refresher import HostRefresher
from exporter.host.settings import HostSettings, NameFilter
from exporter.host.snapshot import HostSnapshot
from tests.clock import FakeClock
from tests.test_host import FakePsutil, FakeStatvfs, parse, series, write_procfs


@pytest.fixture
def fake() -> FakePsutil:
    return FakePsutil()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def collector() -> HostCollector:
    """Shows what the refresher publishes, as in the runtime."""
    return HostCollector()


@pytest.fixture
def make(
    fake: FakePsutil, clock: FakeClock, collector: HostCollector, tmp_path: Path
) -> Callable[..., HostRefresher]:
    procfs = write_procfs(tmp_path / "proc")

    def make(**settings: Any) -> HostRefresher:
        reader = HostReader(psutil=fake, procfs=procfs, statvfs=FakeStatvfs())
        return HostRefresher(reader, HostSettings(**settings), collector.show, clock)

    return make


def text(collector: HostCollector) -> str:
    return "".join(collector.expose())


def devices(collector: HostCollector) -> set[str]:
    samples, _ = parse(text(collector))
    return series(samples, "lookout_host_network_receive_bytes_total", "device")


async def test_a_scrape_reads_the_host_in_the_worker_thread_not_on_the_loop(
    make: Callable[..., HostRefresher], collector: HostCollector, fake: FakePsutil
) -> None:
    threads: list[str] = []
    original = fake.getloadavg

    def recording() -> tuple[float, float, float]:
        threads.append(threading.current_thread().name)
        return original()

    fake.getloadavg = recording  # type: ignore[method-assign]
    refresher = make()
    async with refresher.running():
        assert text(collector) == ""
        await refresher.fresh()
        samples, _ = parse(text(collector))
    assert samples[("lookout_host_load1", frozenset())] == 0.5
    assert len(threads) == 1
    assert threads[0].startswith("lookout-host")


async def test_numbers_younger_than_max_age_are_served_without_reading_the_host(
    make: Callable[..., HostRefresher], fake: FakePsutil, clock: FakeClock
) -> None:
    refresher = make(max_age=10.0)
    async with refresher.running():
        await refresher.fresh()
        clock.advance(9.9)
        await refresher.fresh()
        await refresher.fresh()
        assert fake.calls["cpu_times"] == 1
        clock.advance(0.1)
        await refresher.fresh()
        assert fake.calls["cpu_times"] == 2


async def test_concurrent_scrapes_share_one_read(
    make: Callable[..., HostRefresher], collector: HostCollector, fake: FakePsutil, clock: FakeClock
) -> None:
    refresher = make(max_age=0.0)
    gate = threading.Event()
    fake.boot_time_gate = gate
    async with refresher.running():
        scrapes = [asyncio.create_task(refresher.fresh()) for _ in range(3)]
        await asyncio.sleep(0.05)
        clock.advance(1)
        scrapes.append(asyncio.create_task(refresher.fresh()))
        await asyncio.sleep(0.05)
        assert not any(s.done() for s in scrapes)
        gate.set()
        async with asyncio.timeout(5):
            await asyncio.gather(*scrapes)
    assert fake.calls["cpu_times"] == 1
    assert "lookout_host_boot_time_seconds 1700000000" in text(collector)


async def test_a_stuck_read_is_answered_at_the_deadline_with_the_previous_numbers(
    make: Callable[..., HostRefresher],
    collector: HostCollector,
    fake: FakePsutil,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refresher = make(max_age=0.0, refresh_timeout=0.2)
    gate = threading.Event()
    async with refresher.running():
        await refresher.fresh()
        before = text(collector)
        fake.boot_time_gate = gate
        try:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING):
                await refresher.fresh()
            assert 0.15 < time.monotonic() - started < 2
            assert text(collector) == before
            assert "took longer than host.refresh_timeout (0.2s)" in caplog.text

            clock.advance(0.2)  # the stuck read is past its deadline: nobody waits for it again
            started = time.monotonic()
            await refresher.fresh()
            assert time.monotonic() - started < 0.1
            assert fake.calls["cpu_times"] == 2
            assert text(collector) == before
        finally:
            gate.set()
        fake.boot_time_gate = None
        for _ in range(200):  # a new read starts only once the stuck one has returned
            clock.advance(1)
            await refresher.fresh()
            if fake.calls["cpu_times"] == 3:
                break
            await asyncio.sleep(0.01)
        assert fake.calls["cpu_times"] == 3
        assert text(collector) == before


async def test_configure_makes_the_next_scrape_read_the_host_with_the_new_settings(
    make: Callable[..., HostRefresher],
    collector: HostCollector,
) -> None:
    refresher = make(max_age=3600.0)
    async with refresher.running():
        await refresher.fresh()
        assert devices(collector) == {"eth0", "lo", "veth12ab"}
        refresher.configure(
            HostSettings(max_age=3600.0, network_devices=NameFilter(include=re.compile("^eth")))
        )
        await refresher.fresh()
        assert devices(collector) == {"eth0"}


async def test_disabling_clears_the_numbers_and_scrapes_stop_reading_the_host(
    make: Callable[..., HostRefresher], collector: HostCollector, fake: FakePsutil, clock: FakeClock
) -> None:
    refresher = make(max_age=0.0)
    async with refresher.running():
        await refresher.fresh()
        refresher.configure(HostSettings(enabled=False))
        assert text(collector) == ""
        fake.calls.clear()
        clock.advance(10)
        await refresher.fresh()
        assert fake.calls == {}
        assert text(collector) == ""


async def test_leaving_the_context_stops_the_worker_thread(
    make: Callable[..., HostRefresher], fake: FakePsutil, clock: FakeClock
) -> None:
    refresher = make(max_age=0.0)
    async with refresher.running():
        await refresher.fresh()
    calls = dict(fake.calls)
    clock.advance(10)
    await refresher.fresh()
    assert fake.calls == calls
    for _ in range(500):
        if not [t for t in threading.enumerate() if t.name.startswith("lookout-host")]:
            break
        await asyncio.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name.startswith("lookout-host")]


async def test_the_snapshot_is_published_from_the_worker_thread_so_rendering_is_off_the_loop(
    fake: FakePsutil, clock: FakeClock, tmp_path: Path
) -> None:
    threads: list[str] = []
    collector = HostCollector()

    def publish(snapshot: HostSnapshot | None) -> None:
        threads.append(threading.current_thread().name)
        collector.show(snapshot)

    reader = HostReader(psutil=fake, procfs=write_procfs(tmp_path / "proc"), statvfs=FakeStatvfs())
    refresher = HostRefresher(reader, HostSettings(), publish, clock)
    async with refresher.running():
        await refresher.fresh()
    assert len(threads) == 1
    assert threads[0].startswith("lookout-host")
    assert "lookout_host_load1 0.5" in text(collector)


async def test_a_read_in_flight_when_disabled_publishes_nothing(
    make: Callable[..., HostRefresher],
    collector: HostCollector,
    fake: FakePsutil,
    clock: FakeClock,
) -> None:
    refresher = make(max_age=0.0, refresh_timeout=0.1)
    gate = threading.Event()
    fake.boot_time_gate = gate
    async with refresher.running():
        try:
            await refresher.fresh()  # answered at the deadline while the read waits at the gate
            refresher.configure(HostSettings(enabled=False))
        finally:
            gate.set()
    # Leaving the context waited for the read, which returned after the disabling.
    assert fake.calls["boot_time"] == 1
    assert text(collector) == ""
