"""The public status page for customers: ``GET /status`` (HTML), ``GET /status.json`` (the same
as a JSON feed) and ``GET /status/badge/{group}.svg`` (one group's state as an SVG badge).

Off unless ``status_page.public.enabled``; then these answer 404 like any unknown path. It
shows only the groups, targets and heartbeats that ``status_page.public`` names, under the
titles given there, and of each only its state now, its uptime over the kept history and that
history's uptime bar. Nothing else of a target or heartbeat reaches this module's output: not
its config name when a title is given, nor its URL, address, labels, failure reasons or
messages, ping bodies, or anything about the exporter (version, config, location, shard). The
data is built from the history's counts and states alone, so the template could not show more
if it tried; ``tests/test_status_public.py`` checks a hostile config for every internal field.

A state is ``up``, ``degraded`` (a target with failures in its latest bucket while still
confirmed up, or a late heartbeat), ``down`` or ``unknown`` (not probed or pinged yet, or a
target another shard probes); a group's state is the worst of its members, except that a group
where only some members are down is ``degraded`` (a partial outage).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from exporter.heartbeats.state import Status
from exporter.history import DEGRADED, DOWN, EMPTY, UP, History
from exporter.runtime import RUNTIME, Runtime
from exporter.status import pictures
from exporter.status.markup import CSP, ENVIRONMENT, error_page, respond
from exporter.status_settings import PublicGroup

__all__ = ["add_routes", "feed"]

STATES = ("unknown", "up", "degraded", "down")
_RANK = {name: rank for rank, name in enumerate(STATES)}
_HEARTBEAT_STATES = {
    Status.NEW: "unknown",
    Status.UP: "up",
    Status.RUNNING: "up",
    Status.LATE: "degraded",
    Status.DOWN: "down",
    Status.FAILED: "down",
}
# Badge colours (shields.io's) and its font's average advance per character, in pixels.
BADGE_COLOURS = {"up": "#4c1", "degraded": "#dfb317", "down": "#e05d44", "unknown": "#9f9f9f"}
BADGE_CHAR_WIDTH = 6.5


def _history(history: History | None, now: float) -> dict[str, Any]:
    """Uptime ratio (passed out of recorded) and the bar's cells from a history's counts."""
    if history is None:
        return {"uptime": None, "cells": [], "buckets": []}
    buckets = history.buckets(now)
    probes = sum(b.probes for b in buckets)
    failures = sum(b.failures for b in buckets)
    cells = []
    for bucket in buckets:
        title = pictures.span_title(bucket.start, bucket.end)
        if bucket.state == EMPTY:
            title += ": no data"
        elif bucket.state == UP:
            title += ": operational"
        elif bucket.state == DEGRADED:
            title += ": degraded"
        else:
            title += ": outage"
        cells.append((pictures.STATE_NAMES.get(bucket.state, "down"), title))
    return {
        "uptime": None if not probes else (probes - failures) / probes,
        "cells": cells,
        "buckets": [
            {"start": b.start, "state": pictures.STATE_NAMES.get(b.state, "down")} for b in buckets
        ],
    }


def _target_state(runtime: Runtime, name: str, now: float) -> tuple[str, History | None]:
    stats = runtime.scheduler.stats.get(name)
    if stats is None or stats.confirmed is None:
        return "unknown", None if stats is None else stats.history
    if not stats.confirmed:
        return "down", stats.history
    latest = stats.history.states(now)[-1]
    return ("degraded" if latest in (DEGRADED, DOWN) else "up"), stats.history


def _group(runtime: Runtime, group: PublicGroup, now: float) -> dict[str, Any]:
    items = []
    for item in group.targets:
        state, history = _target_state(runtime, item.name, now)
        items.append({"title": item.title, "state": state, **_history(history, now)})
    heartbeats = runtime.heartbeats
    for item in group.heartbeats:
        spec = heartbeats.specs.get(item.name)
        state = "unknown" if spec is None else _HEARTBEAT_STATES[heartbeats.view(spec).status]
        history = heartbeats.history.get(item.name)
        items.append({"title": item.title, "state": state, **_history(history, now)})
    states = [entry["state"] for entry in items]
    worst = max(states, key=_RANK.__getitem__, default="unknown")
    if worst == "down" and any(state != "down" for state in states):
        worst = "degraded"
    ratios = [entry["uptime"] for entry in items if entry["uptime"] is not None]
    return {
        "name": group.name,
        "title": group.title,
        "state": worst,
        "uptime": sum(ratios) / len(ratios) if ratios else None,
        "items": items,
    }


def feed(runtime: Runtime) -> dict[str, Any]:
    """The public page's data, also the JSON feed."""
    now = runtime.clock.time()
    settings = runtime.config.status_page
    groups = [_group(runtime, group, now) for group in settings.public.groups]
    return {
        "title": settings.public.title,
        "generated_at": now,
        "bucket_seconds": settings.bucket,
        "state": max((g["state"] for g in groups), key=_RANK.__getitem__, default="unknown"),
        "groups": groups,
    }


def _public_json(data: dict[str, Any]) -> dict[str, Any]:
    """The feed without the bar's tooltips (the page's), with ratios as numbers."""
    return {
        **data,
        "groups": [
            {
                "name": group["name"],
                "title": group["title"],
                "state": group["state"],
                "uptime_ratio": group["uptime"],
                "items": [
                    {
                        "title": item["title"],
                        "state": item["state"],
                        "uptime_ratio": item["uptime"],
                        "history": item["buckets"],
                    }
                    for item in group["items"]
                ],
            }
            for group in data["groups"]
        ],
    }


def add_routes(app: web.Application) -> None:
    def enabled(request: web.Request) -> Runtime | None:
        runtime = request.app[RUNTIME]
        return runtime if runtime.config.status_page.public.enabled else None

    async def page(request: web.Request) -> web.Response:
        runtime = enabled(request)
        if runtime is None:
            raise web.HTTPNotFound()
        data = feed(runtime)
        refresh = round(runtime.config.status_page.refresh)
        updated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data["generated_at"]))
        return respond(
            ENVIRONMENT.get_template("public.html").render(
                data=data, refresh=refresh, updated=updated
            )
        )

    async def json_feed(request: web.Request) -> web.Response:
        runtime = enabled(request)
        if runtime is None:
            raise web.HTTPNotFound()
        response = web.json_response(_public_json(feed(runtime)))
        response.headers["Cache-Control"] = "no-store"
        return response

    async def badge(request: web.Request) -> web.Response:
        runtime = enabled(request)
        if runtime is None:
            raise web.HTTPNotFound()
        name = request.match_info["group"]
        group = next((g for g in runtime.config.status_page.public.groups if g.name == name), None)
        if group is None:
            return error_page(404, f"no public group named {name!r}", "../")
        state = _group(runtime, group, runtime.clock.time())["state"]
        label, value = group.title, state
        left = round(len(label) * BADGE_CHAR_WIDTH + 12)
        right = round(len(value) * BADGE_CHAR_WIDTH + 12)
        text = ENVIRONMENT.get_template("badge.svg").render(
            label=label, value=value, left=left, right=right, colour=BADGE_COLOURS[state]
        )
        return web.Response(
            text=text,
            content_type="image/svg+xml",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache, max-age=0"},
        )

    app.router.add_get("/status", page)
    app.router.add_get("/status.json", json_feed)
    app.router.add_get("/status/badge/{group}.svg", badge)
