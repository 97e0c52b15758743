"""The shared heartbeat store: PostgreSQL, for several replicas that must agree.

Every replica writes into, and reads from, the same tables, so all of them export the same
status, deadline, durations and exit codes whichever pod received each ping, and a ``/start``
on one pod pairs with its finish on another (``rid``). The contract is SQLite's: a ping is
answered only after the transaction holding it committed, and one writer task per process
commits every ping that queued up meanwhile in one transaction (group commit).

A commit locks the rows of the batch's heartbeats (``SELECT ... FOR UPDATE``, in name order, so
replicas never deadlock), folds the pings into the facts it read, and writes facts, pings and
instance tracks back, with a ``NOTIFY`` naming the heartbeats it changed: two round trips
in libpq's pipeline mode (the reads, then the writes with the commit), binary parameters.
Each replica listens and re-reads those heartbeats at once, and compares all sequence numbers every
``REFRESH_SECONDS`` in case a notification was missed: what a replica exports is normally
milliseconds behind the database, and at most ``REFRESH_SECONDS`` (plus a query). A replica
skips the notifications sent by its own connections (PostgreSQL names the sending backend):
it published what it committed already; a commit whose outcome it did not see (a failed or
timed-out batch or declaration) has its heartbeats re-read instead.

Run-time maintenance windows live in ``lookout_maintenance``; a replica that writes one sends a
``NOTIFY`` on ``MAINTENANCE_CHANNEL`` and every replica re-reads the table at once (and with
every full comparison), so all of them silence the same targets.

A declared heartbeat that never pinged has a ``lookout_heartbeat`` row with ``seq`` 0 and facts
holding only when it was declared (``Facts.declared_at``, inserted only where no facts exist, so
the first replica to declare a heartbeat sets it); facts written before that field existed
lack it, which readers accept, so it needs no migration.

Schema changes are versioned migrations applied at start under an advisory lock, so replicas
starting together apply each one once. When the database is unreachable pings fail with
``StoreError`` (answered 503) after at most ``POOL_TIMEOUT`` seconds, the store is down (the
service turns readiness false and checks it again every few seconds), and it recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from exporter.heartbeats.spec import Heartbeat, PostgresStorage
from exporter.heartbeats.state import Facts, Instances, Ping, Signal, Track
from exporter.heartbeats.store import (
    KEEP_PINGS,
    MAX_BATCH,
    Folded,
    Pending,
    StoredPing,
    StoreError,
    StoreHealth,
    fold,
)
from exporter.maintenance import Scheduled

__all__ = [
    "CHANNEL",
    "MAINTENANCE_CHANNEL",
    "MIGRATIONS",
    "POOL_TIMEOUT",
    "REFRESH_SECONDS",
    "PostgresStore",
]

log = logging.getLogger(__name__)

CHANNEL = "lookout_heartbeats"
MAINTENANCE_CHANNEL = "lookout_maintenance"
# Seconds between full comparisons of every heartbeat's sequence number with the database.
REFRESH_SECONDS = 5.0
# Seconds a ping waits for a connection while the database is up (1 once it is known down).
POOL_TIMEOUT = 5.0
# Seconds one commit may take before its pings fail.
COMMIT_TIMEOUT = 15.0
# Seconds to open the store at start.
OPEN_TIMEOUT = 15.0
# Seconds closing waits for the background tasks and the pool.
STOP_SECONDS = 5.0
# NOTIFY payloads are limited to 8000 bytes: larger batches ask for a full comparison ("*").
NOTIFY_LIMIT = 7000
POOL_SIZE = 4
# Arbitrary constant of the advisory lock serialising migrations among replicas.
MIGRATION_LOCK = 0x6C6F6F6B6F7574

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE lookout_heartbeat (
        name text PRIMARY KEY,
        seq bigint NOT NULL DEFAULT 0,
        facts text
    );
    CREATE TABLE lookout_ping (
        heartbeat text NOT NULL,
        slot integer NOT NULL,
        seq bigint NOT NULL,
        at double precision NOT NULL,
        signal text NOT NULL,
        rid text,
        instance text,
        exit_code integer,
        duration double precision,
        body bytea NOT NULL,
        PRIMARY KEY (heartbeat, slot)
    );
    CREATE TABLE lookout_instance (
        heartbeat text NOT NULL,
        name text NOT NULL,
        seq bigint NOT NULL,
        last_ping_at double precision NOT NULL,
        track text NOT NULL,
        PRIMARY KEY (heartbeat, name)
    );
    CREATE INDEX lookout_instance_changes ON lookout_instance (heartbeat, seq);
    CREATE TABLE lookout_quarantine (
        heartbeat text NOT NULL,
        kind text NOT NULL,
        content text,
        error text NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2: run-time maintenance windows.
    """
    CREATE TABLE lookout_maintenance (
        id text PRIMARY KEY,
        until double precision NOT NULL,
        "window" text NOT NULL
    );
    """,
)

_LATEST_FAILURES = """
SELECT DISTINCT ON (p.heartbeat)
    p.heartbeat, p.seq, p.at, p.signal, p.rid, p.instance, p.exit_code, p.duration, p.body
