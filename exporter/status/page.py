"""The status pages' routes: ``GET /`` lists every target and heartbeat (``target_pages``,
``heartbeat_pages``), ``GET /targets/{name}`` shows one target's recent probes, like
blackbox_exporter's "recent probes" page, and ``GET /heartbeats/{name}`` one heartbeat's kept pings
with their bodies (those of a heartbeat with a token only with ``?token=``, as in
``GET /api/v1/heartbeats/{name}``).

Server-rendered HTML with inline CSS and no script at all (``markup``), so it works offline and
behind any proxy. Links are relative, so the pages also work under a path prefix. Sorting
(``?sort=state|name``) and filtering (``?state=...``) happen on the server and apply to targets and
heartbeats alike; failing items come first by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.runtime import RUNTIME, Runtime
from exporter.status import views
from exporter.status.heartbeat_pages import heartbeat_page, heartbeats_section
from exporter.status.markup import (
    ago,
    document,
    error_page,
    esc,
    respond,
    span,
)
from exporter.status.target_pages import detail_page, targets_section
from exporter.status.views import DEFAULT_LIMIT

__all__ = ["add_routes"]


def link(query: Mapping[str, str], **changes: str) -> str:
    """A query string for this page with ``changes``, leaving out the defaults."""
    merged = {"state": "all", "sort": "state", **query, **changes}
    kept = {k: v for k, v in merged.items() if (k, v) not in (("state", "all"), ("sort", "state"))}
    return f"?{urlencode(kept)}" if kept else "./"


def current(flag: bool) -> str:
    return ' aria-current="true"' if flag else ""


def exporter_header(info: Mapping[str, Any], now: float) -> str:
    reload = info["reload"]
    if reload["successful"]:
        state = f"config loaded {ago(reload['last_success_at'], now)}"
    else:
        state = (
            f'<span class="bad">last config reload failed, running the config loaded '
            f"{ago(reload['last_success_at'], now)}</span>"
            f'<pre class="bad">{esc(reload["last_error"])}</pre>'
        )
    location = f" · location {esc(info['location'])}" if info["location"] else ""
    return (
        "<header><h1>Lookout</h1>"
        f'<p class="meta">version {esc(info["version"])}{location} · config '
        f"{esc(info['config'])} · up {span(info['uptime_seconds'])} · {state}</p></header>"
    )


def controls(states: Iterable[str], query: Mapping[str, str]) -> str:
    """The filter links with their counts, and the sort links; ``states`` of every item."""
    counts = {name: 0 for name in views.FILTERS}
    for item_state in states:
        counts["all"] += 1
        counts[item_state] += 1
        if item_state in views.FAILING:
            counts["failing"] += 1
    state = query.get("state", "all")
    filters = [
        f'<a href="{esc(link(query, state=name))}"{current(name == state)}>'
        f"{name} ({counts[name]})</a>"
        for name in views.FILTERS
        if counts[name] or name in ("all", "failing", state)
    ]
    sort = query.get("sort", "state")
    sorts = [
        f'<a href="{esc(link(query, sort=name))}"{current(name == sort)}>{name}</a>'
        for name in views.SORTS
    ]
    return f"<nav>Show: {' '.join(filters)} · Sort by: {' '.join(sorts)}</nav>"


async def index_page(runtime: Runtime, query: Mapping[str, str]) -> str:
    state = views.choice(query, "state", views.FILTERS)
    sort = views.choice(query, "sort", views.SORTS)
    now = runtime.clock.time()
    location = runtime.location
    targets = [views.target_summary(s, now, location) for s in runtime.scheduler.all_stats()]
    heartbeats = await views.heartbeat_summaries(runtime.heartbeats)
    states = [t["state"] for t in targets] + [h["status"] for h in heartbeats]
    sections = targets_section(views.select(targets, state, sort), now)
    if runtime.heartbeats.specs:
        sections += heartbeats_section(views.select(heartbeats, state, sort, "status"), now)
    body = (
        exporter_header(views.exporter_json(runtime, now), now)
        + controls(states, query)
        + sections
        + '<footer><p class="muted"><a href="metrics">metrics</a> · '
        '<a href="api/v1/targets">targets</a> and <a href="api/v1/heartbeats">heartbeats</a> '
        "as JSON</p></footer>"
    )
    return document("Lookout status", body)


def add_routes(app: web.Application) -> None:
    async def index(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        try:
            return respond(await index_page(runtime, request.query))
        except ValueError as exc:
            return error_page(400, str(exc), "./")

    async def heartbeat(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        spec = runtime.heartbeats.specs.get(name)
        if spec is None:
            return error_page(404, f"no heartbeat named {name!r}", "../")
        visible = spec.token is None or authorized(request, spec.token)
        detail = await views.heartbeat_detail(runtime.heartbeats, spec, DEFAULT_LIMIT, visible)
        return respond(heartbeat_page(detail, runtime.clock.time()))

    async def target(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return error_page(404, f"no target named {name!r}", "../")
        now = runtime.clock.time()
        return respond(detail_page(views.target_detail(stats, now, runtime.location), now))

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name}", target)
    app.router.add_get("/heartbeats/{name}", heartbeat)
