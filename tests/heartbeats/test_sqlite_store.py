"""What only the SQLite store has: its file, its writer thread, and what a disk can do to them
(a full filesystem, a corrupted page, a damaged row, a lock held by someone else)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from exporter import config
from exporter.app import create_app
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.sqlite_store import DB_FILE, SqliteStore
from exporter.heartbeats.state import Ping, Signal
from exporter.heartbeats.store import StoreError
from exporter.runtime import Options
from tests.heartbeats.conftest import T0, FakeClock, every

JOB = every(60, 30, "a")


def ping(name: str = "a", at: float = T0, **kwargs: object) -> Ping:
    return Ping(name, Signal.SUCCESS, at, **kwargs)  # type: ignore[arg-type]


async def test_the_store_uses_wal_with_full_sync(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path)
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    store.start()
    await store.close()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match=r"cannot use heartbeat store .*: file is not a database"):
        SqliteStore.open(tmp_path)


def test_a_storage_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(StoreError, match=r"cannot create storage directory .*data"):
        SqliteStore.open(tmp_path / "data")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        SqliteStore.open(tmp_path)


async def filled(directory: Path, pings: int = 400, body: bytes = b"x" * 2000) -> None:
    store = SqliteStore.open(directory)
    store.start()
    for n in range(pings):
        await store.record(ping(f"hb{n % 40}", T0 + n, body=body), JOB)
    await store.close()


async def test_a_corrupted_page_in_the_middle_stops_the_start_with_a_clear_error(
    tmp_path: Path,
) -> None:
    await filled(tmp_path)
    path = tmp_path / DB_FILE
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek((size // 4096 // 2) * 4096)
        file.write(b"\xa5" * 4096)
    with pytest.raises(StoreError, match=r"is corrupted \(.*\): restore a backup.*\.recover"):
        SqliteStore.open(tmp_path)


def write_facts(directory: Path, name: str, text: str) -> None:
    with contextlib.closing(sqlite3.connect(directory / DB_FILE)) as db:
        db.execute("INSERT OR REPLACE INTO heartbeat VALUES (?, ?)", (name, text))
        db.commit()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param('{"seq": 1', id="not-json"),
        pytest.param("wrong-type", id="wrongly-typed"),
    ],
)
async def test_a_damaged_facts_row_is_quarantined_and_the_heartbeat_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    await filled(tmp_path, pings=6, body=b"")
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as db:
        (text,) = db.execute("SELECT facts FROM heartbeat WHERE name = 'hb1'").fetchone()
    if damage == "wrong-type":  # what made the writer thread die: a value of the wrong type
        facts = json.loads(text)
        facts["track"]["successes"] = ["yesterday"]
        damage = json.dumps(facts)
    write_facts(tmp_path, "hb1", damage)

    store = SqliteStore.open(tmp_path)
    store.start()
    try:
        assert store.health.quarantined == 1
        assert "damaged heartbeat row quarantined" in caplog.messages
        assert store.facts["hb2"].seq == 1
        again = await store.record(ping("hb1", T0 + 100), JOB)
        assert again.seq == 2, "numbering goes on after the kept pings"
        assert (await store.record(ping("hb2", T0 + 100), JOB)).seq == 2
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as db:
        assert db.execute("SELECT heartbeat, content FROM quarantine").fetchall() == [
            ("hb1", damage)
        ]


async def test_a_failed_write_fails_the_ping_and_keeps_the_facts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    heartbeats = Heartbeats([JOB], clock, tmp_path)
    await heartbeats.open_for([JOB])
    store = heartbeats.store
    assert isinstance(store, SqliteStore)
    try:
        first = await heartbeats.record(JOB, ping())
        blocker = sqlite3.connect(tmp_path / DB_FILE, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        store._connection.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(StoreError, match=r"cannot write heartbeat store .*locked"):
            await heartbeats.record(JOB, ping(at=T0 + 1))
        assert store.facts["a"] == first
        assert not heartbeats.ready
        assert store.health.errors == 1
        blocker.rollback()
        blocker.close()
        await store.check()
        assert heartbeats.ready
        second = await heartbeats.record(JOB, ping(at=T0 + 2))
        assert second.seq == 2
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("exporter")]
        assert messages == [
            "heartbeat pings not stored",
            "heartbeat pings stored again",
        ]
    finally:
        await heartbeats.close()


async def test_a_stopped_writer_turns_readiness_false_and_pings_fail_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    heartbeats = Heartbeats([JOB], clock, tmp_path)
    await heartbeats.open_for([JOB])
    store = heartbeats.store
    assert isinstance(store, SqliteStore)
    try:
        await heartbeats.record(JOB, ping())
        assert heartbeats.ready
        store._enqueue(None)  # the writer's stop signal, as if it had ended
        assert store._thread is not None
        await asyncio.to_thread(store._thread.join, 10)
        assert not heartbeats.ready
        with pytest.raises(StoreError, match=r"writer of heartbeat store .* has stopped"):
            await asyncio.wait_for(heartbeats.record(JOB, ping(at=T0 + 1)), 5)
    finally:
        await heartbeats.close()


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for the test (root only: CI runs as root)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full filesystem needs root to mount a small tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_a_full_disk_is_reported_as_such_and_the_store_recovers(
    small_filesystem: Path, clock: FakeClock
) -> None:
    heartbeats = Heartbeats([JOB], clock, small_filesystem / "data")
    await heartbeats.open_for([JOB])
    filler = small_filesystem / "filler"
    try:
        filler.write_bytes(b"\0" * 600_000)
        error: StoreError | None = None
        for n in range(200):
            try:
                await heartbeats.record(JOB, ping(at=T0 + n, body=os.urandom(8000)))
            except StoreError as exc:
                error = exc
                break
        assert error is not None, "the filesystem never filled up"
        assert "database or disk is full" in str(error)
        assert "cannot rollback" not in str(error)
        assert not heartbeats.ready
        filler.unlink()
        store = heartbeats.store
        assert store is not None
        await store.check()
        assert heartbeats.ready
        await heartbeats.record(JOB, ping(at=T0 + 500))
    finally:
        await heartbeats.close()


async def test_a_store_from_before_instances_were_kept_apart_is_migrated(tmp_path: Path) -> None:
    track = {"last_ping_at": T0, "last_success_at": T0, "failed": False,
             "open_start_at": None, "open_start_key": None}  # fmt: skip
    facts = {"track": track, "seq": 1, "counts": {"success": 1}, "last_start_at": None,
             "last_duration": None, "last_exit_code": None, "runs": [],
             "instances": {"w1": track}}  # fmt: skip
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE)) as db:
        db.execute("CREATE TABLE heartbeat (name TEXT PRIMARY KEY, facts TEXT NOT NULL)")
        db.execute("INSERT INTO heartbeat VALUES ('pool', ?)", (json.dumps(facts),))
        db.execute("PRAGMA user_version = 1")
        db.commit()
    store = SqliteStore.open(tmp_path)
    try:
        assert store.facts["pool"].seq == 1
        book = store.instances("pool")
        assert book is not None
        assert list(book) == ["w1"]
        assert store.health.quarantined == 0
    finally:
        store.start()
        await store.close()


async def test_a_page_that_cannot_read_the_store_answers_503_without_a_traceback(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("heartbeats:\n  - {name: a, period: 1h, grace: 5m}\n")
    storage = tmp_path / "data"
    client = await aiohttp_client(
        create_app(Options(config_path=str(path), storage_path=storage), config.load(str(path)))
    )
    for n in range(150):
        assert (await client.post("/ping/a", data=b"y" * 3000 + str(n).encode())).status == 200
    db = storage / DB_FILE
    with contextlib.closing(sqlite3.connect(db)) as reader:
        reader.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with db.open("r+b") as file:  # damage every page after the first two, under the writer
        for offset in range(2 * 4096, size, 4096):
            file.seek(offset)
            file.write(b"\xa5" * 4096)
    api = await client.get("/api/v1/heartbeats/a")
    assert api.status == 503
    assert "heartbeat store" in (await api.json())["error"]
    page = await client.get("/heartbeats/a")
    assert page.status == 503
    assert "Traceback" not in await page.text()
    assert not [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
