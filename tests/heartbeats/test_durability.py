"""Every acknowledged ping survives the exporter being killed with SIGKILL during a ping flood,
with either store."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.exporter_process import run_exporter
from tests.metrics import sample_value
from tests.postgres import PostgresServer

HEARTBEATS = [f"flood-{n}" for n in range(50)]


async def flood(
    port: int,
    worker: int,
    acknowledged: Counter[str],
    refused: Counter[str] | None = None,
    names: list[str] = HEARTBEATS,
) -> None:
    """Ping over one keep-alive connection until the server dies; count the 200 answers (and
    the 503s in ``refused``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = worker
    try:
        while True:
            name = names[n % len(names)]
            n += 7
            request = f"POST /ping/{name} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200 "):
                acknowledged[name] += 1
            elif refused is not None and head.startswith(b"HTTP/1.1 503 "):
                refused[name] += 1
                await asyncio.sleep(0.05)
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_every_acknowledged_ping_survives_sigkill(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    storage = ""
    if engine == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        storage = f"storage: {server.create_database()}\n"
    config = tmp_path / "lookout.yml"
    config.write_text(
        storage
        + "heartbeats:\n"
        + "".join(f"  - {{name: {n}, period: 1m, grace: 1m}}\n" for n in HEARTBEATS)
    )
    args = ["run", "--config", str(config), "--storage.path", str(tmp_path / "data")]
    acknowledged: Counter[str] = Counter()
    async with run_exporter(args, tmp_path) as exporter:
        workers = [asyncio.create_task(flood(exporter.port, w, acknowledged)) for w in range(32)]
        await asyncio.sleep(1.0)
        assert sum(acknowledged.values()) > 100, "the flood did not get going"
        exporter.signal(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*workers), 10)
        assert await exporter.process.wait() == -signal.SIGKILL

    async with run_exporter(args, tmp_path) as exporter:
        status, text = await exporter.get("/metrics")
    assert status == 200
    lost = {}
    for name, count in acknowledged.items():
        stored = sample_value(
            text, "lookout_heartbeat_pings_total", heartbeat=name, signal="success"
        )
        if stored is None or stored < count:
            lost[name] = (count, stored)
    assert lost == {}, f"acknowledged pings missing after restart (acknowledged, stored): {lost}"
