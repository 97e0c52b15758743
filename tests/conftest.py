"""Fixtures shared by the whole suite: a test CA, running one probe of a YAML target, and
``servers``, which starts asyncio TCP servers (plain or TLS) on 127.0.0.1 from small handler
functions and stops them, with every connection they accepted, after the test; ``beating``, the
status tests' app with heartbeats in every state; ``postgres``, one real PostgreSQL cluster for
the whole session (a fresh database per test with ``create_database``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp.test_utils import TestClient

from exporter import config
from exporter.app import create_app
from exporter.clock import SystemClock
from exporter.config import Config, Source, load_text
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.results import ProbeResult
from exporter.runtime import Options
from tests.clock import FakeClock
from tests.postgres import PostgresServer, postgres_server
from tests.servers import Servers
from tests.status_support import HEARTBEATS_CONFIG, ping_heartbeats

ProbeOnce = Callable[..., Awaitable[ProbeResult]]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def config_from_text(text: str, base: Path, environ: Mapping[str, str] | None = None) -> Config:
    return load_text(text, Source("test.yml", base), environ or {})


@pytest.fixture
def probe_once(tmp_path: Path) -> ProbeOnce:
    """Run one probe of the single target in a YAML ``targets:`` document."""

    async def run(text: str, environ: Mapping[str, str] | None = None) -> ProbeResult:
        config = config_from_text(text, tmp_path, environ)
        clients = SharedClients()
        try:
            return await run_probe(config.targets[0], clients, SystemClock())
        finally:
            await clients.close()

    return run


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    started = Servers()
    yield started
    await started.stop()


@pytest.fixture
async def beating(aiohttp_client: Any, tmp_path: Path) -> TestClient[Any, Any]:
    """An app with the status tests' heartbeats, pinged into every state on a fake clock."""
    clock = FakeClock()
    path = tmp_path / "lookout.yml"
    path.write_text(HEARTBEATS_CONFIG, encoding="utf-8")
    options = Options(config_path=str(path), storage_path=tmp_path / "data")
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(options, config.load(str(path)), clock)
    )
    await ping_heartbeats(client, clock)
    return client
