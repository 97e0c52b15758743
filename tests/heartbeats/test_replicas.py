"""Exporter processes sharing one PostgreSQL database, as replicas behind one Service: whichever
replica gets each ping, all of them export the same heartbeat series; a database stopped and
started again under load fails pings (503, readiness false) and loses none it acknowledged, and
the exporters recover by themselves."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg

from tests.exporter_process import ExporterProcess, run_exporter
from tests.heartbeats.conftest import eventually
from tests.heartbeats.test_durability import flood
from tests.postgres import PostgresServer, postgres_server

NAMES = [f"job-{n}" for n in range(12)]


def config(path: Path, url: str, names: list[str]) -> list[str]:
    path.write_text(
        f"storage: {url}\n"
        "heartbeats:\n"
        + "".join(f"  - {{name: {n}, period: 1h, grace: 10m, max_runtime: 30m}}\n" for n in names)
        + "  - {name: pool, period: 1h, grace: 10m, instances: 3}\n"
    )
    return ["run", "--config", str(path)]


def heartbeat_lines(text: str) -> list[str]:
    """The heartbeat series, without the age and the downtime (an open incident's counts up to
    the moment of the scrape)."""
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith("lookout_heartbeat")
        and not line.startswith(
            (
                "lookout_heartbeat_age_seconds",
                "lookout_heartbeat_downtime_seconds_total",
                "lookout_heartbeat_store",
            )
        )
    )


async def test_two_exporters_sharing_a_database_export_identical_heartbeat_series(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    args = config(tmp_path / "lookout.yml", postgres.create_database(), NAMES)
    chance = random.Random(20)
    async with (
        run_exporter(args, tmp_path, ready="/-/ready") as one,
        run_exporter(args, tmp_path, ready="/-/ready") as other,
        aiohttp.ClientSession() as session,
    ):

        async def ping(path: str) -> None:
            exporter = chance.choice((one, other))
            async with session.get(exporter.url + path) as response:
                assert response.status == 200, await response.text()

        for round_ in range(3):
            for name in NAMES:
                first, second = chance.sample([one, other], 2)
                rid = f"{name}-{round_}"
                async with session.get(f"{first.url}/ping/{name}/start?rid={rid}") as response:
                    assert response.status == 200
                await asyncio.sleep(chance.random() * 0.01)
                finish = chance.choice(["0", "3", "fail", "0"])
                async with session.get(f"{second.url}/ping/{name}/{finish}?rid={rid}") as r:
                    assert r.status == 200
            await ping(f"/ping/{NAMES[0]}/fail")
            await ping(f"/ping/{NAMES[0]}")
            for worker in ("w1", "w2", "w3"):
                await ping(f"/ping/pool?instance={worker}")
        await ping(f"/ping/{NAMES[1]}/start?rid=open")  # a run left open on one replica

        async def series(exporter: ExporterProcess) -> list[str]:
            status, text = await exporter.get("/metrics")
            assert status == 200
            return heartbeat_lines(text)

        async def agree() -> bool:
            return await series(one) == await series(other)

        await eventually(agree)
        seen = await series(one)
    assert any("lookout_heartbeat_last_duration_seconds" in line for line in seen)
    assert any('status="running"} 1' in line and NAMES[1] in line for line in seen)
    assert any("lookout_heartbeat_instances_alive" in line and line.endswith(" 3") for line in seen)


async def test_a_database_restarted_under_load_loses_no_acknowledged_ping(tmp_path: Path) -> None:
    with postgres_server() as server:
        url = server.create_database()
        names = [f"flood-{n}" for n in range(50)]
        args = config(tmp_path / "lookout.yml", url, names)
        acknowledged: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        async with run_exporter(args, tmp_path, ready="/-/ready") as exporter:
            workers = [
                asyncio.create_task(flood(exporter.port, w, acknowledged, refused, names))
                for w in range(16)
            ]
            await asyncio.sleep(1.0)
            assert sum(acknowledged.values()) > 100, "the flood did not get going"
            await asyncio.to_thread(server.stop)

            async def refusing() -> bool:
                return bool(refused) and (await exporter.get("/-/ready"))[0] == 503

            await eventually(refusing, 60)
            while_down = sum(acknowledged.values())
            await asyncio.sleep(1.0)
            assert sum(acknowledged.values()) == while_down, "a ping was acknowledged while down"
            await asyncio.to_thread(server.start)

            async def recovered() -> bool:
                ready = (await exporter.get("/-/ready"))[0] == 200
                return ready and sum(acknowledged.values()) >= while_down + 100

            await eventually(recovered, 60)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            status, text = await exporter.get("/metrics")
            assert status == 200
            assert 'lookout_heartbeat_store_up{engine="postgresql"} 1' in text
            assert "lookout_heartbeat_store_errors_total" in text
        async with await psycopg.AsyncConnection.connect(url) as db:
            cursor = await db.execute("SELECT name, seq FROM lookout_heartbeat")
            stored: dict[str, int] = dict(await cursor.fetchall())
        lost = {n: (c, stored.get(n)) for n, c in acknowledged.items() if stored.get(n, 0) < c}
        assert lost == {}, f"acknowledged pings missing (acknowledged, stored): {lost}"
