"""The live state the exporter serves: the current config, the scheduler, the heartbeats, the
host reader, the reload state and the collectors, as one ``Runtime`` in ``app[RUNTIME]``, which
renders ``/metrics`` in either exposition format.

A reload loads and validates the new config completely before anything changes, so a bad
config leaves the old one running and only flips ``lookout_config_last_reload_successful``
to 0. Route handlers (``app``, ``status``) read the runtime from their request's application.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import config as config_module
from exporter.clock import Clock
from exporter.collectors.exporter_self import ReloadState, SelfCollector
from exporter.collectors.heartbeats import HeartbeatCollector
from exporter.collectors.host import HostCollector
from exporter.collectors.maintenance import MaintenanceCollector
from exporter.collectors.probes import ProbeCollector
from exporter.config import Config, ConfigError
from exporter.connectivity import Connectivity
from exporter.exposition import TextCollector
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.store import StoreError
from exporter.host.reading import HostReader
from exporter.host.refresher import HostRefresher
from exporter.maintenance import Scheduled, Window
from exporter.probes.clients import BodyBudget, SharedClients
from exporter.protobuf.exposition import ProtobufCollector
from exporter.protobuf.registry import families as registry_families
from exporter.protobuf.text import families as text_families
from exporter.scheduler import Scheduler, Shard
from exporter.targets import Target

__all__ = ["PIECE_BYTES", "RUNTIME", "SCRAPE_SLICE", "Options", "Runtime", "settle_heap"]

log = logging.getLogger(__name__)

# A scrape of thousands of targets is rendered, compressed and sent in pieces of about this
# size, letting other tasks run whenever it has held the event loop for SCRAPE_SLICE seconds.
PIECE_BYTES = 256 * 1024
SCRAPE_SLICE = 0.01


@dataclass(frozen=True, slots=True)
class Options:
    """Command-line settings that a config reload does not change."""

    config_path: str | None = None
    location: str | None = None
    shard: Shard | None = None
    # Where the heartbeat store lives; created with the first declared heartbeat, or for the
    # run-time maintenance windows when the config enables their API.
    storage_path: Path = Path("data")


class Runtime:
    def __init__(self, options: Options, config: Config, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.started_at = clock.time()
        self.config = config
        self.reload_state = ReloadState(successful=True, last_success=clock.time())
        self.clients = SharedClients(bodies=BodyBudget(config.body_bytes_in_flight))
        self.connectivity = Connectivity(self.clients, clock)
        probes = ProbeCollector(lambda: self.scheduler.all_stats(), lambda: self.location)
        self.scheduler = Scheduler(
            self.clients,
            clock,
            max_in_flight=config.max_in_flight,
            on_result=probes.refresh,
            connectivity=self.connectivity,
        )
        self.heartbeats = Heartbeats(config.heartbeats, clock, options.storage_path)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        host = HostCollector()
        self.host = HostRefresher(HostReader(), config.host, host.show, clock)
        # The windows of the config and those created at run time, kept as one tuple until
        # either changes (the collector works out what covers what once per tuple).
        self._windows: tuple[object, object, tuple[Window, ...]] = (None, None, ())
        self.maintenance = MaintenanceCollector(
            self.windows,
            self.scheduler.all_stats,
            lambda: self.config.heartbeats,
            lambda: self.location,
            clock,
        )
        self.collectors: list[TextCollector] = [
            SelfCollector(
                self.scheduler, self.reload_state, self.connectivity, self.clients.bodies
            ),
            probes,
            host,
            HeartbeatCollector(self.heartbeats.views, self.heartbeats.health),
            self.maintenance,
        ]
        self._reload_lock = asyncio.Lock()

    @property
    def location(self) -> str | None:
        return self.options.location or self.config.location

    def windows(self) -> tuple[Window, ...]:
        """Every maintenance window: the config's, then those created at run time."""
        configured = self.config.maintenance
        store = self.heartbeats.store
        stored = None if store is None else store.maintenance
        known_config, known_stored, windows = self._windows
        if known_config is not configured or known_stored is not stored:
            runtime = self.heartbeats.maintenance()
            windows = (*configured, *(w.window() for w in runtime))
            self._windows = (configured, stored, windows)
        return windows

    def target_windows(self, target: Target[Any]) -> list[str]:
        """The open maintenance windows that cover ``target`` now."""
        return self.maintenance.active(target.name, target.labels)

    def heartbeat_windows(self, spec: Heartbeat) -> list[str]:
        """The open maintenance windows that cover heartbeat ``spec`` now."""
        return self.maintenance.active_for_heartbeat(spec.name, spec.labels)

    def scheduled(self) -> Sequence[Scheduled]:
        """The run-time maintenance windows (``POST /api/v1/maintenance``) still kept."""
        return self.heartbeats.maintenance()

    async def open_store(self, config: Config) -> None:
        """Open the heartbeat store if ``config`` needs it: for its heartbeats, or for the
        run-time maintenance windows when it enables that API."""
        await self.heartbeats.open_for(
            config.heartbeats, config.storage, maintenance=config.web.admin_token is not None
        )

    def start(self) -> None:
        self._apply(self.config)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.clients.close()
        await self.heartbeats.close()

    def _apply(self, config: Config) -> None:
        self.config = config
        shard = self.options.shard
        targets = [t for t in config.targets if shard is None or shard.owns(t.name)]
        self.connectivity.configure(config.connectivity)
        self.clients.bodies.resize(config.body_bytes_in_flight)
        self.scheduler.reconcile(targets)
        self.heartbeats.configure(config.heartbeats)
        if config.host != self.host.settings:
            self.host.configure(config.host)

    async def reload(self) -> str | None:
        """Load the config again; returns None on success, else the error (old config kept)."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(config_module.load, self.options.config_path)
                await self.open_store(config)
            except (ConfigError, StoreError) as exc:
                self.reload_state.successful = False
                self.reload_state.last_error = str(exc)
                log.error("config reload failed", extra={"error": str(exc)})
                return str(exc)
            self._apply(config)
            settle_heap()
            self.reload_state.successful = True
            self.reload_state.last_success = self.clock.time()
            self.reload_state.last_error = ""
            log.info("config reloaded", extra={"targets": len(config.targets)})
            return None

    def render_pieces(self, protobuf: bool = False) -> AsyncGenerator[bytes, None]:
        """The exposition in pieces of about ``PIECE_BYTES`` (the last one may be shorter),
        rendered without holding the event loop for more than ``SCRAPE_SLICE`` at a time:
        the text format, or with ``protobuf`` delimited ``MetricFamily`` messages."""
        if protobuf:
            return _pieces(self._messages(), b"".join)
        return _pieces(self._texts(), _utf8)

    def _texts(self) -> Iterator[str]:
        yield generate_latest(self.registry).decode("utf-8")
        for collector in self.collectors:
            yield from collector.expose()

    def _messages(self) -> Iterator[bytes]:
        """The same families as ``_texts``; a collector without a protobuf writer of its own
        has its text converted."""
        yield from registry_families(self.registry)
        for collector in self.collectors:
            if isinstance(collector, ProtobufCollector):
                yield from collector.expose_protobuf()
            else:
                yield from text_families(collector.expose())


def _utf8(texts: list[str]) -> bytes:
    return "".join(texts).encode("utf-8")


async def _pieces(
    chunks: Iterable[AnyStr], join: Callable[[list[AnyStr]], bytes]
) -> AsyncGenerator[bytes, None]:
    """``chunks`` joined into pieces of about ``PIECE_BYTES``, letting other tasks run after
    every ``SCRAPE_SLICE`` of work (an empty chunk is where a collector may pause, and
    asking for the next chunk is where its work happens)."""
    pending: list[AnyStr] = []
    size = 0
    resume_by = time.perf_counter() + SCRAPE_SLICE
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= PIECE_BYTES:
            yield join(pending)
            pending.clear()
            size = 0
        if time.perf_counter() >= resume_by:
            await asyncio.sleep(0)
            resume_by = time.perf_counter() + SCRAPE_SLICE
    yield join(pending)


def settle_heap() -> None:
    """Keep what lives as long as the config (targets, compiled checks, the modules) out of
    the garbage collector's full collections, which otherwise scan it all again and again and
    pause the event loop for about 0.1 s per 100,000 objects.

    Everything is collected first (also what an earlier call froze, such as the previous
    config's objects), so no unreachable cycle is frozen for good.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


RUNTIME = web.AppKey("runtime", Runtime)
