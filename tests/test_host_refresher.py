"""HostRefresher: host numbers are read in the background and a slow read never blocks a scrape."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.collectors.host import HostCollector
from exporter.host.refresher import HostRefresher
from exporter.host.settings import HostSettings, NameFilter
from tests.test_host import FakePsutil, FakeStatvfs, parse, series, write_procfs


def collector(fake: FakePsutil, tmp_path: Path, **settings: object) -> HostCollector:
    return HostCollector(
        psutil=fake,
        procfs=write_procfs(tmp_path / "proc"),
        settings=HostSettings(**settings),
        statvfs=FakeStatvfs(),
    )


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most five seconds) until ``condition()`` is true."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met within five seconds")


async def test_it_refreshes_in_the_background_every_interval(tmp_path: Path) -> None:
    fake = FakePsutil()
    host = collector(fake, tmp_path, refresh_interval=0.05)
    refresher = HostRefresher(host)
    assert list(host.expose()) == []
    async with refresher.running():
        assert list(host.expose()), "the first refresh is done when the context opens"
        await until(lambda: fake.calls.get("boot_time", 0) >= 3)
        samples, _ = parse("".join(host.expose()))
    assert samples[("lookout_host_load1", frozenset())] == 0.5


async def test_refresh_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    fake = FakePsutil()
    threads: list[str] = []
    original = fake.getloadavg

    def recording() -> tuple[float, float, float]:
        threads.append(threading.current_thread().name)
        return original()

    fake.getloadavg = recording  # type: ignore[method-assign]
    async with HostRefresher(collector(fake, tmp_path, refresh_interval=60)).running():
        await until(lambda: bool(threads))
    assert threads[0].startswith("lookout-host")
    assert threads[0] != threading.current_thread().name


async def test_a_stuck_refresh_keeps_the_previous_numbers_and_is_not_doubled_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakePsutil()
    host = collector(fake, tmp_path, refresh_interval=0.05)
    async with HostRefresher(host).running():
        await until(lambda: bool(list(host.expose())))
        before = "".join(host.expose())
        gate = threading.Event()
        fake.boot_time_gate = gate
        calls = fake.calls["boot_time"]
        try:
            await until(lambda: fake.calls["boot_time"] == calls + 1)
            started = time.monotonic()
            assert "".join(host.expose()) == before
            assert time.monotonic() - started < 0.05
            await asyncio.sleep(0.3)  # six intervals while the refresh hangs
            assert fake.calls["boot_time"] == calls + 1
            assert "".join(host.expose()) == before
        finally:
            gate.set()
        fake.boot_time_gate = None
        await until(lambda: fake.calls["boot_time"] >= calls + 2)
    assert "host refresh took longer than 0.05s" in caplog.text


async def test_configure_applies_new_filters_at_once_without_waiting_for_the_interval(
    tmp_path: Path,
) -> None:
    fake = FakePsutil()
    host = collector(fake, tmp_path, refresh_interval=3600)
    refresher = HostRefresher(host)
    async with refresher.running():
        await until(lambda: bool(list(host.expose())))
        samples, _ = parse("".join(host.expose()))
        assert "lo" in series(samples, "lookout_host_network_receive_bytes_total", "device")
        refresher.configure(
            HostSettings(
                refresh_interval=3600, network_devices=NameFilter(include=re.compile("^eth"))
            )
        )

        def only_eth0() -> bool:
            samples, _ = parse("".join(host.expose()))
            return series(samples, "lookout_host_network_receive_bytes_total", "device") == {"eth0"}

        await until(only_eth0)


async def test_disabling_clears_the_metrics_and_stops_reading_the_host(tmp_path: Path) -> None:
    fake = FakePsutil()
    host = collector(fake, tmp_path, refresh_interval=0.05)
    refresher = HostRefresher(host)
    async with refresher.running():
        await until(lambda: bool(list(host.expose())))
        refresher.configure(HostSettings(enabled=False, refresh_interval=0.05))
        assert list(host.expose()) == []
        started = fake.calls["cpu_times"]  # cpu_times is the first read of every refresh
        await asyncio.sleep(0.3)
        # At most the refresh already in flight when configure() ran, which publishes nothing.
        assert fake.calls["cpu_times"] <= started + 1
        assert list(host.expose()) == []
        refresher.configure(HostSettings(refresh_interval=0.05))
        await until(lambda: bool(list(host.expose())))


async def test_leaving_the_context_stops_the_task_and_its_thread(tmp_path: Path) -> None:
    fake = FakePsutil()
    async with HostRefresher(collector(fake, tmp_path, refresh_interval=0.05)).running():
        await until(lambda: fake.calls.get("boot_time", 0) >= 1)
    calls = dict(fake.calls)
    await asyncio.sleep(0.2)
    assert fake.calls == calls
    await until(lambda: not [t for t in threading.enumerate() if t.name.startswith("lookout-host")])
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "lookout-host-refresher"]
