"""Run-time maintenance windows in the heartbeat store, against SQLite and PostgreSQL alike: kept
across a reopen, ended early, forgotten a day after they closed, next to the pings without
disturbing them; an older SQLite file is migrated, a damaged row is quarantined, and replicas on
one PostgreSQL database see each other's windows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

from exporter.heartbeats.postgres_store import PostgresStore
from exporter.heartbeats.spec import PostgresStorage
from exporter.heartbeats.sqlite_store import DB_FILE, SqliteStore
from exporter.heartbeats.state import Ping, Signal
from exporter.maintenance import KEEP_ENDED, Scheduled
from tests.heartbeats.conftest import T0, Place, eventually, every
from tests.postgres import PostgresServer

JOB = every(60, 30, "job")


def window(window_id: str = "m-1", start: float = T0, hours: float = 2) -> Scheduled:
    return Scheduled(
        id=window_id,
        start=start,
        end=start + hours * 3600,
        created_at=start,
        author="alice",
        reason="upgrade",
        targets=("orders-*",),
        heartbeats=None,
        labels=(("service", "orders"),),
    )


async def test_a_saved_window_is_there_after_a_reopen_and_so_is_its_early_end(
    place: Place,
) -> None:
    store = await place.open()
    first = window()
    await store.save_maintenance(first, T0 - KEEP_ENDED)
    await store.record(Ping("job", Signal.SUCCESS, T0), JOB)
    assert dict(store.maintenance) == {"m-1": first}
    await store.close()

    reopened = await place.open()
    assert dict(reopened.maintenance) == {"m-1": first}
    assert reopened.facts["job"].seq == 1
    ended = first.ended(T0 + 600)
    await reopened.save_maintenance(ended, T0 + 600 - KEEP_ENDED)
    await reopened.close()

    again = await place.open()
    try:
        kept = again.maintenance["m-1"]
        assert kept.ended_at == T0 + 600
        assert kept.until == T0 + 600
        assert kept.state(T0 + 601) == "ended"
        assert not kept.window().active(T0 + 601)
    finally:
        await again.close()


async def test_a_window_closed_more_than_a_day_ago_is_forgotten_at_the_next_save(
    place: Place,
) -> None:
    store = await place.open()
    old, new = window("m-old"), window("m-new", start=T0 + KEEP_ENDED)
    await store.save_maintenance(old, T0 - KEEP_ENDED)
    later = T0 + 2 * 3600 + KEEP_ENDED + 1  # the old one closed a day and a second ago
    await store.save_maintenance(new, later - KEEP_ENDED)
    assert set(store.maintenance) == {"m-new"}
    await store.close()
    reopened = await place.open()
    try:
        assert set(reopened.maintenance) == {"m-new"}
    finally:
        await reopened.close()


async def opened_sqlite(directory: Path) -> SqliteStore:
    store = SqliteStore.open(directory)
    store.start()
    return store


async def test_a_schema_2_sqlite_file_gains_the_maintenance_table(tmp_path: Path) -> None:
    store = await opened_sqlite(tmp_path)
    await store.record(Ping("job", Signal.SUCCESS, T0), JOB)
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute("DROP TABLE maintenance")
        db.execute("PRAGMA user_version = 2")
    reopened = await opened_sqlite(tmp_path)
    try:
        assert reopened.facts["job"].seq == 1
        assert dict(reopened.maintenance) == {}
        await reopened.save_maintenance(window(), T0 - KEEP_ENDED)
    finally:
        await reopened.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT id FROM maintenance").fetchall() == [("m-1",)]


async def test_a_damaged_sqlite_window_row_is_quarantined_and_the_others_load(
    tmp_path: Path,
) -> None:
    store = await opened_sqlite(tmp_path)
    await store.save_maintenance(window("m-good"), T0 - KEEP_ENDED)
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute("INSERT INTO maintenance VALUES ('m-bad', ?, '{\"id\": 1')", (T0,))
    reopened = await opened_sqlite(tmp_path)
    try:
        assert set(reopened.maintenance) == {"m-good"}
        assert reopened.health.quarantined == 1
    finally:
        await reopened.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        rows = db.execute("SELECT heartbeat, kind FROM quarantine").fetchall()
    assert rows == [("m-bad", "maintenance")]


async def test_replicas_on_one_postgresql_database_see_each_others_windows(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database()
    a = await PostgresStore.open(PostgresStorage(url))
    b = await PostgresStore.open(PostgresStorage(url))
    a.start()
    b.start()
    try:
        created = window()
        await a.save_maintenance(created, T0 - KEEP_ENDED)

        async def b_has_it() -> bool:
            return b.maintenance.get("m-1") == created

        await eventually(b_has_it, seconds=10)
        ended = created.ended(T0 + 60)
        await b.save_maintenance(ended, T0 - KEEP_ENDED)

        async def a_sees_the_end() -> bool:
            return a.maintenance.get("m-1") == ended

        await eventually(a_sees_the_end, seconds=10)
        async with await psycopg.AsyncConnection.connect(url) as db:
            cursor = await db.execute('SELECT id, until, "window" FROM lookout_maintenance')
            [(window_id, until, text)] = await cursor.fetchall()
        assert (window_id, until) == ("m-1", T0 + 60)
        assert Scheduled.from_json(json.loads(text)) == ended
    finally:
        await a.close()
        await b.close()
