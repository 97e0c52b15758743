"""Shared pieces of the heartbeat tests: a clock that only moves when told, and heartbeat specs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.heartbeats.schedule import Period, parse_cron
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.store import Store

# 2026-03-28 12:00:00 UTC, the day before Europe/Berlin moves its clocks forward.
T0 = 1774699200.0


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def every(period: float, grace: float, name: str = "job", **kwargs: object) -> Heartbeat:
    return Heartbeat(name=name, schedule=Period(period), grace=grace, **kwargs)  # type: ignore[arg-type]


def cron(expression: str, zone: str, grace: float, **kwargs: object) -> Heartbeat:
    schedule = parse_cron(expression, ZoneInfo(zone))
    return Heartbeat(name="job", schedule=schedule, grace=grace, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store.open(tmp_path / "data")
    opened.start()
    yield opened
    await opened.close()


MakeHeartbeats = Callable[[Sequence[Heartbeat]], Awaitable[Heartbeats]]


@pytest.fixture
async def make_heartbeats(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeHeartbeats]:
    """Heartbeats with their store open in ``tmp_path``, closed after the test."""
    opened: list[Heartbeats] = []

    async def make(specs: Sequence[Heartbeat]) -> Heartbeats:
        heartbeats = Heartbeats(specs, clock, tmp_path / "heartbeats")
        await heartbeats.open_for(specs)
        opened.append(heartbeats)
        return heartbeats

    yield make
    for heartbeats in opened:
        await heartbeats.close()
