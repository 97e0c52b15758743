"""The heartbeats of the running config together with their store: what the app holds.

The ping routes look heartbeats up here, the collector and the status page read ``views()``, and
a reload swaps the declared heartbeats with ``configure``. The store is opened with the first
config that declares a heartbeat or enables the maintenance API (``web.admin_token_file``,
whose run-time windows the store keeps), so an exporter with neither writes nothing to disk:
SQLite under the storage path, or the PostgreSQL database of the config's ``storage:`` key.
Facts of a heartbeat removed from the config stay in the store, so adding it back restores its
history, but it has no series and accepts no pings while it is not declared.

After every config is applied, ``declare`` tells the store which heartbeats are declared, so it
keeps when each was first declared: the first deadline of a heartbeat that never pinged. An
exporter started without its store (a pod without a persistent volume) therefore declares every
heartbeat afresh: each gets a deadline one period after the restart, and
``lookout_heartbeat_declared_timestamp_seconds`` newer than the last success Prometheus saw is
what LookoutHeartbeatStoreLost reads.

``ready`` is false while the store cannot take pings (its writer stopped, or its latest write
failed); a store that is down is checked again every ``CHECK_SECONDS`` and is ready again as
soon as it can be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from aiohttp import web

from exporter.clock import Clock
from exporter.heartbeats.spec import Heartbeat, PostgresStorage
from exporter.heartbeats.sqlite_store import SqliteStore
from exporter.heartbeats.state import Facts, Ping, Signal, Status, View, derive
from exporter.heartbeats.store import Store, StoreError, StoreHealth
from exporter.history import DEGRADED, DOWN, EMPTY, UP, History
from exporter.maintenance import KEEP_ENDED, Scheduled

__all__ = ["CHECK_SECONDS", "HEARTBEATS", "Heartbeats"]

_NO_FACTS = Facts()
CHECK_SECONDS = 2.0
# A heartbeat's status as the state of its history's bucket: the worst one seen there counts.
BUCKET_STATE = {
    Status.NEW: EMPTY,
    Status.UP: UP,
    Status.RUNNING: UP,
    Status.LATE: DEGRADED,
    Status.DOWN: DOWN,
    Status.FAILED: DOWN,
}
# A day of 15-minute buckets unless the config says otherwise (``status_page.history``).
DEFAULT_HISTORY = (900.0, 96)
log = logging.getLogger(__name__)


class Heartbeats:
    def __init__(self, specs: Iterable[Heartbeat], clock: Clock, storage: Path) -> None:
        self.clock = clock
        self.storage = storage
        self.store: Store | None = None
        self.specs: dict[str, Heartbeat] = {}
        # Per declared heartbeat: its pings and the worst status seen, bucket by bucket.
        self.history: dict[str, History] = {}
        self._storage_setting: PostgresStorage | None = None
        self._watch: asyncio.Task[None] | None = None
        self.configure(specs)

    @property
    def ready(self) -> bool:
        """True when pings (and run-time maintenance windows) can be accepted: the store is up,
        or none is needed yet."""
        if self.store is None:
            return not self.specs
        return self.store.running and self.store.health.up

    def maintenance(self) -> Sequence[Scheduled]:
        """The run-time maintenance windows not yet forgotten, oldest first (memory only)."""
        if self.store is None:
            return ()
        forget_before = self.clock.time() - KEEP_ENDED
        windows = self.store.maintenance.values()
        return sorted(
            (w for w in windows if w.until >= forget_before), key=lambda w: (w.created_at, w.id)
        )

    async def save_maintenance(self, window: Scheduled) -> None:
        """Keep ``window`` durably; returns once it is committed (``StoreError`` if not)."""
        if self.store is None:
            raise StoreError("the heartbeat store is not open")
        await self.store.save_maintenance(window, self.clock.time() - KEEP_ENDED)

    def health(self) -> StoreHealth | None:
        """The store's health, once a store is open."""
        return None if self.store is None else self.store.health

    async def open_for(
        self,
        specs: Sequence[Heartbeat],
        storage: PostgresStorage | None = None,
        maintenance: bool = False,
    ) -> None:
        """Open the store if ``specs`` or run-time ``maintenance`` windows need it; raises
        ``StoreError`` when it cannot be used, or when ``storage`` is not the store already
        open (that takes a restart)."""
        if self.store is not None:
            if storage != self._storage_setting:
                raise StoreError("storage: changing the heartbeat store takes a restart")
            return
        if not specs and not maintenance:
            self._storage_setting = storage
            return
        store: Store
        if storage is None:
            store = await asyncio.to_thread(SqliteStore.open, self.storage)
        else:
            store = await _open_postgres(storage)
        store.start()
        self.store = store
        self._storage_setting = storage
        self._watch = asyncio.get_running_loop().create_task(self._check_while_down())
        log.info("heartbeat store open", extra={"store": store.describe()})

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def _check_while_down(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            store = self.store
            if store is not None and store.running and not store.health.up:
                with contextlib.suppress(StoreError):
                    await store.check()

    def configure(
        self, specs: Iterable[Heartbeat], history: tuple[float, int] = DEFAULT_HISTORY
    ) -> None:
        """Declare exactly these heartbeats (on startup and on every reload); ``history`` is the
        bucket width and count of their histories, kept across reloads while it is the same."""
        self.specs = {spec.name: spec for spec in specs}
        kept = self.history
        self.history = {
            name: kept[name].resized(*history) if name in kept else History(*history)
            for name in self.specs
        }

    async def declare(self) -> None:
        """Tell the store which heartbeats the running config declares (now, if it has not seen
        them); a store that cannot be written is logged and asked again with the next config."""
        if self.store is None:
            return
        try:
            await self.store.declare(self.specs.keys(), self.clock.time())
        except StoreError as exc:
            log.error("heartbeat declarations not stored", extra={"error": str(exc)})

    async def record(self, spec: Heartbeat, ping: Ping) -> Facts:
        """Apply ``ping`` durably; returns once it is committed (raises ``StoreError`` if not)."""
        if self.store is None:
            raise StoreError("the heartbeat store is not open")
        facts = await self.store.record(ping, spec)
        history = self.history.get(spec.name)
        if history is not None and ping.signal is not Signal.START:
            # ``facts`` end with this ping, judged: a too-short success counts as a failure.
            history.add(ping.at, facts.last_duration, facts.track.failed, keep_worst=True)
        # The status the ping leaves, noted as a view of it would note it (only the status: the
        # rest of a view is not needed here).
        now = self.clock.time()
        self._observe(spec.name, self._facts(spec.name).status(spec, now)[0], now)
        return facts

    def view(self, spec: Heartbeat) -> View:
        return self._derive(spec, self.clock.time())

    def views(self) -> list[View]:
        """Every declared heartbeat as it is now, in config order."""
        now = self.clock.time()
        return [self._derive(spec, now) for spec in self.specs.values()]

    def _derive(self, spec: Heartbeat, now: float) -> View:
        """The heartbeat at ``now``; its history notes the status seen (on every scrape, page
        view and ping), so the bucket shows the worst status of its time."""
        store = self.store
        instances = None if store is None else store.instances(spec.name)
        view = derive(spec, self._facts(spec.name), instances, now)
        self._observe(spec.name, view.status, now)
        return view

    def _facts(self, name: str) -> Facts:
        """The committed facts of heartbeat ``name`` (none before the store is open)."""
        return _NO_FACTS if self.store is None else self.store.facts.get(name, _NO_FACTS)

    def _observe(self, name: str, status: Status, now: float) -> None:
        """Note ``status`` at ``now`` in the history of heartbeat ``name``."""
        history = self.history.get(name)
        state = BUCKET_STATE[status]
        if history is not None and state != EMPTY:
            history.observe(now, state)


async def _open_postgres(storage: PostgresStorage) -> Store:
    # Imported here: the PostgreSQL driver is the optional extra lookout-exporter[postgresql].
    try:
        from exporter.heartbeats.postgres_store import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"storage: a PostgreSQL store needs lookout-exporter[postgresql] ({exc})"
        ) from None
    return await PostgresStore.open(storage)


HEARTBEATS = web.AppKey("heartbeats", Heartbeats)
