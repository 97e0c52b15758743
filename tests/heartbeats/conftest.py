"""Shared pieces of the heartbeat tests: a clock that only moves when told, heartbeat specs, and
the stores: every store test runs against SQLite and against a real PostgreSQL server (one
cluster for the whole session, a fresh database per test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter.heartbeats.postgres_store import PostgresStore
from exporter.heartbeats.schedule import Period, parse_cron
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.spec import Heartbeat, PostgresStorage
from exporter.heartbeats.sqlite_store import SqliteStore
from exporter.heartbeats.store import Store
from tests.postgres import PostgresServer

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


@dataclass(frozen=True)
class Place:
    """Where a test's store lives: a directory (SQLite) or a database (PostgreSQL); opening it
    again reads what was committed before."""

    engine: str
    directory: Path
    postgresql: PostgresStorage | None

    async def open(self) -> Store:
        store: Store
        if self.postgresql is None:
            store = SqliteStore.open(self.directory)
        else:
            store = await PostgresStore.open(self.postgresql)
        store.start()
        return store


@pytest.fixture(params=["sqlite", "postgresql"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "sqlite":
        return Place("sqlite", tmp_path / "data", None)
    server: PostgresServer = request.getfixturevalue("postgres")
    return Place("postgresql", tmp_path / "data", PostgresStorage(server.create_database()))


@pytest.fixture
async def store(place: Place) -> AsyncIterator[Store]:
    opened = await place.open()
    yield opened
    await opened.close()


MakeHeartbeats = Callable[[Sequence[Heartbeat]], Awaitable[Heartbeats]]


@pytest.fixture
async def make_heartbeats(place: Place, clock: FakeClock) -> AsyncIterator[MakeHeartbeats]:
    """Heartbeats with their store open in the test's place, closed after the test."""
    opened: list[Heartbeats] = []

    async def make(specs: Sequence[Heartbeat]) -> Heartbeats:
        heartbeats = Heartbeats(specs, clock, place.directory)
        await heartbeats.open_for(specs, place.postgresql)
        opened.append(heartbeats)
        return heartbeats

    yield make
    for heartbeats in opened:
        await heartbeats.close()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll ``check`` every 50 ms until it is true; fail after ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {seconds} s: {check.__doc__ or check}")
