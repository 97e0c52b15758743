"""The aiohttp application: routes, the scheduler's lifetime, and config reloads.

``Runtime`` is the live state the routes serve: the current config, the scheduler, the reload
state and the text collectors. A reload loads and validates the new config completely before
anything changes, so a bad config leaves the old one running and only flips
``lookout_config_last_reload_successful`` to 0.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
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
        self.collectors: list[TextCollector] = [
            SelfCollector(self.scheduler, self.reload_state),
            ProbeCollector(self.scheduler.all_stats, lambda: self.location),
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
            self.reload_state.successful = True
            self.reload_state.last_success = self.clock.time()
            self.reload_state.last_error = ""
            log.info("config reloaded", extra={"targets": len(config.targets)})
            return None

    def render_metrics(self) -> bytes:
        parts = [generate_latest(self.registry).decode("utf-8")]
        for collector in self.collectors:
            parts.extend(collector.expose())
        return "".join(parts).encode("utf-8")


RUNTIME = web.AppKey("runtime", Runtime)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    await runtime.host.fresh()  # reads the host in a worker thread, bounded by a deadline
    body = runtime.render_metrics()
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(body) >= GZIP_MIN_BYTES:
        response.body = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
        response.headers["Content-Encoding"] = "gzip"
    return response


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
