"""The JSON API under ``/api/v1/``: the status page's data for scripts, described by
``docs/openapi.yaml``.

``GET /api/v1/targets`` lists every target (failing first; ``?state=`` filters, ``?sort=``
orders as on the page), ``GET /api/v1/targets/{name}`` adds the request and the recent probes.
``GET /api/v1/heartbeats`` and ``/api/v1/heartbeats/{name}`` do the same for heartbeats, with
their kept pings (``?limit=``); the bodies of a heartbeat with a token need that token, as
``Authorization: Bearer TOKEN`` or ``?token=``, and are null without it.
``GET /api/v1/exporter`` describes the exporter. Errors are ``{"error": "..."}`` with 400 or 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.runtime import RUNTIME
from exporter.status import views

__all__ = ["add_routes"]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def add_routes(app: web.Application) -> None:
    async def targets(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        try:
            state, sort = views.state_and_sort(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        now = runtime.clock.time()
        location = runtime.location
        all_stats = list(runtime.scheduler.all_stats())
        versions = views.matrix_versions(all_stats)
        items = [
            views.target_summary(
                s,
                now,
                location,
                runtime.maintenance.active(s.target.name, s.target.labels),
                versions,
            )
            for s in all_stats
        ]
        body: dict[str, Any] = {"targets": views.select(items, state, sort)}
        return web.json_response(body)

    async def target(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return _error(404, f"no target named {name!r}")
        windows = runtime.maintenance.active(stats.target.name, stats.target.labels)
        versions = views.matrix_versions(runtime.scheduler.all_stats())
        now = runtime.clock.time()
        detail = views.target_detail(stats, now, runtime.location, windows, versions)
        return web.json_response(detail)

    async def heartbeats(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        try:
            state, sort = views.state_and_sort(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        items = await views.heartbeat_summaries(runtime.heartbeats, runtime.heartbeat_windows)
        return web.json_response({"heartbeats": views.select(items, state, sort, "status")})

    async def heartbeat(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        spec = runtime.heartbeats.specs.get(name)
        if spec is None:
            return _error(404, f"no heartbeat named {name!r}")
        try:
            limit = views.ping_limit(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        visible = spec.token is None or authorized(request, spec.token)
        windows = runtime.heartbeat_windows(spec)
        detail = await views.heartbeat_detail(runtime.heartbeats, spec, limit, visible, windows)
        return web.json_response(detail)

    async def exporter(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        return web.json_response(views.exporter_json(runtime, runtime.clock.time()))

    app.router.add_get("/api/v1/targets", targets)
    app.router.add_get("/api/v1/targets/{name}", target)
    app.router.add_get("/api/v1/heartbeats", heartbeats)
    app.router.add_get("/api/v1/heartbeats/{name}", heartbeat)
    app.router.add_get("/api/v1/exporter", exporter)
