"""The durable heartbeat store: SQLite in WAL mode, written by one thread with group commit.

A ping is acknowledged only after the transaction holding it is committed (``synchronous=FULL``,
so also after a power loss). One writer thread takes every ping that queued up while its previous
commit ran and commits them together: one fsync for hundreds of pings under load, a few
milliseconds of latency when idle, and the event loop never waits on the disk.

Two tables: ``heartbeat`` holds each heartbeat's folded ``Facts`` (JSON, rewritten in the same
transaction as its pings), ``ping`` the latest ``KEEP_PINGS`` pings of each heartbeat with their
kept bodies, as a ring (slot = sequence number modulo ``KEEP_PINGS``), so the file stays bounded.
The facts are loaded once at startup; afterwards reads of the state are memory only. Kept pings
are read from the file (``recent``, ``latest_failures``) on a read-only connection per call, so
callers run them in a worker thread; ``latest_failures`` answers for many heartbeats at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.heartbeats.state import Facts, Ping, Signal

__all__ = ["DB_FILE", "KEEP_PINGS", "MAX_BATCH", "Store", "StoreError", "StoredPing"]

log = logging.getLogger(__name__)

DB_FILE = "heartbeats.sqlite"
KEEP_PINGS = 100
MAX_BATCH = 4096
SCHEMA_VERSION = 1

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


class StoreError(Exception):
    """The store cannot be opened or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class StoredPing:
    seq: int
    at: float
    signal: Signal
    rid: str | None
    instance: str | None
    exit_code: int | None
    duration: float | None
    body: bytes


_Item = tuple[Ping, int, "asyncio.Future[Facts]"]


class Store:
    """Open with ``Store.open(directory)``, then ``start()`` on the loop and ``await close()``."""

    def __init__(self, path: Path, connection: sqlite3.Connection, facts: dict[str, Facts]):
        self.path = path
        self._connection = connection
        # Published facts: changed on the event loop only, after their pings were committed.
        self.facts: dict[str, Facts] = facts
        # The writer thread's copy, which its next batch builds on.
        self._working = dict(facts)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Whether the latest commit failed: writes failing and recovering are logged once each.
        self._failing = False

    @classmethod
    def open(cls, directory: Path) -> Store:
        """Create or open the store in ``directory``; raises ``StoreError`` with the reason."""
        path = directory / DB_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create storage directory {str(directory)!r}: {exc.strerror}"
            ) from None
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            facts = _prepare(connection, path)
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
            raise StoreError(f"cannot use heartbeat store {str(path)!r}: {exc}") from None
        except StoreError:
            if connection is not None:
                connection.close()
            raise
        return cls(path, connection, facts)

    def start(self) -> None:
        """Start the writer thread; pings are accepted from the running event loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._write, name="heartbeat-store", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._connection.close()

    async def record(self, ping: Ping, max_instances: int) -> Facts:
        """The heartbeat's facts with ``ping`` applied, once the ping is committed to disk."""
        if self._loop is None or self._thread is None:
            raise StoreError("the heartbeat store is not running")
        future: asyncio.Future[Facts] = self._loop.create_future()
        self._queue.put((ping, max_instances, future))
        return await future

    def recent(self, heartbeat: str, limit: int = KEEP_PINGS) -> list[StoredPing]:
        """The latest pings of ``heartbeat``, newest first (reads the file: call off the loop)."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT seq, at, signal, rid, instance, exit_code, duration, body FROM ping "
                "WHERE heartbeat = ? ORDER BY seq DESC LIMIT ?",
                (heartbeat, limit),
            ).fetchall()
        return [_stored(*row) for row in rows]

    def latest_failures(self, after: Mapping[str, int]) -> dict[str, StoredPing]:
        """For each heartbeat in ``after``, its newest kept ``fail`` ping with a sequence number
        above the one given; heartbeats without one are left out. One query on one connection,
        whatever the number of heartbeats (reads the file: call off the loop)."""
        parameters = {
            "after": json.dumps(list(after.items())),
            "fail": str(Signal.FAIL),
            "keep": KEEP_PINGS,
        }
        with self._reading() as db:
            rows = db.execute(_LATEST_FAILURES, parameters).fetchall()
        return {heartbeat: _stored(*row) for heartbeat, *row in rows}

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the file, closed afterwards (the writer's stays its own)."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            yield db

    def _write(self) -> None:
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
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        assert self._loop is not None
        changed: dict[str, Facts] = {}
        results: list[Facts] = []
        rows = []
        for ping, max_instances, _ in batch:
            name = ping.heartbeat
            facts = changed.get(name) or self._working.get(name) or Facts()
            facts = facts.apply(ping, max_instances)
            changed[name] = facts
            results.append(facts)
            rows.append(
                (
                    name,
                    facts.seq % KEEP_PINGS,
                    facts.seq,
                    ping.at,
                    str(ping.signal),
                    ping.rid,
                    ping.instance,
                    ping.exit_code,
                    facts.last_duration if ping.signal is not Signal.START else None,
                    ping.body,
                )
            )
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.executemany(
                    "INSERT OR REPLACE INTO ping VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._connection.executemany(
                    "INSERT OR REPLACE INTO heartbeat VALUES (?, ?)",
                    [(name, json.dumps(f.to_json())) for name, f in changed.items()],
                )
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            error = StoreError(f"cannot write heartbeat store {str(self.path)!r}: {exc}")
            if not self._failing:
                log.error("heartbeat pings not stored", extra={"error": str(error)})
                self._failing = True
            self._loop.call_soon_threadsafe(_fail, batch, error)
            return
        if self._failing:
            log.warning("heartbeat pings stored again", extra={"path": str(self.path)})
            self._failing = False
        self._working.update(changed)
        self._loop.call_soon_threadsafe(self._publish, batch, results, changed)

    def _publish(
        self, batch: list[_Item], results: list[Facts], changed: Mapping[str, Facts]
    ) -> None:
        self.facts.update(changed)
        for (_, _, future), facts in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(facts)


def _stored(
    seq: int,
    at: float,
    signal: str,
    rid: str | None,
    instance: str | None,
    exit_code: int | None,
    duration: float | None,
    body: bytes,
) -> StoredPing:
    return StoredPing(seq, at, Signal(signal), rid, instance, exit_code, duration, bytes(body))


def _fail(batch: list[_Item], error: StoreError) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)


def _prepare(connection: sqlite3.Connection, path: Path) -> dict[str, Facts]:
    """Check, migrate and read the database: WAL mode, full sync, schema, all stored facts."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"heartbeat store {str(path)!r} has schema version {version}, "
            f"newer than this Lookout understands ({SCHEMA_VERSION})"
        )
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"heartbeat store {str(path)!r}: cannot switch to WAL mode (got {mode})")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(
        f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )
    facts: dict[str, Facts] = {}
    for name, text in connection.execute("SELECT name, facts FROM heartbeat"):
        try:
            facts[name] = Facts.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"heartbeat store {str(path)!r} is damaged: facts of {name!r} unreadable ({exc})"
            ) from None
    return facts
