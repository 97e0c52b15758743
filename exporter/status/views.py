"""What the status page, the JSON API and ``lookout-exporter probe`` show, as JSON-ready data.

One module turns ``ProbeStats`` and ``ProbeResult``, and the heartbeats' views and kept pings,
into plain dicts, so the page, the API and the command line cannot disagree: the API returns
these dicts as they are (their shape is ``docs/openapi.yaml``), the page and the command render
them.

A target's state is ``down`` (its latest probe failed), ``pending`` (not probed yet) or ``up``.
The recent window is ``ProbeStats.recent``: p50/p95 there are exact quantiles of the kept
durations (linear interpolation between the closest ranks), not histogram bucket bounds.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from exporter import __version__
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import ALIVE, Signal, Status, View
from exporter.heartbeats.store import KEEP_PINGS, StoredPing, StoreError
from exporter.recent import RecentProbe
from exporter.results import Certificate, ProbeResult
from exporter.runtime import Runtime
from exporter.stats import ProbeStats
from exporter.targets import Target

__all__ = [
    "DEFAULT_LIMIT",
    "FILTERS",
    "SORTS",
    "certificate_json",
    "choice",
    "describe",
    "exporter_json",
    "heartbeat_detail",
    "heartbeat_summaries",
    "instance_rows",
    "matrix_json",
    "matrix_versions",
    "open_maintenance",
    "ping_json",
    "ping_limit",
    "quantile",
    "recent_json",
    "request_json",
    "result_json",
    "select",
    "state_and_sort",
    "target_detail",
    "target_state",
    "target_summary",
]

# Failing states first: the order of the default sort and of the filter links.
SEVERITY: Mapping[str, int] = {"down": 0, "failed": 0, "late": 1, "pending": 2, "new": 2}
FAILING = frozenset({"down", "failed", "late"})
SORTS = ("state", "name")
FILTERS = ("all", "failing", "down", "failed", "late", "pending", "new", "running", "up")
SECONDS_PER_DAY = 86400.0
# Kept pings a heartbeat's detail shows unless ``?limit=`` says otherwise.
DEFAULT_LIMIT = 20
# Latest pings of a failed heartbeat searched for its last failure in the list.
LIST_SCAN = 10


def quantile(values: Sequence[float], q: float) -> float | None:
    """The exact ``q`` quantile of ``values`` (linear between closest ranks), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def request_json(target: Target[Any]) -> dict[str, Any]:
    """The request a probe of ``target`` makes, secrets redacted."""
    return {
        "kind": target.kind.name,
        "endpoint": target.endpoint,
        **target.kind.request(target.spec),
        "options": target.kind.options(target.spec),
        "timeout_seconds": target.timeout,
    }


def certificate_json(cert: Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "serial": cert.serial,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "dns_names": list(cert.dns_names),
    }


def recent_json(probe: RecentProbe | ProbeResult) -> dict[str, Any]:
    """One of a target's recent probes, as its history lists it."""
    return {
        "finished_at": probe.finished_at,
        "success": probe.success,
        "duration_seconds": probe.duration,
        "reason": None if probe.reason is None else probe.reason.value,
        "message": probe.message,
        "phases": [{"phase": name, "seconds": seconds} for name, seconds in probe.phases],
        "status_code": probe.status_code,
    }


def result_json(result: ProbeResult) -> dict[str, Any]:
    """One probe's outcome with its phases, checks and presented certificate chain."""
    return recent_json(result) | {
        "checks": [
            {"name": check.name, "passed": check.passed, "detail": check.detail}
            for check in result.checks
        ],
        "tls_version": result.tls.version if result.tls is not None else None,
        "certificates": [certificate_json(cert) for cert in result.chain],
        "facts": result.observation.json() if result.observation is not None else {},
    }


def target_state(stats: ProbeStats) -> str:
    """``up`` or ``down`` as confirmed (see ``confirm``), ``pending`` before the first
    confirmation."""
    if stats.confirmed is None:
        return "pending"
    return "up" if stats.confirmed else "down"


def matrix_versions(all_stats: Iterable[ProbeStats]) -> dict[str, list[str]]:
    """The version keys of each ``versions:`` matrix among the targets of ``all_stats``, by the
    matrix's name, in config order."""
    versions: dict[str, list[str]] = {}
    for stats in all_stats:
        if (matrix := stats.target.matrix) is not None:
            versions.setdefault(matrix[0], []).append(matrix[1])
    return versions


def matrix_json(
    target: Target[Any], versions: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any] | None:
    """The ``versions:`` matrix ``target`` was expanded from: its name, this target's version
    and every version (``matrix_versions``); None for a target without one."""
    matrix = target.matrix
    if matrix is None:
        return None
    siblings = (versions or {}).get(matrix[0]) or [matrix[1]]
    return {"name": matrix[0], "version": matrix[1], "versions": list(siblings)}


