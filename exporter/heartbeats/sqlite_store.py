"""The embedded heartbeat store: SQLite in WAL mode, written by one thread with group commit.

A ping is acknowledged only after the transaction holding it is committed (``synchronous=FULL``,
so also after a power loss). One writer thread takes every ping that queued up while its previous
commit ran and commits them together: one fsync for hundreds of pings under load, a few
milliseconds of latency when idle, and the event loop never waits on the disk.

Tables: ``heartbeat`` holds each heartbeat's folded ``Facts`` (JSON, rewritten in the same
transaction as its pings), ``instance`` the track of each instance name, ``ping`` the latest
``KEEP_PINGS`` pings of each heartbeat with their kept bodies, as a ring (slot = sequence number
modulo ``KEEP_PINGS``), so the file stays bounded. ``quarantine`` keeps rows found damaged.
``maintenance`` holds the run-time maintenance windows (JSON), written by the same thread. A
declared heartbeat that never pinged has a ``heartbeat`` row too (``Facts.declared_at``); facts
written before it was kept simply lack the field, so no migration is needed for it, and an
older Lookout reading the file ignores it.

At start the file is checked (``PRAGMA quick_check``: a corrupted page stops the start with a
clear error instead of failing pings and pages later), migrated, and its facts are loaded;
afterwards reads of the state are memory only. A facts row that cannot be read is moved to
``quarantine`` (logged and counted) and its heartbeat starts afresh, keeping its ping numbers.
Kept pings are read on a read-only connection per call, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Facts, Instances, Ping, Signal, Track
from exporter.heartbeats.store import (
    KEEP_PINGS,
    MAX_BATCH,
    Folded,
    Pending,
    StoredPing,
    StoreError,
    StoreHealth,
    declarations,
    fold,
)
from exporter.maintenance import Scheduled

__all__ = ["DB_FILE", "SCHEMA_VERSION", "SqliteStore"]

log = logging.getLogger(__name__)

DB_FILE = "heartbeats.sqlite"
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heartbeat (
    name TEXT PRIMARY KEY,
    facts TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ping (
    heartbeat TEXT NOT NULL,
    slot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    signal TEXT NOT NULL,
    rid TEXT,
    instance TEXT,
    exit_code INTEGER,
    duration REAL,
    body BLOB NOT NULL,
    PRIMARY KEY (heartbeat, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS instance (
    heartbeat TEXT NOT NULL,
    name TEXT NOT NULL,
    last_ping_at REAL NOT NULL,
    track TEXT NOT NULL,
    PRIMARY KEY (heartbeat, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    heartbeat TEXT NOT NULL,
    kind TEXT NOT NULL,
    content TEXT,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS maintenance (
    id TEXT PRIMARY KEY,
    until REAL NOT NULL,
    window TEXT NOT NULL
) WITHOUT ROWID;
"""

# Per heartbeat in :after (a JSON array of [name, seq] pairs), its newest fail after that seq.
# The search reads only the small leading columns of each row (the body is the last column); the
# chosen pings are then fetched by primary key (a ping's slot is its seq modulo the ring size).
_LATEST_FAILURES = """
WITH wanted AS (
    SELECT json_extract(value, '$[0]') AS heartbeat, json_extract(value, '$[1]') AS after
    FROM json_each(:after)
), newest AS (
    SELECT ping.heartbeat, MAX(ping.seq) AS seq
    FROM wanted JOIN ping ON ping.heartbeat = wanted.heartbeat AND ping.seq > wanted.after
    WHERE ping.signal = :fail GROUP BY ping.heartbeat
)
SELECT ping.heartbeat, ping.seq, at, signal, rid, instance, exit_code, duration, body
FROM newest JOIN ping ON ping.heartbeat = newest.heartbeat AND ping.slot = newest.seq % :keep
"""


@dataclass(slots=True)
class _Check:
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Save:
    """A run-time maintenance window to write, and the closing time before which to forget."""

    window: Scheduled
    forget_before: float
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Declare:
    """The heartbeats a config declares, and when."""

    names: frozenset[str]
    at: float
    future: asyncio.Future[None]


_Work = Pending | _Check | _Save | _Declare
_Item = _Work | None