FROM lookout_ping p
JOIN unnest(%b::text[], %b::bigint[]) AS w(heartbeat, after)
    ON p.heartbeat = w.heartbeat AND p.seq > w.after
WHERE p.signal = %s
ORDER BY p.heartbeat, p.seq DESC
"""

# A batch's pings and facts, and the notification naming its heartbeats, in one statement (each
# statement is a round of the pipeline: sent, awaited, its result read).
_WRITE_BATCH = """
WITH pings AS (
    INSERT INTO lookout_ping
    SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[], %b::float8[], %b::text[],
                         %b::text[], %b::text[], %b::int[], %b::float8[], %b::bytea[])
    ON CONFLICT (heartbeat, slot) DO UPDATE SET
        seq = excluded.seq, at = excluded.at, signal = excluded.signal, rid = excluded.rid,
        instance = excluded.instance, exit_code = excluded.exit_code,
        duration = excluded.duration, body = excluded.body
), facts AS (
    UPDATE lookout_heartbeat h SET seq = u.seq, facts = u.facts
    FROM unnest(%b::text[], %b::bigint[], %b::text[]) AS u(name, seq, facts)
    WHERE h.name = u.name
)
SELECT pg_notify(%s, %s)
"""

# json.dumps' output, without its check for reference cycles (facts have none).
_encode = json.JSONEncoder(check_circular=False).encode

# The batch's heartbeat rows, locked in name order so that replicas never deadlock.
_LOCK_FACTS = (
    "SELECT name, facts FROM lookout_heartbeat WHERE name = ANY(%b) ORDER BY name FOR UPDATE"
)

_WRITE_INSTANCES = """
INSERT INTO lookout_instance
SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::float8[], %b::text[])
ON CONFLICT (heartbeat, name) DO UPDATE SET
    seq = excluded.seq, last_ping_at = excluded.last_ping_at, track = excluded.track