def target_summary(
    stats: ProbeStats,
    now: float,
    location: str | None,
    maintenance: Sequence[str] = (),
    versions: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A target as one row of the status page: state, latest probe, recent window, cert;
    ``maintenance`` names the open maintenance windows that cover it; ``versions``
    (``matrix_versions``) lists the other versions of a target expanded from ``versions:``."""
    target = stats.target
    last = stats.last
    failure = stats.recent.latest_failure()
    durations = stats.recent.durations()
    expiry = last.cert_expiry if last is not None else None
    return {
        "name": target.name,
        "kind": target.kind.name,
        "location": location,
        "labels": dict(target.labels),
        "endpoint": target.endpoint,
        "matrix": matrix_json(target, versions),
        "interval_seconds": target.interval,
        "timeout_seconds": target.timeout,
        "state": target_state(stats),
        "last_run_at": last.finished_at if last is not None else None,
        "last_duration_seconds": last.duration if last is not None else None,
        "last_status_code": last.status_code if last is not None else None,
        "last_failure": None
        if failure is None
        else {
            "at": failure.finished_at,
            "reason": None if failure.reason is None else failure.reason.value,
            "message": failure.message,
            "current": last is not None and failure.finished_at == last.finished_at,
        },
        "window": {
            "probes": len(durations),
            "failures": stats.recent.failures(),
            "p50_seconds": quantile(durations, 0.5),
            "p95_seconds": quantile(durations, 0.95),
        },
        "cert_expiry_timestamp_seconds": expiry,
        "cert_days_left": None if expiry is None else (expiry - now) / SECONDS_PER_DAY,
        "maintenance": list(maintenance),
        "probes_total": stats.probes,
        "failures_total": {reason.value: n for reason, n in sorted(stats.failures.items())},
    }


def target_detail(
    stats: ProbeStats,
    now: float,
    location: str | None,
    maintenance: Sequence[str] = (),
    versions: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """A target's summary plus its request, its latest probe in full and its recent probes,
    newest first."""
    detail = target_summary(stats, now, location, maintenance, versions)
    detail["request"] = request_json(stats.target)
    detail["latest"] = None if stats.last is None else result_json(stats.last)
    detail["history"] = [recent_json(probe) for probe in reversed(list(stats.recent))]
    return detail


def exporter_json(runtime: Runtime, now: float) -> dict[str, Any]:
    """The exporter itself: version, config and its reload state, uptime."""
    reload = runtime.reload_state
    return {
        "version": __version__,
        "location": runtime.location,
        "config": runtime.config.source,
        "reload": {
            "successful": reload.successful,
            "last_success_at": reload.last_success,
            "last_error": reload.last_error,
        },
        "started_at": runtime.started_at,
        "uptime_seconds": max(0.0, now - runtime.started_at),
        "targets": len(runtime.scheduler.stats),
        "heartbeats": len(runtime.heartbeats.specs),
    }


def open_maintenance(runtime: Runtime) -> list[dict[str, Any]]:
    """The maintenance windows open now (config and run-time), for the page's banner."""
    authors = {w.id: w.author for w in runtime.scheduled()}
    return [
        {
            "id": window.name,
            "schedule": window.describe(),
            "reason": window.reason,
            "author": authors.get(window.name),
            "everything": window.everything,
        }
        for window in runtime.maintenance.open_windows()
    ]


def select(
    items: Iterable[dict[str, Any]], state: str, sort: str, field: str = "state"
) -> list[dict[str, Any]]:
    """Items in filter ``state`` (see FILTERS), sorted by ``sort``; ``field`` holds their state
    (``state`` for targets, ``status`` for heartbeats)."""
    if state == "failing":
        chosen = [item for item in items if item[field] in FAILING]
    elif state == "all":
        chosen = list(items)
    else:
        chosen = [item for item in items if item[field] == state]
    if sort == "name":
        ordered = sorted(chosen, key=lambda item: item["name"])
    else:
        ordered = sorted(chosen, key=lambda item: (SEVERITY.get(item[field], 3), item["name"]))
    return _versions_together(ordered)


def _versions_together(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` in their order, except that the targets of one ``versions:`` matrix form one
    block, in the matrix's version order, where its first member (the worst, or the first by
    name) stands: the versions of an API are read side by side."""
    blocks: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if (matrix := item.get("matrix")) is not None:
            blocks.setdefault(matrix["name"], []).append(item)
    if not blocks:
        return items
    result: list[dict[str, Any]] = []
    for item in items:
        matrix = item.get("matrix")
        if matrix is None:
            result.append(item)
        elif (block := blocks.pop(matrix["name"], None)) is not None:
            order = {version: i for i, version in enumerate(matrix["versions"])}
            result.extend(sorted(block, key=lambda m: order.get(m["matrix"]["version"], 0)))
    return result


def ping_json(ping: StoredPing, body_visible: bool) -> dict[str, Any]:
    """One kept ping; its body (job output) is None unless ``body_visible``."""
    return {
        "seq": ping.seq,
        "at": ping.at,
        "signal": str(ping.signal),
        "rid": ping.rid,
        "instance": ping.instance,
        "exit_code": ping.exit_code,
        "duration_seconds": ping.duration,
        "body": ping.body.decode("utf-8", errors="replace") if body_visible else None,
    }


# The open maintenance windows that cover a heartbeat.
HeartbeatWindows = Callable[[Heartbeat], Sequence[str]]


def _no_windows(_spec: Heartbeat) -> Sequence[str]:
    return ()


def describe(view: View, maintenance: Sequence[str] = ()) -> dict[str, Any]:
    """A heartbeat's configuration and state as the collector sees it (memory only);
    ``maintenance`` names the open maintenance windows that cover it."""
    spec, facts = view.spec, view.facts
    instances = None
    if spec.instances is not None:
        instances = {"expected": spec.instances, "alive": view.instances_alive}
    return {
        "name": spec.name,
        "status": str(view.status),
        "schedule": spec.schedule.describe(),
        "grace_seconds": spec.grace,
        "max_runtime_seconds": spec.max_runtime,
        "labels": dict(spec.labels),
        "last_success": facts.track.last_success_at,
        "last_start": facts.last_start_at,
        "deadline": view.deadline,
        "age_seconds": view.age,
        "last_duration_seconds": facts.last_duration,
        "last_exit_code": facts.last_exit_code,
        "pings": {str(signal): facts.counts.get(signal, 0) for signal in Signal},
        "instances": instances,
        "maintenance": list(maintenance),
    }


def _last_failure(pings: Iterable[StoredPing]) -> StoredPing | None:
    return next((ping for ping in pings if ping.signal is Signal.FAIL), None)


async def heartbeat_summaries(
    heartbeats: Heartbeats, maintenance: HeartbeatWindows = _no_windows
) -> list[dict[str, Any]]:
    """Every heartbeat as the collector sees it, plus, for those whose status is ``failed``, the
    newest failure among their latest ``LIST_SCAN`` pings.

    Those failures are read from the store in one query, in a worker thread; the list reads no
    other pings, so its cost follows the number of failed heartbeats, not of all pings kept.
    Bodies of heartbeats with a token stay hidden here (None), as in a detail without the token.
    """
    views = heartbeats.views()
    store = heartbeats.store
    # The latest LIST_SCAN pings are those numbered above the newest one's seq minus LIST_SCAN.
    after = {v.spec.name: v.facts.seq - LIST_SCAN for v in views if v.status is Status.FAILED}
    failures: dict[str, StoredPing] = {}
    if store is not None and after:
        with contextlib.suppress(StoreError):  # the list still shows while the store is down
            failures = await store.latest_failures(after)
    items = []
    for view in views:
        item = describe(view, maintenance(view.spec))
        failure = failures.get(view.spec.name)
        item["last_failure"] = (
            None if failure is None else ping_json(failure, view.spec.token is None)
        )
        items.append(item)
    return items


async def heartbeat_detail(
    heartbeats: Heartbeats,
    spec: Heartbeat,
    limit: int,
    bodies_visible: bool,
    maintenance: Sequence[str] = (),
) -> dict[str, Any]:
    """One heartbeat with its newest kept failure and its latest ``limit`` pings, newest first."""
    store = heartbeats.store
    pings = await store.recent(spec.name) if store is not None else []
    detail = describe(heartbeats.view(spec), maintenance)
    failure = _last_failure(pings)
    detail["last_failure"] = None if failure is None else ping_json(failure, bodies_visible)
    detail["recent"] = [ping_json(ping, bodies_visible) for ping in pings[:limit]]
    return detail


def instance_rows(heartbeats: Heartbeats, spec: Heartbeat, now: float) -> list[dict[str, Any]]:
    """Each instance of a worker pool (a heartbeat with ``instances``) the store remembers, most
    recently pinged first: its name, status, last ping and last success, and whether it counts
    as alive (``up``, ``running`` or ``late``) towards ``instances_alive``."""
    store = heartbeats.store
    tracks = store.instances(spec.name) if store is not None else None
    if tracks is None:
        return []
    rows = []
    for name, track in tracks.items():
        status, deadline = track.status(spec, now)
        rows.append(
            {
                "instance": name,
                "status": str(status),
                "alive": status in ALIVE,
                "last_ping": track.last_ping_at,
                "last_success": track.last_success_at,
                "deadline": deadline,
            }
        )
    rows.reverse()
    return rows


def ping_limit(query: Mapping[str, str]) -> int:
    """The ``limit`` query parameter: how many kept pings to show."""
    text = query.get("limit", str(DEFAULT_LIMIT))
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= KEEP_PINGS):
        raise ValueError(f"invalid limit={text!r}: use a number from 1 to {KEEP_PINGS}")
    return int(text)


def state_and_sort(query: Mapping[str, str]) -> tuple[str, str]:
    """The ``state`` filter and the ``sort`` order a list was asked for (ValueError if invalid)."""
    return choice(query, "state", FILTERS), choice(query, "sort", SORTS)


def choice(query: Mapping[str, str], key: str, choices: Sequence[str]) -> str:
    """Query parameter ``key``, one of ``choices`` (the first is the default)."""
    value = query.get(key, choices[0])
    if value not in choices:
        raise ValueError(f"invalid {key}={value!r}: use one of {', '.join(choices)}")
    return value
