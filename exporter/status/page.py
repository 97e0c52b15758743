"""The status pages' routes: ``GET /`` lists every target and heartbeat, ``GET /targets/{name}``
shows one target's recent probes, like blackbox_exporter's "recent probes" page, and
``GET /heartbeats/{name}`` one heartbeat's kept pings with their bodies (those of a heartbeat
with a token only with ``?token=``, as in ``GET /api/v1/heartbeats/{name}``).

Each page is a template in ``templates/`` (``index.html``, ``target.html``, ``heartbeat.html``)
rendering the dicts of ``views``; ``markup`` escapes every value they output. Server-rendered
HTML with inline CSS and no script at all, so it works offline and behind any proxy. Links are
relative, so the pages also work under a path prefix. Sorting (``?sort=state|name``) and
filtering (``?state=...``) happen on the server and apply to targets and heartbeats alike;
failing items come first by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.runtime import RUNTIME, Runtime
from exporter.status import views
from exporter.status.markup import ENVIRONMENT, error_page, respond
from exporter.status.views import DEFAULT_LIMIT

__all__ = ["add_routes"]

INDEX = ENVIRONMENT.get_template("index.html")
TARGET = ENVIRONMENT.get_template("target.html")
HEARTBEAT = ENVIRONMENT.get_template("heartbeat.html")


def link(query: Mapping[str, str], **changes: str) -> str:
    """A query string for this page with ``changes``, leaving out the defaults."""
    merged = {"state": "all", "sort": "state", **query, **changes}
    kept = {k: v for k, v in merged.items() if (k, v) not in (("state", "all"), ("sort", "state"))}
    return f"?{urlencode(kept)}" if kept else "./"


def filter_links(
    states: Iterable[str], query: Mapping[str, str]
) -> list[tuple[str, int, str, bool]]:
    """The filter links as (state, items in it, href, current); ``states`` of every item.

    A filter without items is left out, unless it is ``all``, ``failing`` or the current one.
    """
    counts = dict.fromkeys(views.FILTERS, 0)
    for item_state in states:
        counts["all"] += 1
        counts[item_state] += 1
        if item_state in views.FAILING:
            counts["failing"] += 1
    state = query.get("state", "all")
    return [
        (name, counts[name], link(query, state=name), name == state)
        for name in views.FILTERS
        if counts[name] or name in ("all", "failing", state)
    ]


def sort_links(query: Mapping[str, str]) -> list[tuple[str, str, bool]]:
    """The sort links as (order, href, current)."""
    sort = query.get("sort", "state")
    return [(name, link(query, sort=name), name == sort) for name in views.SORTS]


async def index_page(runtime: Runtime, query: Mapping[str, str]) -> str:
    state, sort = views.state_and_sort(query)
    now = runtime.clock.time()
    location = runtime.location
    targets = [
        views.target_summary(s, now, location, runtime.target_windows(s.target))
        for s in runtime.scheduler.all_stats()
    ]
    heartbeats = await views.heartbeat_summaries(runtime.heartbeats, runtime.heartbeat_windows)
    states = [t["state"] for t in targets] + [h["status"] for h in heartbeats]
    return INDEX.render(
        now=now,
        exporter=views.exporter_json(runtime, now),
        maintenance=views.open_maintenance(runtime),
        filters=filter_links(states, query),
        sorts=sort_links(query),
        targets=views.select(targets, state, sort),
        heartbeats=views.select(heartbeats, state, sort, "status")
        if runtime.heartbeats.specs
        else None,
    )


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
        windows = runtime.heartbeat_windows(spec)
        detail = await views.heartbeat_detail(
            runtime.heartbeats, spec, DEFAULT_LIMIT, visible, windows
        )
        return respond(HEARTBEAT.render(detail=detail, now=runtime.clock.time()))

    async def target(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return error_page(404, f"no target named {name!r}", "../")
        now = runtime.clock.time()
        windows = runtime.target_windows(stats.target)
        detail = views.target_detail(stats, now, runtime.location, windows)
        return respond(TARGET.render(detail=detail, now=now))

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name}", target)
    app.router.add_get("/heartbeats/{name}", heartbeat)
