"""The aiohttp application: routes, the scheduler's lifetime, and config reloads.

``Runtime`` is the live state the routes serve: the current config, the scheduler, the reload
state and the text collectors. A reload loads and validates the new config completely before
anything changes, so a bad config leaves the old one running and only flips
``lookout_config_last_reload_successful`` to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import logging
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import config as config_module
from exporter.clock import Clock, SystemClock
from exporter.collectors.exporter_self import ReloadState, SelfCollector
from exporter.collectors.heartbeats import HeartbeatCollector
from exporter.collectors.host import HostCollector
from exporter.collectors.probes import ProbeCollector
from exporter.config import Config, ConfigError
from exporter.exposition import TextCollector
from exporter.heartbeats.routes import HEARTBEATS, add_routes
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.store import StoreError
from exporter.host.refresher import HostRefresher
from exporter.probes.context import SharedClients
from exporter.scheduler import Scheduler, Shard
from exporter.status import add_routes as add_status_routes

__all__ = ["RUNTIME", "Options", "Runtime", "create_app"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Level 1 compresses exposition text about 8x at a fraction of level 9's CPU cost.
GZIP_LEVEL = 1
# Below this size, compressing costs more than sending.
GZIP_MIN_BYTES = 4096
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
    # Where the heartbeat store lives; created with the first declared heartbeat.
    storage_path: Path = Path("data")


class Runtime:
    def __init__(self, options: Options, config: Config, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.started_at = clock.time()
        self.config = config
        self.reload_state = ReloadState(successful=True, last_success=clock.time())
        self.clients = SharedClients()
        self.scheduler = Scheduler(self.clients, clock, max_in_flight=config.max_in_flight)
        self.heartbeats = Heartbeats(config.heartbeats, clock, options.storage_path)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.host = HostRefresher(HostCollector(settings=config.host), clock)
        probes = ProbeCollector(self.scheduler.all_stats, lambda: self.location)
        self.scheduler.on_record = probes.refresh
        self.collectors: list[TextCollector] = [
            SelfCollector(self.scheduler, self.reload_state),
            probes,
            self.host.collector,
            HeartbeatCollector(self.heartbeats.views),
        ]
        self._reload_lock = asyncio.Lock()

    @property
    def location(self) -> str | None:
        return self.options.location or self.config.location

    def start(self) -> None:
        self._apply(self.config)

    async def close(self) -> None:
        await self.scheduler.close()
        await self.clients.close()
        await self.heartbeats.close()

    def _apply(self, config: Config) -> None:
        location_changed = config.location != self.config.location
        self.config = config
        shard = self.options.shard
        targets = [t for t in config.targets if shard is None or shard.owns(t.name)]
        self.scheduler.reconcile(targets)
        self.heartbeats.configure(config.heartbeats)
        if location_changed:
            self.scheduler.invalidate()
        if config.host != self.host.collector.settings:
            self.host.configure(config.host)

    async def reload(self) -> str | None:
        """Load the config again; returns None on success, else the error (old config kept)."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(config_module.load, self.options.config_path)
                await self.heartbeats.open_for(config.heartbeats)
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

    def render_metrics(self) -> bytes:
        return "".join(self._texts()).encode("utf-8")

    async def render_pieces(self) -> AsyncGenerator[bytes, None]:
        """The exposition in pieces of about ``PIECE_BYTES`` (the last one may be shorter),
        rendered without holding the event loop for more than ``SCRAPE_SLICE`` at a time."""
        pending: list[str] = []
        size = 0
        resume_by = time.perf_counter() + SCRAPE_SLICE
        for text in self._texts():
            pending.append(text)
            size += len(text)
            if size >= PIECE_BYTES:
                yield "".join(pending).encode("utf-8")
                pending.clear()
                size = 0
            if time.perf_counter() >= resume_by:
                await asyncio.sleep(0)
                resume_by = time.perf_counter() + SCRAPE_SLICE
        yield "".join(pending).encode("utf-8")

    def _texts(self) -> Iterator[str]:
        yield generate_latest(self.registry).decode("utf-8")
        for collector in self.collectors:
            yield from collector.expose()


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


async def metrics(request: web.Request) -> web.StreamResponse:
    """A small exposition goes out in one response; a large one is sent piece by piece while
    it is rendered, so the whole body never sits in memory."""
    runtime = request.app[RUNTIME]
    await runtime.host.fresh()  # reads the host in a worker thread, bounded by a deadline
    wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    async with contextlib.aclosing(runtime.render_pieces()) as pieces:
        first = await anext(pieces)
        if len(first) < PIECE_BYTES:  # the whole exposition
            response = web.Response(body=first, headers={"Content-Type": CONTENT_TYPE})
            if wants_gzip and len(first) >= GZIP_MIN_BYTES:
                response.body = gzip.compress(first, GZIP_LEVEL)
                response.headers["Content-Encoding"] = "gzip"
            return response
        stream = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        # gzip framing (wbits 31), a piece at a time: about a millisecond each at level 1.
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if wants_gzip else None
        if compressor is not None:
            stream.headers["Content-Encoding"] = "gzip"
        await stream.prepare(request)
        piece: bytes | None = first
        while piece is not None:
            await stream.write(piece if compressor is None else compressor.compress(piece))
            piece = await anext(pieces, None)
        if compressor is not None:
            await stream.write(compressor.flush())
        await stream.write_eof()
        return stream


async def healthy(_request: web.Request) -> web.Response:
    return web.Response(text="Lookout is healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if not request.app[RUNTIME].heartbeats.ready:
        return web.Response(status=503, text="Lookout is not ready: heartbeat store not open.\n")
    return web.Response(text="Lookout is ready.\n")


async def reload(request: web.Request) -> web.Response:
    error = await request.app[RUNTIME].reload()
    if error is not None:
        return web.Response(status=500, text=f"config reload failed, old config kept:\n{error}\n")
    return web.Response(text="config reloaded\n")


def create_app(options: Options, config: Config, clock: Clock | None = None) -> web.Application:
    app = web.Application()
    runtime = Runtime(options, config, clock or SystemClock())
    app[RUNTIME] = runtime
    app[HEARTBEATS] = runtime.heartbeats

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await runtime.heartbeats.open_for(runtime.config.heartbeats)
        runtime.start()
        settle_heap()
        yield
        await runtime.close()

    async def host_metrics(_app: web.Application) -> AsyncIterator[None]:
        async with runtime.host.running():
            yield

    app.cleanup_ctx.append(lifetime)
    app.cleanup_ctx.append(host_metrics)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    add_routes(app)
    add_status_routes(app, runtime)
    return app
