"""The live state the exporter serves: the current config, the scheduler, the heartbeats, the
host reader, the reload state and the collectors, as one ``Runtime`` in ``app[RUNTIME]``, which
renders ``/metrics`` in either exposition format.

A reload loads, checks and builds the new config completely, in a process of its own
(``config_process``), before anything changes; a reload that fails for any reason leaves the old
config running, flips ``lookout_config_last_reload_successful`` to 0 and reports its problems
(``ReloadOutcome``). A config with no targets and no heartbeats does not replace one with some
unless the reload allows it. Reloads asked for while one runs share one more reload after it.
Route handlers (``app``, ``status``) read the runtime from their request's application.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
import traceback
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import malloc_trim
from exporter.clock import Clock
from exporter.collectors.exporter_self import ReloadState, SelfCollector
from exporter.collectors.heartbeats import HeartbeatCollector
from exporter.collectors.host import HostCollector
from exporter.collectors.maintenance import MaintenanceCollector
from exporter.collectors.probes import ProbeCollector
from exporter.config import Config, ConfigError, ConfigProblem
from exporter.config_process import ConfigLoader
from exporter.config_source import format_path
from exporter.connectivity import Connectivity
from exporter.exposition import TextCollector
from exporter.gc_pause import young_collections_only
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.store import StoreError
from exporter.host.reading import HostReader
from exporter.host.refresher import HostRefresher
from exporter.lazy_import import lazy_module
from exporter.maintenance import Scheduled, Window
from exporter.probes.clients import BodyBudget, SharedClients
from exporter.protobuf import ProtobufCollector
from exporter.scheduler import Plan, Scheduler, Shard
from exporter.targets import Target
from exporter.web_limits import ServerCounts, ServerLimits, connection_cap

if TYPE_CHECKING:
    from exporter.protobuf import registry as protobuf_registry
    from exporter.protobuf import text as protobuf_text
else:  # at the first scrape that asks for protobuf (see exporter.protobuf)
    protobuf_registry = lazy_module("exporter.protobuf.registry")
    protobuf_text = lazy_module("exporter.protobuf.text")

__all__ = [
    "PIECE_BYTES",
    "RUNTIME",
    "SCRAPE_SLICE",
    "Options",
    "ReloadOutcome",
    "Runtime",
    "settle_heap",
]

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
    # Client connections and request time (--web.max-connections, --web.read-timeout).
    server: ServerLimits = field(default_factory=ServerLimits)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: applied the new config (no problems), or kept the old one and why."""

    problems: tuple[ConfigProblem, ...] = ()

    @property
    def successful(self) -> bool:
        return not self.problems

    def text(self) -> str:
        if self.successful:
            return "config reloaded\n"
        lines = "".join(f"{problem}\n" for problem in self.problems)
        return f"config reload failed, old config kept:\n{lines}"

    def json(self) -> dict[str, Any]:
        return {
            "status": "success" if self.successful else "error",
            "problems": [
                {
                    "file": p.file,
                    "line": p.line,
                    "key": None if p.at is None else format_path(p.at),
                    "message": p.message,
                    "text": str(p),
                }
                for p in self.problems
            ],
        }