"""


class PostgresStore:
    """Open with ``await PostgresStore.open(settings)``, then ``start()`` and ``await close()``."""

    def __init__(self, settings: PostgresStorage, pool: AsyncConnectionPool) -> None:
        self.health = StoreHealth("postgresql")
        self._settings = settings
        self._described: str | None = None
        self._pool = pool
        self._facts: dict[str, Facts] = {}
        self._books: dict[str, Instances] = {}
        self._maintenance: dict[str, Scheduled] = {}
        self._maintenance_dirty = False
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        # Bumped by every declaration once applied: a refresh that read the database before
        # a declaration applied its rows may hold rows the declaration replaced or deleted.
        self._declarations = 0
        # hash() of the facts text behind each published Facts: rows read back unchanged (a
        # replica's own writes, read again by a refresh) are neither parsed nor published again.
        self._texts: dict[str, int] = {}
        # Backend pid -> the pooled connection that has it, for the connections this store
        # wrote heartbeats with: what their notifications announce is published already.
        self._writers: dict[int, psycopg.AsyncConnection[TupleRow]] = {}

    @classmethod
    async def open(cls, settings: PostgresStorage) -> PostgresStore:
        """Connect, migrate and load every heartbeat; raises ``StoreError`` with the reason."""
        pool = AsyncConnectionPool(
            settings.url,
            kwargs=_connect_kwargs(settings),
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=POOL_TIMEOUT,
            check=AsyncConnectionPool.check_connection,
            name="lookout-heartbeats",
        )
        store = cls(settings, pool)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                # One connection first: a wrong address or password fails at once, with
                # libpq's own words, where the pool would retry until its timeout.
                first = await psycopg.AsyncConnection.connect(
                    settings.url, **_connect_kwargs(settings)
                )
                await first.close()
                await pool.open(wait=True, timeout=OPEN_TIMEOUT)
                await store._migrate()
                await store._refresh(None)
                await store._read_maintenance()
        except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
            await pool.close()
            raise StoreError(
                f"cannot use heartbeat store {store.describe()}: {_reason(exc)}"
            ) from None
        return store

    @property
    def facts(self) -> Mapping[str, Facts]:
        return self._facts

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._tasks[0].done() and not self._stopped

    def describe(self) -> str:
        if self._described is None:  # parsed once: every commit names the store
            info = psycopg.conninfo.conninfo_to_dict(self._settings.url)
            where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
            self._described = f"postgresql://{where}/{info.get('dbname', '')}"
        return self._described

    def instances(self, heartbeat: str) -> Instances | None:
        return self._books.get(heartbeat)

    @property
    def maintenance(self) -> Mapping[str, Scheduled]:
        return self._maintenance

    async def declare(self, names: Collection[str], at: float) -> None:
        declared = sorted(names)
        fresh = json.dumps(Facts(declared_at=at).to_json())
        try:
            added, gone = await self._declare(declared, fresh)
        except BaseException:
            # It may have committed all the same: read what the database holds.
            self._request(json.dumps(sorted({*declared, *self._facts})))
            raise
        for name, text in added:
            # Just written, so newer than anything a refresh published meanwhile (same seq).
            facts = Facts.from_json(json.loads(text))
            published = self._facts.get(name)
            if published is None or facts.seq >= published.seq:
                self._put(name, facts, text)
        for name in gone:
            self._forget(name)
        self._declarations += 1

    async def _declare(self, declared: list[str], fresh: str) -> tuple[list[Any], list[str]]:
        """The declaration's transaction: the (name, facts) rows added, the names forgotten."""
        async with self._connection() as db, db.transaction():
            self._wrote_with(db)
            cursor = await db.execute(
                "INSERT INTO lookout_heartbeat (name, seq, facts) "
                "SELECT n, 0, %s FROM unnest(%b::text[]) AS n ORDER BY n "
                "ON CONFLICT (name) DO UPDATE SET facts = excluded.facts "
                "WHERE lookout_heartbeat.facts IS NULL RETURNING name, facts",
                (fresh, declared),
            )
            added = await cursor.fetchall()
            cursor = await db.execute(
                "DELETE FROM lookout_heartbeat WHERE seq = 0 AND NOT (name = ANY(%b)) "
                "RETURNING name",
                (declared,),
            )
            gone = [name for (name,) in await cursor.fetchall()]
            changed = sorted({*(name for name, _ in added), *gone})
            if changed:
                payload = json.dumps(changed)
                await db.execute(
                    "SELECT pg_notify(%s, %s)",
                    (CHANNEL, payload if len(payload) < NOTIFY_LIMIT else "*"),
                )
        return added, gone

    def _wrote_with(self, db: psycopg.AsyncConnection[TupleRow]) -> None:
        """Note ``db`` as one of this store's writing connections (forgetting closed ones)."""
        writers = {pid: c for pid, c in self._writers.items() if not c.closed}
        writers[db.info.backend_pid] = db
        self._writers = writers

    def _sent_by_self(self, pid: int) -> bool:
        """Whether a notification from backend ``pid`` came from one of this store's open
        writing connections."""
        db = self._writers.get(pid)
        return db is not None and not db.closed

    def _forget(self, name: str) -> None:
        """Drop a heartbeat that never pinged and is no longer declared."""
        published = self._facts.get(name)
        if published is not None and published.seq == 0:
            del self._facts[name]
            self._texts.pop(name, None)

    async def save_maintenance(self, window: Scheduled, forget_before: float) -> None:
        async with self._connection() as db, db.transaction():
            await db.execute(
                'INSERT INTO lookout_maintenance (id, until, "window") VALUES (%s, %s, %s) '
                "ON CONFLICT (id) DO UPDATE SET "
                'until = excluded.until, "window" = excluded."window"',
                (window.id, window.until, json.dumps(window.to_json())),
            )
            await db.execute("DELETE FROM lookout_maintenance WHERE until < %s", (forget_before,))
            await db.execute("SELECT pg_notify(%s, %s)", (MAINTENANCE_CHANNEL, window.id))
        windows = dict(self._maintenance)
        windows[window.id] = window
        self._maintenance = {k: w for k, w in windows.items() if w.until >= forget_before}

    async def _read_maintenance(self) -> None:
        """Publish the windows in the database, if they differ from those published."""
        async with self._pool.connection(timeout=POOL_TIMEOUT) as db:
            cursor = await db.execute('SELECT id, "window" FROM lookout_maintenance')
            rows = await cursor.fetchall()
        windows: dict[str, Scheduled] = {}
        for window_id, text in rows:
            try:
                windows[window_id] = Scheduled.from_json(json.loads(text))
            except (ValueError, TypeError, KeyError):
                log.error(
                    "damaged maintenance window ignored",
                    extra={"store": self.describe(), "window": window_id},
                )
        if windows != self._maintenance:
            self._maintenance = windows

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write(), name="heartbeat-store-writer"),
            loop.create_task(self._listen(), name="heartbeat-store-listener"),
            loop.create_task(self._refresh_periodically(), name="heartbeat-store-refresh"),
        ]

    async def close(self) -> None:
        """Commit what is queued, stop the tasks and close the connections."""
        self._stopped = True
        if self._tasks:
            await self._queue.put(None)
            await self._tasks[0]
            # The listener and the refresher see the stop within a second and end by
            # themselves (cancelling a query in flight can wait on the server).
            self._wake.set()
            _, late = await asyncio.wait(self._tasks[1:], timeout=STOP_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            self._tasks = []
        await self._pool.close(timeout=STOP_SECONDS)

    async def record(self, ping: Ping, spec: Heartbeat) -> Facts:
        if not self.running:
            raise StoreError(f"the writer of heartbeat store {self.describe()} has stopped")
        future: asyncio.Future[Facts] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(ping, spec, future))
        return await future

    async def check(self) -> None:
        async with self._connection() as db:
            cursor = await db.execute("SELECT pg_is_in_recovery()")
            row = await cursor.fetchone()
        if row is not None and row[0]:
            raise StoreError(f"heartbeat store {self.describe()} is a read-only standby")
        if not self.health.up:
            log.warning("heartbeat store reachable again", extra={"store": self.describe()})
        self.health.up = True
        self._wake.set()

    async def recent(self, heartbeat: str, limit: int = KEEP_PINGS) -> list[StoredPing]:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT seq, at, signal, rid, instance, exit_code, duration, body "
                "FROM lookout_ping WHERE heartbeat = %s ORDER BY seq DESC LIMIT %s",
                (heartbeat, limit),
            )
            rows = await cursor.fetchall()
        return [_stored(row) for row in rows]

    async def latest_failures(self, after: Mapping[str, int]) -> dict[str, StoredPing]:
        if not after:
            return {}
        async with self._connection() as db:
            cursor = await db.execute(
                _LATEST_FAILURES, (list(after), list(after.values()), str(Signal.FAIL))
            )
            rows = await cursor.fetchall()
        return {row[0]: _stored(row[1:]) for row in rows}

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A pooled connection; every database error leaves as ``StoreError``, counted."""
        timeout = POOL_TIMEOUT if self.health.up else 1.0
        try:
            async with self._pool.connection(timeout=timeout) as db:
                yield db
        except (psycopg.Error, PoolTimeout) as exc:
            self.health.errors += 1
            raise StoreError(f"heartbeat store {self.describe()}: {_reason(exc)}") from None

    async def _migrate(self) -> None:
        async with self._pool.connection() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await db.execute("CREATE TABLE IF NOT EXISTS lookout_schema (version integer NOT NULL)")
            row = await (await db.execute("SELECT max(version) FROM lookout_schema")).fetchone()
            version = row[0] if row and row[0] is not None else 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"heartbeat store {self.describe()} has schema version {version}, "
                    f"newer than this Lookout understands ({len(MIGRATIONS)})"
                )
            for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                await db.execute(sql.encode())
                await db.execute("INSERT INTO lookout_schema VALUES (%s)", (number,))
                log.info("heartbeat store migrated", extra={"version": number})

    # -- writing --------------------------------------------------------------------------

    async def _write(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._commit(batch)
            except Exception as exc:  # never let one batch stop the writer
                if not isinstance(exc, StoreError):
                    log.exception("heartbeat store batch failed")
                    exc = StoreError(f"heartbeat store batch failed: {exc}")
                self.health.failed(batch, exc)
                # It may have committed all the same: read what the database holds.
                self._request(json.dumps(sorted({item.ping.heartbeat for item in batch})))

    async def _commit(self, batch: list[Pending]) -> None:
        for attempt in range(3):
            try:
                async with asyncio.timeout(COMMIT_TIMEOUT), self._connection() as db:
                    folded, texts = await self._transaction(db, batch)
                break
            except StoreError as exc:
                if attempt == 2 or "deadlock" not in str(exc):
                    raise
        self._publish(batch, folded, texts)

    async def _transaction(
        self, db: psycopg.AsyncConnection[TupleRow], batch: list[Pending]
    ) -> tuple[Folded, dict[str, str]]:
        """The batch folded into the locked rows, and the facts texts written, committed."""
        # Pipeline mode, with BEGIN and COMMIT among its statements and no Sync until the end:
        # the reads travel in one round trip and the writes with the commit in another, instead
        # of one per statement (a psycopg transaction block in a pipeline adds a Sync of its own).
        self._wrote_with(db)
        try:
            async with db.pipeline():
                await db.execute("BEGIN")
                folded, texts = await self._fold_locked(db, batch)
                await db.execute("COMMIT")
        except BaseException:
            # Not committed: the transaction must not stay open on the pooled connection.
            if not db.closed and db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    await db.rollback()
            raise
        return folded, texts

    async def _fold_locked(
        self, db: psycopg.AsyncConnection[TupleRow], batch: list[Pending]
    ) -> tuple[Folded, dict[str, str]]:
        """Lock the batch's rows, fold the batch into them and write the rows back."""
        names = sorted({item.ping.heartbeat for item in batch})
        keys = sorted({(i.ping.heartbeat, i.ping.instance) for i in batch if i.ping.instance})
        locked = await db.execute(_LOCK_FACTS, (names,))
        tracked = None
        if keys:
            tracked = await db.execute(
                "SELECT i.heartbeat, i.name, i.track FROM lookout_instance i "
                "JOIN unnest(%b::text[], %b::text[]) AS k(heartbeat, name) "
                "ON i.heartbeat = k.heartbeat AND i.name = k.name",
                ([h for h, _ in keys], [n for _, n in keys]),
            )
        rows = await locked.fetchall()
        if len(rows) < len(names):  # rows a declaration has not made yet: one more round trip
            found = {name for name, _ in rows}
            missing = [name for name in names if name not in found]
            await db.execute(
                "INSERT INTO lookout_heartbeat (name) SELECT n FROM unnest(%b::text[]) AS n "
                "ORDER BY n ON CONFLICT DO NOTHING",
                (missing,),
            )
            added = await db.execute(_LOCK_FACTS, (missing,))
            rows = sorted([*rows, *await added.fetchall()])
        current = await self._read_facts(db, rows)
        known: dict[tuple[str, str], Track] = {}
        if tracked is not None:
            for heartbeat, name, text in await tracked.fetchall():
                with contextlib.suppress(ValueError, TypeError):
                    known[(heartbeat, name)] = Track.from_json(json.loads(text))
        folded = fold(
            batch,
            lambda name: current.get(name) or Facts(),
            lambda name: self._books.get(name) or Instances(),
            lambda heartbeat, name: known.get((heartbeat, name)),
        )
        texts = {name: _encode(f.to_json()) for name, f in folded.facts.items()}
        await self._write_rows(db, folded, texts)
        return folded, texts

    async def _read_facts(
        self, db: psycopg.AsyncConnection[TupleRow], rows: Sequence[TupleRow]
    ) -> dict[str, Facts]:
        """The facts of locked rows; a damaged one is quarantined and its heartbeat restarts."""
        facts: dict[str, Facts] = {}
        for name, text in rows:
            if text is None:
                continue
            if self._texts.get(name) == hash(text):
                facts[name] = self._facts[name]
                continue
            try:
                facts[name] = Facts.from_json(json.loads(text))
            except (ValueError, TypeError) as exc:
                facts[name] = await self._quarantine(db, name, text, str(exc))
        return facts

    async def _quarantine(
        self, db: psycopg.AsyncConnection[TupleRow], name: str, text: str, error: str
    ) -> Facts:
        await db.execute(
            "INSERT INTO lookout_quarantine (heartbeat, kind, content, error) "
            "VALUES (%s, 'facts', %s, %s)",
            (name, text, error),
        )
        cursor = await db.execute(
            "SELECT coalesce(max(seq), 0) FROM lookout_ping WHERE heartbeat = %s", (name,)
        )
        row = await cursor.fetchone()
        self.health.quarantined += 1
        log.error(
            "damaged heartbeat row quarantined",
            extra={"store": self.describe(), "heartbeat": name, "row": "facts", "error": error},
        )
        fresh = Facts(seq=row[0] if row else 0)
        await db.execute(
            "UPDATE lookout_heartbeat SET seq = %s, facts = %s WHERE name = %s",
            (fresh.seq, json.dumps(fresh.to_json()), name),
        )
        return fresh

    async def _write_rows(
        self, db: psycopg.AsyncConnection[TupleRow], folded: Folded, texts: Mapping[str, str]
    ) -> None:
        if folded.facts:  # every ping applied gave its heartbeat facts
            # One row per ring slot: a batch with more pings of a heartbeat than the ring holds
            # keeps the newest (one statement may not update a row twice).
            pings = list({(row[0], row[1]): row for row in folded.pings}.values())
            payload = json.dumps(sorted(folded.facts))
            await db.execute(
                _WRITE_BATCH,
                (
                    *(list(column) for column in zip(*pings, strict=True)),
                    list(folded.facts),
                    [f.seq for f in folded.facts.values()],
                    [texts[name] for name in folded.facts],
                    CHANNEL,
                    payload if len(payload) < NOTIFY_LIMIT else "*",
                ),
            )
        changed = [(k, t) for k, t in folded.instances.items() if t is not None]
        if changed:
            await db.execute(
                _WRITE_INSTANCES,
                (
                    [h for (h, _), _ in changed],
                    [n for (_, n), _ in changed],
                    [folded.facts[h].seq for (h, _), _ in changed],
                    [t.last_ping_at for _, t in changed],
                    [json.dumps(t.to_json()) for _, t in changed],
                ),
            )
        forgotten = [key for key, t in folded.instances.items() if t is None]
        if forgotten:
            await db.execute(
                "DELETE FROM lookout_instance i USING unnest(%b::text[], %b::text[]) "
                "AS k(heartbeat, name) WHERE i.heartbeat = k.heartbeat AND i.name = k.name",
                ([h for h, _ in forgotten], [n for _, n in forgotten]),
            )

    def _publish(self, batch: list[Pending], folded: Folded, texts: Mapping[str, str]) -> None:
        for name, facts in folded.facts.items():
            self._adopt(name, facts, texts[name])
        folded.apply_instances(self._books)
        self.health.errors += folded.failures
        self.health.committed({"store": self.describe()})
        folded.answer(batch)

    def _adopt(self, name: str, facts: Facts, text: str) -> None:
        """Publish ``facts`` (read from ``text``) unless newer ones are published already."""
        published = self._facts.get(name)
        if published is None or facts.seq > published.seq:
            self._put(name, facts, text)

    def _put(self, name: str, facts: Facts, text: str) -> None:
        self._facts[name] = facts
        self._texts[name] = hash(text)

    # -- reading what other replicas wrote --------------------------------------------------

    async def _listen(self) -> None:
        """Re-read heartbeats named by notifications; reconnects after a lost connection."""
        failing = False
        while not self._stopped:
            try:
                db = await psycopg.AsyncConnection.connect(
                    self._settings.url, **_connect_kwargs(self._settings)
                )
            except psycopg.Error as exc:
                if not failing:
                    log.warning("heartbeat store notifications lost", extra={"error": _reason(exc)})
                failing = True
                await asyncio.sleep(1.0)
                continue
            try:
                async with db:
                    await db.execute(f"LISTEN {CHANNEL}")
                    await db.execute(f"LISTEN {MAINTENANCE_CHANNEL}")
                    failing = False
                    self._request(None)  # whatever changed while not listening
                    self._maintenance_dirty = True
                    while not self._stopped:
                        async for notice in db.notifies(timeout=1.0):
                            if notice.channel == MAINTENANCE_CHANNEL:
                                self._maintenance_dirty = True
                                self._wake.set()
                            elif not self._sent_by_self(notice.pid):
                                self._request(notice.payload)
            except Exception as exc:  # the listener must outlive any failure
                if not failing:
                    log.warning("heartbeat store notifications lost", extra={"error": _reason(exc)})
                failing = True
                await asyncio.sleep(1.0)

    def _request(self, payload: str | None) -> None:
        if payload is None or payload == "*":
            self._dirty.add("*")
        else:
            with contextlib.suppress(ValueError, TypeError):
                self._dirty.update(str(name) for name in json.loads(payload))
        self._wake.set()

    async def _refresh_periodically(self) -> None:
        """Apply requested refreshes at once, and compare everything every REFRESH_SECONDS."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REFRESH_SECONDS)
            if self._stopped:
                return
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            names = None if "*" in dirty or not dirty else sorted(dirty)
            maintenance, self._maintenance_dirty = self._maintenance_dirty, False
            try:
                if maintenance or names is None:
                    await self._read_maintenance()
                if names is not None or not maintenance or dirty:
                    await self._refresh(names)
            except Exception as exc:  # retried: the refresher must outlive any failure
                self._dirty.update(dirty)
                self._maintenance_dirty = self._maintenance_dirty or maintenance
                log.debug("heartbeat refresh failed", extra={"error": _reason(exc)})
                await asyncio.sleep(1.0)

    async def _refresh(self, names: list[str] | None) -> None:
        """Read the facts of ``names`` (None: of every heartbeat whose seq moved) and their
        instance tracks changed since the published seq."""
        async with self._pool.connection(timeout=POOL_TIMEOUT) as db:
            if names is None:
                cursor = await db.execute("SELECT name, seq FROM lookout_heartbeat")
                names = [
                    name
                    for name, seq in await cursor.fetchall()
                    if name not in self._facts or seq > self._facts[name].seq
                ]
            if not names:
                return
            seen = {name: self._facts[name].seq if name in self._facts else -1 for name in names}
            declarations = self._declarations
            async with db.transaction():
                await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor = await db.execute(
                    "SELECT name, facts FROM lookout_heartbeat WHERE name = ANY(%b)", (names,)
                )
                rows = await cursor.fetchall()
                cursor = await db.execute(
                    "SELECT i.heartbeat, i.name, i.track FROM lookout_instance i "
                    "JOIN unnest(%b::text[], %b::bigint[]) AS w(heartbeat, seq) "
                    "ON i.heartbeat = w.heartbeat AND i.seq > w.seq ORDER BY i.last_ping_at",
                    (list(seen), list(seen.values())),
                )
                tracks = await cursor.fetchall()
        if declarations != self._declarations:
            self._request(json.dumps(names))  # read again: these rows may predate it
            return
        for name in set(names) - {name for name, _ in rows}:
            self._forget(name)  # forgotten by another replica's declaration
        for name, text in rows:
            if text is None or self._texts.get(name) == hash(text):
                continue
            try:
                self._adopt(name, Facts.from_json(json.loads(text)), text)
            except (ValueError, TypeError):
                continue  # quarantined by the next commit that touches it
        for heartbeat, name, text in tracks:
            with contextlib.suppress(ValueError, TypeError):
                self._books.setdefault(heartbeat, Instances()).put(
                    name, Track.from_json(json.loads(text))
                )


def _connect_kwargs(settings: PostgresStorage) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "connect_timeout": int(POOL_TIMEOUT),
        "application_name": "lookout-exporter",
        "autocommit": True,
    }
    if settings.password is not None:
        kwargs["password"] = settings.password
    return kwargs


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PoolTimeout | TimeoutError):
        return "no connection to the database (timed out)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stored(row: Sequence[Any]) -> StoredPing:
    seq, at, signal, rid, instance, exit_code, duration, body = row
    return StoredPing(seq, at, Signal(signal), rid, instance, exit_code, duration, bytes(body))
