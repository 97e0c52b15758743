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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.runtime import RUNTIME, Runtime
from exporter.stats import ProbeStats
from exporter.status import pictures, views
from exporter.status.markup import ENVIRONMENT, error_page, respond
from exporter.status.views import DEFAULT_LIMIT

__all__ = ["add_routes"]

# A target before its row is built: what ``views.select`` and ``groups`` read, and its stats.
Entry = dict[str, Any]


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


def refresh_seconds(runtime: Runtime, query: Mapping[str, str]) -> int:
    """How often the page reloads itself: the config's ``status_page.refresh``, 0 (never) with
    ``?refresh=off``."""
    if query.get("refresh") == "off":
        return 0
    return round(runtime.config.status_page.refresh)


def refresh_link(query: Mapping[str, str], seconds: int) -> tuple[str, str] | None:
    """The link that switches the reload off (or on again) and its text; None when the config
    turned it off."""
    if query.get("refresh") == "off":
        kept = {k: v for k, v in query.items() if k != "refresh"}
        return (f"?{urlencode(kept)}" if kept else "./", "reload this page by itself")
    if not seconds:
        return None
    return (f"?{urlencode({**query, 'refresh': 'off'})}", "stop reloading")


def state_since(stats: ProbeStats) -> float | None:
    """Since when the confirmed state holds: the open incident's start while down, the first
    of the passing attempts in a row while up; None before the first confirmation."""
    if stats.confirmed is None:
        return None
    if not stats.confirmed:
        return stats.incident_start
    return stats.run_started_at if stats.run_success else None


def with_pictures(item: dict[str, Any], stats: ProbeStats, now: float) -> dict[str, Any]:
    """A target's row plus its uptime bar, sparkline and since when its state holds."""
    item["bar"] = pictures.bar_runs(stats.history, now)
    item["spark"] = pictures.sparkline(stats.history, now)
    item["since"] = state_since(stats)
    return item


# Above this many targets on a page, a collapsed group's rows are not sent: it links to a page of
# its own (``?group=VALUE``), so the page of 10,000 healthy targets is its groups' headings. The
# open groups' rows are sent up to this many in all, so a page where most groups fail (or the
# only group holds 10,000 targets) stays within it too.
INLINE_ROWS = 1000


def groups(
    targets: list[dict[str, Any]],
    label: str,
    sort: str,
    query: Mapping[str, str] | None = None,
    expand: bool = False,
) -> list[dict[str, Any]]:
    """``targets`` (already filtered and sorted; ``entries`` or rows: dicts with ``name``,
    ``state`` and ``labels``) grouped by the value of their ``label``: each group with its
    rolled-up state (its worst member's), its members by state, whether it opens (it has
    failing members, or it is the only group), failing groups first (or by name with
    ``sort=name``); targets without the label form the last group, ``value`` None. With more
    than ``INLINE_ROWS`` targets a collapsed group has no ``items`` but a ``link`` to itself, and
    so has an open group whose rows do not fit in what the open groups before it left of
    ``INLINE_ROWS`` rows. With ``expand`` (the page of one group) every group is open with its
    rows."""
    query = query or {}
    members: dict[str | None, list[dict[str, Any]]] = {}
    for item in targets:
        members.setdefault(item["labels"].get(label), []).append(item)
    found: list[dict[str, Any]] = []
    for value, items in members.items():
        counts: dict[str, int] = {}
        for item in items:
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        state = min(counts, key=lambda name: (views.SEVERITY.get(name, 3), name))
        found.append(
            {
                "label": label,
                "value": value,
                "state": state,
                "counts": sorted(counts.items(), key=lambda c: (views.SEVERITY.get(c[0], 3), c[0])),
                "open": expand or state in views.FAILING or len(members) == 1,
                "size": len(items),
                "items": items,
                "link": link(query, group=value or ""),
            }
        )

    def order(group: dict[str, Any]) -> tuple[Any, ...]:
        named = (group["value"] is None, group["value"] or "")
        return named if sort == "name" else (views.SEVERITY.get(group["state"], 3), *named)

    ordered = sorted(found, key=order)
    if len(targets) > INLINE_ROWS and not expand:
        budget = INLINE_ROWS
        for group in ordered:
            if group["open"] and group["size"] <= budget:
                budget -= group["size"]
            else:
                group["items"] = []
    return ordered