class Runtime:
    def __init__(self, options: Options, config: Config, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.started_at = clock.time()
        self.config = config
        self.reload_state = ReloadState(successful=True, last_success=clock.time())
        self.clients = SharedClients(bodies=BodyBudget(config.body_bytes_in_flight))
        self.server = ServerCounts(limit=connection_cap(options.server.max_connections))
        self.connectivity = Connectivity(self.clients, clock)
        probes = self.probe_collector = ProbeCollector(
            lambda: self.scheduler.all_stats(), lambda: self.location
        )
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
                self.scheduler,
                self.reload_state,
                self.connectivity,
                self.clients.bodies,
                self.server,
                lambda: (self.config.web.external_url, self.config.web.grafana_url),
            ),
            probes,
            host,
            HeartbeatCollector(self.heartbeats.views, self.heartbeats.health),
            self.maintenance,
        ]
        self.loader = ConfigLoader()
        self._reload_lock = asyncio.Lock()
        # The scrapes being answered, each done when answered: a reload's steps wait for them.
        self._scrapes: set[asyncio.Future[None]] = set()
        # The reload that starts once the running one ends, by whether it may empty the config.
        self._queued: dict[bool, asyncio.Future[ReloadOutcome]] = {}

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
        self.probe_collector.lay_out(list(self.scheduler.all_stats()))

    async def close(self) -> None:
        self.loader.close()
        await self.scheduler.close()
        await self.clients.close()
        await self.heartbeats.close()

    def _owned(self, config: Config) -> list[Target[Any]]:
        shard = self.options.shard
        return [t for t in config.targets if shard is None or shard.owns(t.name)]

    async def _plan(self, config: Config) -> Plan:
        """The scheduler's plan for ``config``, worked out in slices between other tasks."""
        page = config.status_page
        steps = self.scheduler.plan(self._owned(config), history=(page.bucket, page.buckets))
        while True:
            try:
                next(steps)
            except StopIteration as done:
                plan: Plan = done.value
                return plan
            await self._between_steps()

    async def _prepare(self, plan: Plan) -> None:
        """The rows of ``plan``'s targets laid out for the probe collector ahead (the new ones
        rendered), in slices between other tasks: the first scrape after a reload that adds
        or renames thousands of targets then joins their text rather than rendering and
        moving all of them while it answers."""
        for _ in self.probe_collector.prepare(list(plan.stats.values())):
            await self._between_steps()

    async def _rerender(self, plan: Plan) -> None:
        """The targets the reload changed in place (a new interval, ``expect`` or SLO, the same
        series) rendered again in slices after the swap, so that the first scrape after a
        reload that changes 10,000 of them joins their text instead of rendering it."""
        retargeted = [stats for stats, _target in plan.retargeted]
        for _ in self.probe_collector.rerender(retargeted):
            await self._between_steps()

    async def _between_steps(self) -> None:
        """Lets other tasks run between two steps of a reload and, while scrapes are being
        answered, waits until those are: a scrape pauses after every ``SCRAPE_SLICE`` of its
        own work, and a step of the reload (about 10 ms) taking each of those turns made a
        scrape of 10,000 targets during a reload take twice as long. Scrapes that begin
        meanwhile are not waited for, so scrapes back to back (or overlapping) slow a reload
        down rather than stop it."""
        await asyncio.sleep(0)
        if self._scrapes:
            await asyncio.wait(set(self._scrapes))

    def _apply(self, config: Config, plan: Plan | None = None) -> None:
        self.config = config
        self.connectivity.configure(config.connectivity)
        self.clients.bodies.resize(config.body_bytes_in_flight)
        page = config.status_page
        if plan is None:
            self.scheduler.reconcile(self._owned(config), (page.bucket, page.buckets))
        else:
            self.scheduler.apply(plan)
            self.probe_collector.go_live()
        self.heartbeats.configure(config.heartbeats, (page.bucket, page.buckets))
        if config.host != self.host.settings:
            self.host.configure(config.host)

    async def reload(self, allow_empty: bool = False) -> ReloadOutcome:
        """Load the config file again and apply it, or keep the old config and say why.

        Reloads asked for while one runs wait for it and then share one more reload, so the
        file is read after the latest request and a burst of requests costs two loads at most.
        ``allow_empty``: a config without targets and heartbeats may replace one with some."""
        queued = self._queued.get(allow_empty)
        if queued is None:
            queued = asyncio.ensure_future(self._reload_after_current(allow_empty))
            self._queued[allow_empty] = queued
        return await asyncio.shield(queued)

    async def _reload_after_current(self, allow_empty: bool) -> ReloadOutcome:
        async with self._reload_lock:
            del self._queued[allow_empty]  # a request from now on needs a load of its own
            outcome = await self._reload(allow_empty)
        state = self.reload_state
        if outcome.successful:
            state.successful, state.last_success, state.last_error = True, self.clock.time(), ""
            log.info("config reloaded", extra={"targets": len(self.config.targets)})
        else:
            state.successful, state.last_error = False, "\n".join(map(str, outcome.problems))
            for problem in outcome.problems:
                log.error("config reload failed", extra={"problem": problem})
        return outcome

    async def _reload(self, allow_empty: bool) -> ReloadOutcome:
        """Everything that can fail happens before the first change; a change that fails
        anyway is undone by applying the old config again."""
        old = self.config
        name = self.options.config_path or old.source
        try:
            config = await self.loader.load(
                self.options.config_path, os.environ, self._between_steps
            )
            if not allow_empty and _watches_nothing(config) and not _watches_nothing(old):
                message = (
                    "the new config has no targets and no heartbeats, the running one has "
                    f"{len(old.targets)} targets and {len(old.heartbeats)} heartbeats: not "
                    "replacing it (POST /-/reload?allow_empty=true to apply it anyway)"
                )
                return ReloadOutcome((ConfigProblem(None, message, file=name),))
            await self.open_store(config)
        except ConfigError as exc:
            return ReloadOutcome(exc.problems)
        except StoreError as exc:
            return ReloadOutcome((ConfigProblem(("storage",), str(exc), file=name),))
        except Exception:
            return self._internal_error(name)
        # The new targets' stats, renderings and runs are made without full collections and
        # then frozen: at 10,000 targets they set off full collections of 10-20 ms each.
        with young_collections_only():
            try:
                plan = await self._plan(config)
                await self._prepare(plan)
            except Exception:
                return self._internal_error(name)
            await self._between_steps()
            try:
                self._apply(config, plan)
                await self._rerender(plan)
            except Exception:
                outcome = self._internal_error(name)
                self._apply(old)
                return outcome
            await self.heartbeats.declare()
            settle_heap(full=False)
        return ReloadOutcome()

    def _internal_error(self, name: str) -> ReloadOutcome:
        log.error(
            "internal error while reloading the config",
            extra={"config": name, "traceback": traceback.format_exc()},
        )
        message = "internal error while reloading the config (the log has its traceback)"
        return ReloadOutcome((ConfigProblem(None, message, file=name),))

    def render_pieces(self, protobuf: bool = False) -> AsyncGenerator[bytes, None]:
        """The exposition in pieces of about ``PIECE_BYTES`` (the last one may be shorter),
        rendered without holding the event loop for more than ``SCRAPE_SLICE`` at a time:
        the text format, or with ``protobuf`` delimited ``MetricFamily`` messages. The host is
        read first (in a worker thread, bounded by ``host.refresh_timeout``) when its numbers
        are older than ``host.max_age``."""
        return self._answering(_pieces(self._messages() if protobuf else self._texts()))

    async def _answering(self, pieces: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """``pieces``, a scrape being answered from the host's read until they end or are
        closed. The read counts: a reload's steps taking the event loop meanwhile kept the
        reading thread waiting for the interpreter lock, 17-60 ms instead of 2-6."""
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._scrapes.add(answered)
        try:
            await self.host.fresh()
            async with contextlib.aclosing(pieces):
                async for piece in pieces:
                    yield piece
        finally:
            self._scrapes.discard(answered)
            answered.set_result(None)

    def _texts(self) -> Iterator[bytes]:
        """The text exposition as UTF-8: the probe collector keeps its text so."""
        yield generate_latest(self.registry)
        for collector in self.collectors:
            if isinstance(collector, ProbeCollector):
                yield from collector.expose_utf8()
            else:
                for chunk in collector.expose():
                    yield chunk.encode()

    def _messages(self) -> Iterator[bytes]:
        """The same families as ``_texts``; a collector without a protobuf writer of its own
        has its text converted."""
        yield from protobuf_registry.families(self.registry)
        for collector in self.collectors:
            if isinstance(collector, ProtobufCollector):
                yield from collector.expose_protobuf()
            else:
                yield from protobuf_text.families(collector.expose())


def _watches_nothing(config: Config) -> bool:
    return not config.targets and not config.heartbeats


async def _pieces(chunks: Iterable[bytes]) -> AsyncGenerator[bytes, None]:
    """``chunks`` joined into pieces of about ``PIECE_BYTES``, letting other tasks run after
    every ``SCRAPE_SLICE`` of work (an empty chunk is where a collector may pause, and
    asking for the next chunk is where its work happens). A chunk of half that size or more
    is a piece as it is (after what is pending, as a piece of its own): the probe families
    come in such chunks, and copying 30 MiB of them once more took a fifth of a scrape's
    CPU."""
    pending: list[bytes] = []
    size = 0
    sent = False
    resume_by = time.perf_counter() + SCRAPE_SLICE
    for chunk in chunks:
        if len(chunk) >= PIECE_BYTES // 2:
            if size:
                yield b"".join(pending)
            pending.clear()
            size = 0
            yield chunk
            sent = True
        else:
            pending.append(chunk)
            size += len(chunk)
            if size >= PIECE_BYTES:
                yield b"".join(pending)
                sent = True
                pending.clear()
                size = 0
        if time.perf_counter() >= resume_by:
            await asyncio.sleep(0)
            resume_by = time.perf_counter() + SCRAPE_SLICE
    if pending or not sent:
        yield b"".join(pending)


def settle_heap(full: bool = True) -> None:
    """Keep what lives as long as the config (targets, compiled checks, the modules) out of
    the garbage collector's full collections, which otherwise scan it all again and again and
    pause the event loop for about 0.1 s per 100,000 objects.

    ``full`` (at start): everything is collected first, also what an earlier call froze, so no
    unreachable cycle is frozen for good. After a reload only the young generations are
    collected before the new config is frozen: a full collection would itself pause the loop
    for that long. The previous config's objects are freed when their last reference goes, as
    they hold no reference cycles; cyclic garbage that reached the oldest generation stays
    until the next full collection (at the next start).
    """
    if full:
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()
    malloc_trim.trim()  # what loading (or the previous config) left free in the C heap


RUNTIME = web.AppKey("runtime", Runtime)