class SqliteStore:
    """Open with ``SqliteStore.open(directory)``, then ``start()`` on the loop and
    ``await close()``."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        facts: dict[str, Facts],
        books: dict[str, Instances],
        health: StoreHealth,
        maintenance: dict[str, Scheduled] | None = None,
    ) -> None:
        self.path = path
        self.health = health
        self._connection = connection
        self._maintenance: dict[str, Scheduled] = maintenance or {}
        # Published facts and instances: changed on the event loop only, after their commit.
        self._facts: dict[str, Facts] = facts
        self._books = books
        # The writer thread's copies, which its next batch builds on.
        self._working = dict(facts)
        self._working_books = {name: Instances(dict(book.items())) for name, book in books.items()}
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set once the writer has stopped; guarded by the lock so that no ping is queued after.
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def open(cls, directory: Path) -> SqliteStore:
        """Create or open the store in ``directory``; raises ``StoreError`` with the reason."""
        path = directory / DB_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create storage directory {str(directory)!r}: {exc.strerror}"
            ) from None
        connection: sqlite3.Connection | None = None
        health = StoreHealth("sqlite")
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            facts, books, maintenance = _prepare(connection, path, health)
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
            raise StoreError(f"cannot use heartbeat store {str(path)!r}: {exc}") from None
        except StoreError:
            if connection is not None:
                connection.close()
            raise
        return cls(path, connection, facts, books, health, maintenance)

    @property
    def facts(self) -> Mapping[str, Facts]:
        return self._facts

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    def describe(self) -> str:
        return str(self.path)

    def instances(self, heartbeat: str) -> Instances | None:
        return self._books.get(heartbeat)

    @property
    def maintenance(self) -> Mapping[str, Scheduled]:
        return self._maintenance

    async def save_maintenance(self, window: Scheduled, forget_before: float) -> None:
        if self._loop is None:
            raise StoreError("the heartbeat store is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(_Save(window, forget_before, future))
        await future

    async def declare(self, names: Collection[str], at: float) -> None:
        if self._loop is None:
            raise StoreError("the heartbeat store is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(_Declare(frozenset(names), at, future))
        await future

    def start(self) -> None:
        """Start the writer thread; pings are accepted from the running event loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._write, name="heartbeat-store", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._thread is not None:
            with contextlib.suppress(StoreError):  # unless it has stopped already
                self._enqueue(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._connection.close()

    async def record(self, ping: Ping, spec: Heartbeat) -> Facts:
        if self._loop is None:
            raise StoreError("the heartbeat store is not running")
        future: asyncio.Future[Facts] = self._loop.create_future()
        self._enqueue(Pending(ping, spec, future))
        return await future

    async def check(self) -> None:
        if self._loop is None:
            raise StoreError("the heartbeat store is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        self._enqueue(_Check(future))
        await future

    async def recent(self, heartbeat: str, limit: int = KEEP_PINGS) -> list[StoredPing]:
        rows = await self._read(
            "SELECT seq, at, signal, rid, instance, exit_code, duration, body FROM ping "
            "WHERE heartbeat = ? ORDER BY seq DESC LIMIT ?",
            (heartbeat, limit),
        )
        return [_stored(*row) for row in rows]

    async def latest_failures(self, after: Mapping[str, int]) -> dict[str, StoredPing]:
        """One query on one connection, whatever the number of heartbeats."""
        if not after:
            return {}
        parameters = {
            "after": json.dumps(list(after.items())),
            "fail": str(Signal.FAIL),
            "keep": KEEP_PINGS,
        }
        rows = await self._read(_LATEST_FAILURES, parameters)
        return {heartbeat: _stored(*row) for heartbeat, *row in rows}

    async def _read(
        self, sql: str, parameters: tuple[object, ...] | Mapping[str, object]
    ) -> list[Any]:
        try:
            return await asyncio.to_thread(self._query, sql, parameters)
        except sqlite3.Error as exc:
            self.health.errors += 1
            raise StoreError(f"cannot read heartbeat store {str(self.path)!r}: {exc}") from None

    def _query(self, sql: str, parameters: tuple[object, ...] | Mapping[str, object]) -> list[Any]:
        with self._reading() as db:
            return db.execute(sql, parameters).fetchall()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the file, closed afterwards (the writer's stays its own)."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            yield db

    def _enqueue(self, item: _Item) -> None:
        with self._lock:
            if self._stopped:
                raise StoreError(f"the writer of heartbeat store {str(self.path)!r} has stopped")
            self._queue.put(item)

    def _write(self) -> None:
        try:
            self._write_batches()
        finally:
            with self._lock:
                self._stopped = True
            self._fail_queued()

    def _write_batches(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception as exc:  # never let one batch stop the writer
                log.exception("heartbeat store batch failed")
                self._settle_failed(batch, StoreError(f"heartbeat store batch failed: {exc}"))

    def _fail_queued(self) -> None:
        error = StoreError(f"the writer of heartbeat store {str(self.path)!r} has stopped")
        pending: list[_Work] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                pending.append(item)
        if pending:
            self._settle_failed(pending, error)

    def _commit(self, batch: list[_Work]) -> None:
        pings = [item for item in batch if isinstance(item, Pending)]
        checks = [item for item in batch if isinstance(item, _Check)]
        saves = [item for item in batch if isinstance(item, _Save)]
        declares = [item for item in batch if isinstance(item, _Declare)]
        folded = fold(
            pings,
            lambda name: self._working.get(name) or Facts(),
            lambda name: self._working_books.get(name) or Instances(),
        )
        added: dict[str, Facts] = {}
        gone: list[str] = []
        if declares:  # each names every declared heartbeat: the latest one decides
            latest = declares[-1]
            added, gone = declarations(latest.names, latest.at, {**self._working, **folded.facts})
        try:
            self._transaction(folded, bool(checks), saves, added, gone)
        except sqlite3.Error as exc:
            self._settle_failed(
                batch, StoreError(f"cannot write heartbeat store {str(self.path)!r}: {exc}")
            )
            return
        self._working.update(folded.facts)
        self._working.update(added)
        for name in gone:
            self._working.pop(name, None)
        folded.apply_instances(self._working_books)
        assert self._loop is not None
        settled: list[_Check | _Save | _Declare] = [*checks, *saves, *declares]
        self._loop.call_soon_threadsafe(self._publish, pings, settled, folded, saves, (added, gone))

    def _transaction(
        self,
        folded: Folded,
        check: bool,
        saves: list[_Save],
        added: Mapping[str, Facts],
        gone: list[str],
    ) -> None:
        db = self._connection
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO ping VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", folded.pings
            )
            db.executemany(
                "INSERT OR REPLACE INTO heartbeat VALUES (?, ?)",
                [(name, json.dumps(f.to_json())) for name, f in folded.facts.items()],
            )
            changed = [(k, t) for k, t in folded.instances.items() if t is not None]
            db.executemany(
                "INSERT OR REPLACE INTO instance VALUES (?, ?, ?, ?)",
                [(h, n, t.last_ping_at, json.dumps(t.to_json())) for (h, n), t in changed],
            )
            db.executemany(
                "DELETE FROM instance WHERE heartbeat = ? AND name = ?",
                [key for key, t in folded.instances.items() if t is None],
            )
            db.executemany(
                "INSERT OR IGNORE INTO heartbeat VALUES (?, ?)",
                [(name, json.dumps(f.to_json())) for name, f in added.items()],
            )
            db.executemany("DELETE FROM heartbeat WHERE name = ?", [(name,) for name in gone])
            if check:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('checked_at', ?)", (time.time(),))
            for save in saves:
                window = save.window
                db.execute(
                    "INSERT OR REPLACE INTO maintenance VALUES (?, ?, ?)",
                    (window.id, window.until, json.dumps(window.to_json())),
                )
                db.execute("DELETE FROM maintenance WHERE until < ?", (save.forget_before,))
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls a transaction back by itself after some errors (a full disk among
            # them): a second ROLLBACK would then fail and hide the error that matters.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def _settle_failed(self, batch: list[_Work], error: StoreError) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._fail, batch, error)

    def _fail(self, batch: list[_Work], error: StoreError) -> None:
        """On the loop: a failed commit, each of its pings answered with ``error``."""
        self.health.errors += 1
        self.health.failed(batch, error)

    def _publish(
        self,
        pings: list[Pending],
        settled: list[_Check | _Save | _Declare],
        folded: Folded,
        saves: list[_Save],
        declared: tuple[dict[str, Facts], list[str]],
    ) -> None:
        """On the loop: a committed batch becomes visible and its pings are answered."""
        self._facts.update(folded.facts)
        added, gone = declared
        self._facts.update(added)
        for name in gone:
            self._facts.pop(name, None)
        if saves:
            windows = dict(self._maintenance)
            for save in saves:
                windows[save.window.id] = save.window
                windows = {k: w for k, w in windows.items() if w.until >= save.forget_before}
            self._maintenance = windows
        folded.apply_instances(self._books)
        self.health.errors += folded.failures
        self.health.committed({"path": str(self.path)})
        folded.answer(pings)
        for waiting in settled:
            if not waiting.future.done():
                waiting.future.set_result(None)


def _stored(*row: Any) -> StoredPing:
    seq, at, signal, rid, instance, exit_code, duration, body = row
    return StoredPing(seq, at, Signal(signal), rid, instance, exit_code, duration, bytes(body))


def _prepare(
    connection: sqlite3.Connection, path: Path, health: StoreHealth
) -> tuple[dict[str, Facts], dict[str, Instances], dict[str, Scheduled]]:
    """Check, migrate and read the database: integrity, WAL mode, full sync, schema, facts."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"heartbeat store {str(path)!r} has schema version {version}, "
            f"newer than this Lookout understands ({SCHEMA_VERSION})"
        )
    problems = [" ".join(row[0].split()) for row in connection.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(
            f"heartbeat store {str(path)!r} is corrupted ({'; '.join(problems)}): restore a "
            f"backup, or recover what is readable with: sqlite3 {path} .recover"
        )
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"heartbeat store {str(path)!r}: cannot switch to WAL mode (got {mode})")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):  # executescript would commit first
            if statement.strip():
                connection.execute(statement)
        if version == 1:
            _move_instances_out_of_facts(connection)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        facts = _load_facts(connection, path, health)
        books = _load_instances(connection, path, health)
        maintenance = _load_maintenance(connection, path, health)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
    return facts, books, maintenance


def _move_instances_out_of_facts(connection: sqlite3.Connection) -> None:
    """Schema 1 kept the instance tracks inside each heartbeat's facts."""
    for name, text in connection.execute("SELECT name, facts FROM heartbeat").fetchall():
        try:
            data = json.loads(text)
            instances = data.pop("instances", None) or {}
        except (ValueError, AttributeError):
            continue  # quarantined when the facts are loaded
        for instance, track in instances.items():
            connection.execute(
                "INSERT OR REPLACE INTO instance VALUES (?, ?, ?, ?)",
                (name, instance, track.get("last_ping_at") or 0.0, json.dumps(track)),
            )
        connection.execute(
            "UPDATE heartbeat SET facts = ? WHERE name = ?", (json.dumps(data), name)
        )


def _quarantine(
    connection: sqlite3.Connection,
    path: Path,
    health: StoreHealth,
    heartbeat: str,
    kind: str,
    content: str,
    error: str,
) -> None:
    connection.execute(
        "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)",
        (heartbeat, kind, content, error, time.time()),
    )
    health.quarantined += 1
    log.error(
        "damaged heartbeat row quarantined",
        extra={"path": str(path), "heartbeat": heartbeat, "row": kind, "error": error},
    )


def _load_facts(
    connection: sqlite3.Connection, path: Path, health: StoreHealth
) -> dict[str, Facts]:
    facts: dict[str, Facts] = {}
    for name, text in connection.execute("SELECT name, facts FROM heartbeat").fetchall():
        try:
            facts[name] = Facts.from_json(json.loads(text))
        except (ValueError, TypeError) as exc:
            _quarantine(connection, path, health, name, "facts", str(text), str(exc))
            # Starts afresh, numbering its pings after those kept, so the ring stays in order.
            seq = connection.execute(
                "SELECT coalesce(max(seq), 0) FROM ping WHERE heartbeat = ?", (name,)
            ).fetchone()[0]
            facts[name] = Facts(seq=seq)
            connection.execute(
                "UPDATE heartbeat SET facts = ? WHERE name = ?",
                (json.dumps(facts[name].to_json()), name),
            )
    return facts


def _load_instances(
    connection: sqlite3.Connection, path: Path, health: StoreHealth
) -> dict[str, Instances]:
    books: dict[str, Instances] = {}
    rows = connection.execute(
        "SELECT heartbeat, name, track FROM instance ORDER BY last_ping_at"
    ).fetchall()
    for heartbeat, name, text in rows:
        try:
            track = Track.from_json(json.loads(text))
        except (ValueError, TypeError) as exc:
            _quarantine(
                connection, path, health, heartbeat, f"instance {name}", str(text), str(exc)
            )
            connection.execute(
                "DELETE FROM instance WHERE heartbeat = ? AND name = ?", (heartbeat, name)
            )
            continue
        books.setdefault(heartbeat, Instances()).put(name, track)
    return books


def _load_maintenance(
    connection: sqlite3.Connection, path: Path, health: StoreHealth
) -> dict[str, Scheduled]:
    """The run-time maintenance windows; a damaged row is quarantined and dropped."""
    windows: dict[str, Scheduled] = {}
    for window_id, text in connection.execute("SELECT id, window FROM maintenance").fetchall():
        try:
            windows[window_id] = Scheduled.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            _quarantine(connection, path, health, window_id, "maintenance", str(text), repr(exc))
            connection.execute("DELETE FROM maintenance WHERE id = ?", (window_id,))
    return windows
