"""The heartbeats of the running config together with their store: what the app holds.

The ping routes look heartbeats up here, the collector and the status page read ``views()``, and
a reload swaps the declared heartbeats with ``configure``. The store is opened with the first
config that declares a heartbeat (``open_for``), so an exporter without heartbeats writes
nothing to disk. Facts of a heartbeat removed from the config stay in the store, so adding it
back restores its history, but it has no series and accepts no pings while it is not declared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from aiohttp import web

from exporter.clock import Clock
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Facts, Ping, View, derive, instance_limit
from exporter.heartbeats.store import Store, StoreError

__all__ = ["HEARTBEATS", "Heartbeats"]

_NO_FACTS = Facts()
log = logging.getLogger(__name__)


class Heartbeats:
    def __init__(self, specs: Iterable[Heartbeat], clock: Clock, storage: Path) -> None:
        self.clock = clock
        self.storage = storage
        self.store: Store | None = None
        self.specs: dict[str, Heartbeat] = {}
        self.configure(specs)

    @property
    def ready(self) -> bool:
        """True when pings can be accepted: the store is open, or none is needed yet."""
        return self.store is not None or not self.specs

    async def open_for(self, specs: Sequence[Heartbeat]) -> None:
        """Open the store if ``specs`` need it; raises ``StoreError`` when it cannot be used."""
        if self.store is None and specs:
            store = await asyncio.to_thread(Store.open, self.storage)
            store.start()
            self.store = store
            log.info("heartbeat store open", extra={"path": str(store.path)})

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    def configure(self, specs: Iterable[Heartbeat]) -> None:
        """Declare exactly these heartbeats (on startup and on every reload)."""
        self.specs = {spec.name: spec for spec in specs}

    async def record(self, spec: Heartbeat, ping: Ping) -> Facts:
        """Apply ``ping`` durably; returns once it is committed (raises ``StoreError`` if not)."""
        if self.store is None:
            raise StoreError("the heartbeat store is not open")
        limit = instance_limit(spec.instances) if spec.instances is not None else 0
        return await self.store.record(ping, limit)

    def view(self, spec: Heartbeat) -> View:
        facts = self.store.facts if self.store is not None else {}
        return derive(spec, facts.get(spec.name, _NO_FACTS), self.clock.time())

    def views(self) -> list[View]:
        """Every declared heartbeat as it is now, in config order."""
        now = self.clock.time()
        facts = self.store.facts if self.store is not None else {}
        return [derive(spec, facts.get(name, _NO_FACTS), now) for name, spec in self.specs.items()]


HEARTBEATS = web.AppKey("heartbeats", Heartbeats)