def entries(all_stats: Iterable[ProbeStats], versions: Mapping[str, Sequence[str]]) -> list[Entry]:
    """Each target as the page filters, sorts and groups it: name, state, labels and matrix,
    with its stats for the row it may get. Every target is counted and grouped; only the rows a
    page shows are built (``rows``), so a page of collapsed groups costs no row at all."""
    return [
        {
            "name": s.target.name,
            "state": views.target_state(s),
            "labels": dict(s.target.labels),
            "matrix": views.matrix_json(s.target, versions),
            "stats": s,
        }
        for s in all_stats
    ]


def rows(
    runtime: Runtime,
    chosen: Iterable[Entry],
    now: float,
    versions: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    """The rows of the ``chosen`` entries, in their order, each with its pictures."""
    location = runtime.location
    shown = []
    for entry in chosen:
        stats = entry["stats"]
        windows = runtime.target_windows(stats.target)
        item = views.target_summary(stats, now, location, windows, versions)
        shown.append(with_pictures(item, stats, now))
    return shown


async def index_page(runtime: Runtime, query: Mapping[str, str]) -> str:
    state, sort = views.state_and_sort(query)
    now = runtime.clock.time()
    label = runtime.config.status_page.group_by
    chosen = query.get("group")  # one group only: its label value, "" for those without
    all_stats = [
        s
        for s in runtime.scheduler.all_stats()
        if chosen is None or dict(s.target.labels).get(label, "") == chosen
    ]
    versions = views.matrix_versions(runtime.scheduler.all_stats())
    targets = entries(all_stats, versions)
    grouped = groups(views.select(targets, state, sort), label, sort, query, chosen is not None)
    for group in grouped:
        group["items"] = rows(runtime, group["items"], now, versions)
    heartbeats = await views.heartbeat_summaries(runtime.heartbeats, runtime.heartbeat_windows)
    for item in heartbeats:
        history = runtime.heartbeats.history.get(item["name"])
        item["bar"] = [] if history is None else pictures.bar_runs(history, now)
    states = [t["state"] for t in targets] + [h["status"] for h in heartbeats]
    refresh = refresh_seconds(runtime, query)
    shard = runtime.options.shard
    return ENVIRONMENT.get_template("index.html").render(
        now=now,
        refresh=refresh,
        refresh_link=refresh_link(query, refresh),
        shard=None if shard is None else f"{shard.index}/{shard.count}",
        exporter=views.exporter_json(runtime, now),
        maintenance=views.open_maintenance(runtime),
        filters=filter_links(states, query),
        sorts=sort_links(query),
        groups=grouped,
        group=chosen,
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
        now = runtime.clock.time()
        history = runtime.heartbeats.history[name]
        refresh = refresh_seconds(runtime, request.query)
        return respond(
            ENVIRONMENT.get_template("heartbeat.html").render(
                detail=detail,
                now=now,
                refresh=refresh,
                refresh_link=refresh_link(request.query, refresh),
                cells=pictures.bar_cells(history.buckets(now), "pings"),
                workers=views.instance_rows(runtime.heartbeats, spec, now),
            )
        )

    async def target(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return error_page(404, f"no target named {name!r}", "../")
        now = runtime.clock.time()
        windows = runtime.target_windows(stats.target)
        versions = views.matrix_versions(runtime.scheduler.all_stats())
        detail = views.target_detail(stats, now, runtime.location, windows, versions)
        buckets = stats.history.buckets(now)
        refresh = refresh_seconds(runtime, request.query)
        return respond(
            ENVIRONMENT.get_template("target.html").render(
                detail=detail,
                now=now,
                refresh=refresh,
                refresh_link=refresh_link(request.query, refresh),
                since=state_since(stats),
                cells=pictures.bar_cells(buckets),
                chart=pictures.chart(buckets),
                bucket_seconds=stats.history.width,
            )
        )

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name}", target)
    app.router.add_get("/heartbeats/{name}", heartbeat)
