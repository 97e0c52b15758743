"""The SQLite store: committed pings survive a reopen, bad files are clear errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from exporter.heartbeats.state import Ping, Signal
from exporter.heartbeats.store import DB_FILE, KEEP_PINGS, Store, StoreError
from tests.heartbeats.conftest import T0


def ping(name: str, signal: Signal = Signal.SUCCESS, at: float = T0, **kwargs: object) -> Ping:
    return Ping(name, signal, at, **kwargs)  # type: ignore[arg-type]


async def test_recorded_pings_are_in_the_facts_after_a_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.start()
    await store.record(ping("a", Signal.START, rid="r1"), 0)
    facts = await store.record(ping("a", Signal.FAIL, T0 + 7, rid="r1", exit_code=3), 0)
    await store.record(ping("b", instance="w1"), 8)
    assert store.facts["a"] == facts
    await store.close()

    reopened = Store.open(tmp_path)
    try:
        assert reopened.facts["a"] == facts
        assert reopened.facts["a"].last_duration == 7
        assert reopened.facts["a"].last_exit_code == 3
        assert set(reopened.facts["b"].instances) == {"w1"}
    finally:
        await reopened.close()


async def test_the_facts_are_published_only_when_committed(store: Store) -> None:
    pending = asyncio.ensure_future(store.record(ping("a"), 0))
    assert "a" not in store.facts
    await pending
    assert store.facts["a"].seq == 1


async def test_concurrent_pings_are_committed_together(store: Store) -> None:
    statements: list[str] = []
    store._connection.set_trace_callback(statements.append)
    results = await asyncio.gather(*(store.record(ping(f"hb{n % 10}"), 0) for n in range(2000)))
    store._connection.set_trace_callback(None)
    assert sorted(f.seq for f in results) == sorted(list(range(1, 201)) * 10)
    assert {name: f.seq for name, f in store.facts.items()} == {f"hb{n}": 200 for n in range(10)}
    assert 1 <= statements.count("COMMIT") <= 20


async def test_the_ping_log_keeps_the_latest_pings_with_their_bodies(store: Store) -> None:
    for n in range(KEEP_PINGS + 5):
        await store.record(ping("a", at=T0 + n, body=f"line {n}".encode()), 0)
    recent = await asyncio.to_thread(store.recent, "a")
    assert len(recent) == KEEP_PINGS
    assert recent[0].seq == KEEP_PINGS + 5
    assert recent[0].body == f"line {KEEP_PINGS + 4}".encode()
    assert recent[-1].body == b"line 5"


async def test_latest_failures_gives_each_heartbeat_its_newest_fail_after_a_seq(
    store: Store,
) -> None:
    for n in range(KEEP_PINGS):  # the ring wraps: seq 101 is in the slot seq 1 had
        await store.record(ping("a", at=T0 + n), 0)
    await store.record(ping("a", Signal.FAIL, T0 + 100, exit_code=2, body=b"boom"), 0)
    await store.record(ping("a", Signal.START, T0 + 101), 0)
    await store.record(ping("b", Signal.FAIL), 0)
    for n in range(20):
        await store.record(ping("b", at=T0 + n), 0)
    await store.record(ping("d", Signal.FAIL, body=b"first"), 0)
    await store.record(ping("d", Signal.FAIL, T0 + 1, body=b"second"), 0)
    after = {"a": 102 - 10, "b": 21 - 10, "c": 0, "d": 0}
    failures = await asyncio.to_thread(store.latest_failures, after)
    assert set(failures) == {"a", "d"}
    assert (failures["a"].seq, failures["a"].exit_code, failures["a"].body) == (101, 2, b"boom")
    assert (failures["d"].seq, failures["d"].body) == (2, b"second")
    assert await asyncio.to_thread(store.latest_failures, {}) == {}


async def test_the_store_uses_wal_with_full_sync(store: Store) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match=r"cannot use heartbeat store .*: file is not a database"):
        Store.open(tmp_path)


def test_damaged_facts_are_a_clear_error(tmp_path: Path) -> None:
    asyncio.run(Store.open(tmp_path).close())
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("INSERT INTO heartbeat VALUES ('a', '{\"seq\": 1')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"is damaged: facts of 'a' unreadable"):
        Store.open(tmp_path)


def test_a_storage_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(StoreError, match=r"cannot create storage directory .*data"):
        Store.open(tmp_path / "data")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        Store.open(tmp_path)


async def test_a_failed_write_fails_the_ping_and_keeps_the_facts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(tmp_path)
    store.start()
    try:
        first = await store.record(ping("a"), 0)
        blocker = sqlite3.connect(tmp_path / DB_FILE, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        store._connection.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(StoreError, match=r"cannot write heartbeat store .*locked"):
            await store.record(ping("a", at=T0 + 1), 0)
        assert store.facts["a"] == first
        blocker.rollback()
        blocker.close()
        second = await store.record(ping("a", at=T0 + 2), 0)
        assert second.seq == 2
        assert [r.getMessage() for r in caplog.records] == [
            "heartbeat pings not stored",
            "heartbeat pings stored again",
        ]
    finally:
        await store.close()
