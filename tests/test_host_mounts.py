"""FilesystemStats: statvfs on a small thread pool, under a deadline, surviving hung mounts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from exporter.host.mounts import FilesystemStats, FilesystemUsage
from tests.test_host import FakeStatvfs


def statvfs_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lookout-statvfs"]


def settle(condition: Callable[[], bool]) -> None:
    """Wait (at most five seconds) for ``condition()``, e.g. a released call to finish."""
    for _ in range(500):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met within five seconds")


def test_usage_is_computed_from_fragment_size_and_counts() -> None:
    fake = FakeStatvfs()
    usage = FilesystemStats(fake).usage(["/"], timeout=5)
    assert usage == {"/": FilesystemUsage(1000 * 1024, 400 * 1024, 300 * 1024, 500, 100)}


def test_workers_are_reused_between_rounds_and_never_exceed_the_pool_size() -> None:
    fake = FakeStatvfs()
    before = len(statvfs_threads())
    stats = FilesystemStats(fake, workers=2)
    for _ in range(20):
        usage = stats.usage(["/", "/data", "/srv/container", "/dev/shm"], timeout=5)
        assert all(u is not None for u in usage.values())
    assert len(statvfs_threads()) - before <= 2
    assert len(fake.calls) == 80


def test_more_hung_mounts_than_workers_are_all_found_and_healthy_mounts_read_again() -> None:
    """Round 1 finds as many hung mounts as there are workers; the next round finds the rest."""
    fake = FakeStatvfs()
    gates = {path: threading.Event() for path in ("/dev/shm", "/data", "/srv/container")}
    fake.gates.update(gates)
    stats = FilesystemStats(fake, workers=2)
    mounts = ["/dev/shm", "/data", "/srv/container", "/"]
    try:
        first = stats.usage(mounts, timeout=0.3)
        assert first == dict.fromkeys(mounts)  # two workers hung, the rest never started
        assert stats.stuck() == {"/dev/shm", "/data"}
        second = stats.usage(mounts, timeout=0.3)
        assert stats.stuck() == {"/dev/shm", "/data", "/srv/container"}
        assert second["/"] is not None
        third = stats.usage(mounts, timeout=0.3)
        assert third["/"] is not None
        assert fake.calls.count("/data") == 1, "a stuck mount is not called again"
    finally:
        for gate in gates.values():
            gate.set()
    settle(lambda: not stats.stuck())
    assert all(u is not None for u in stats.usage(mounts, timeout=5).values())
    assert fake.calls.count("/data") == 2


def test_workers_released_from_stuck_calls_end_once_the_pool_is_full_again() -> None:
    fake = FakeStatvfs()
    gate = threading.Event()
    fake.gates["/data"] = gate
    before = len(statvfs_threads())
    stats = FilesystemStats(fake, workers=1)
    try:
        assert stats.usage(["/data"], timeout=0.05) == {"/data": None}
        assert stats.usage(["/"], timeout=5)["/"] is not None  # served by a new worker
        assert len(statvfs_threads()) - before == 2
    finally:
        gate.set()
    settle(lambda: len(statvfs_threads()) - before == 1)
    assert stats.usage(["/data", "/"], timeout=5)["/data"] is not None


def test_a_failing_call_is_reported_as_none_and_the_worker_keeps_serving() -> None:
    fake = FakeStatvfs()
    fake.errors["/data"] = OSError(116, "Stale file handle")
    stats = FilesystemStats(fake, workers=1)
    assert stats.usage(["/data", "/"], timeout=5)["/data"] is None
    assert stats.usage(["/"], timeout=5)["/"] is not None
    assert stats.stuck() == frozenset()
