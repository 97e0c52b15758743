"""What only the PostgreSQL store has: several stores on one database agree, migrations are safe
when replicas start together, damaged rows are quarantined at commit, and a database that goes
away fails pings (never acknowledges them) until it is back, with no restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from exporter.heartbeats.postgres_store import MIGRATIONS, PostgresStore
from exporter.heartbeats.spec import PostgresStorage
from exporter.heartbeats.state import Ping, Signal, Status, derive
from exporter.heartbeats.store import StoreError
from tests.heartbeats.conftest import T0, eventually, every
from tests.postgres import PostgresServer, postgres_server

JOB = every(3600, 600, "job")
POOL = every(3600, 600, "pool", instances=2)


async def opened(url: str) -> PostgresStore:
    store = await PostgresStore.open(PostgresStorage(url))
    store.start()
    return store


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


async def test_two_stores_on_one_database_agree_on_runs_started_on_one_and_finished_on_the_other(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    a, b = await opened(url), await opened(url)
    try:
        await a.record(Ping("job", Signal.START, T0, rid="run-1"), JOB)
        finished = await b.record(Ping("job", Signal.SUCCESS, T0 + 42, rid="run-1"), JOB)
        assert finished.last_duration == 42
        await eventually(holds(lambda: a.facts.get("job") == finished))
        await a.record(Ping("job", Signal.FAIL, T0 + 50), JOB)
        last = await b.record(Ping("job", Signal.SUCCESS, T0 + 60), JOB)
        await eventually(holds(lambda: a.facts.get("job") == last))
        assert derive(JOB, a.facts["job"], None, T0 + 61).status is Status.UP
        await a.record(Ping("pool", Signal.SUCCESS, T0, instance="w1"), POOL)
        await b.record(Ping("pool", Signal.SUCCESS, T0, instance="w2"), POOL)
        await eventually(
            holds(lambda: len(a.instances("pool") or ()) == len(b.instances("pool") or ()) == 2)
        )
        assert [p.seq for p in await a.recent("job")] == [4, 3, 2, 1]
    finally:
        await a.close()
        await b.close()


async def test_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    stores = await asyncio.gather(*(opened(url) for _ in range(4)))
    try:
        async with await psycopg.AsyncConnection.connect(url) as db:
            cursor = await db.execute("SELECT version FROM lookout_schema ORDER BY version")
            assert [row[0] for row in await cursor.fetchall()] == list(
                range(1, len(MIGRATIONS) + 1)
            )
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    await (await opened(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        await db.execute("INSERT INTO lookout_schema VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        await PostgresStore.open(PostgresStorage(url))


async def test_an_unreachable_database_is_a_clear_error_at_start() -> None:
    with pytest.raises(StoreError, match=r"cannot use heartbeat store postgresql://127.0.0.1:1/x"):
        await PostgresStore.open(PostgresStorage("postgresql://lookout@127.0.0.1:1/x"))


async def test_a_wrongly_typed_facts_row_is_quarantined_at_the_next_commit(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    store = await opened(url)
    try:
        for n in range(3):
            await store.record(Ping("job", Signal.SUCCESS, T0 + n), JOB)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            facts = store.facts["job"].to_json()
            facts["counts"] = {"success": "three"}
            await db.execute(
                "UPDATE lookout_heartbeat SET facts = %s WHERE name = 'job'", (json.dumps(facts),)
            )
        after = await store.record(Ping("job", Signal.SUCCESS, T0 + 10), JOB)
        assert after.seq == 4, "numbering goes on after the kept pings"
        assert store.health.quarantined == 1
        assert store.running
        async with await psycopg.AsyncConnection.connect(url) as db:
            cursor = await db.execute("SELECT heartbeat, kind FROM lookout_quarantine")
            assert await cursor.fetchall() == [("job", "facts")]
    finally:
        await store.close()


async def test_pings_fail_while_the_database_is_down_and_succeed_when_it_is_back() -> None:
    with postgres_server() as server:
        store = await opened(server.create_database())
        async with asyncio.timeout(120):
            try:
                await store.record(Ping("job", Signal.SUCCESS, T0), JOB)
                await asyncio.to_thread(server.stop)
                with pytest.raises(StoreError):
                    await store.record(Ping("job", Signal.SUCCESS, T0 + 1), JOB)
                assert not store.health.up
                assert store.health.errors >= 1
                with pytest.raises(StoreError):
                    await store.check()
                assert store.facts["job"].seq == 1
                await asyncio.to_thread(server.start)

                async def reachable() -> bool:
                    with contextlib.suppress(StoreError):
                        await store.check()
                    return store.health.up

                await eventually(reachable)
                after = await store.record(Ping("job", Signal.SUCCESS, T0 + 2), JOB)
                assert after.seq == 2
            finally:
                await store.close()


async def test_a_store_reads_back_what_other_replicas_commit_not_what_it_committed_itself(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    a, b = await opened(url), await opened(url)
    reads: list[list[str] | None] = []
    refresh = a._refresh

    async def counted(names: list[str] | None) -> None:
        reads.append(names)
        await refresh(names)

    a._refresh = counted  # type: ignore[method-assign]
    try:
        # The listener's first connection asks for a full comparison: it is listening then.
        await eventually(holds(lambda: None in reads))
        for n in range(5):
            await a.record(Ping("job", Signal.SUCCESS, T0 + n), JOB)
        last = await b.record(Ping("job", Signal.SUCCESS, T0 + 10), JOB)
        await eventually(holds(lambda: a.facts.get("job") == last))
        assert [names for names in reads if names is not None] == [["job"]]
    finally:
        await a.close()
        await b.close()


async def test_a_batch_whose_last_write_fails_commits_nothing_and_the_next_one_goes_through(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    store = await opened(url)
    try:
        await store.record(Ping("pool", Signal.SUCCESS, T0, instance="a"), POOL)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            # The instance tracks are the batch's last write: refused by the database.
            await db.execute(
                "ALTER TABLE lookout_instance ADD CONSTRAINT refused CHECK (false) NOT VALID"
            )
        with pytest.raises(StoreError):
            await store.record(Ping("pool", Signal.SUCCESS, T0 + 1, instance="a"), POOL)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            cursor = await db.execute("SELECT seq FROM lookout_heartbeat WHERE name = 'pool'")
            assert await cursor.fetchall() == [(1,)]
            cursor = await db.execute("SELECT count(*) FROM lookout_ping WHERE heartbeat = 'pool'")
            assert await cursor.fetchall() == [(1,)]
            await db.execute("ALTER TABLE lookout_instance DROP CONSTRAINT refused")
        after = await store.record(Ping("pool", Signal.SUCCESS, T0 + 2, instance="a"), POOL)
        assert after.seq == 2
    finally:
        await store.close()
