"""The heartbeats of the running config together with their store: what the app holds.

The ping routes look heartbeats up here, the collector and the status page read ``views()``, and
a reload swaps the declared heartbeats with ``configure``. Facts of a heartbeat removed from the
config stay in the store, so adding it back restores its history, but it has no series and
accepts no pings while it is not declared.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.clock import Clock
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Facts, Ping, View, derive, instance_limit
from exporter.heartbeats.store import Store

__all__ = ["Heartbeats"]

_NO_FACTS = Facts()


class Heartbeats:
    def __init__(self, store: Store, specs: Iterable[Heartbeat], clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.specs: dict[str, Heartbeat] = {}
        self.configure(specs)

    def configure(self, specs: Iterable[Heartbeat]) -> None:
        """Declare exactly these heartbeats (on startup and on every reload)."""
        self.specs = {spec.name: spec for spec in specs}

    async def record(self, spec: Heartbeat, ping: Ping) -> Facts:
        """Apply ``ping`` durably; returns once it is committed (raises ``StoreError`` if not)."""
        limit = instance_limit(spec.instances) if spec.instances is not None else 0
        return await self.store.record(ping, limit)

    def view(self, spec: Heartbeat) -> View:
        return derive(spec, self.store.facts.get(spec.name, _NO_FACTS), self.clock.time())

    def views(self) -> list[View]:
        """Every declared heartbeat as it is now, in config order."""
        now = self.clock.time()
        facts = self.store.facts
        return [derive(spec, facts.get(name, _NO_FACTS), now) for name, spec in self.specs.items()]
