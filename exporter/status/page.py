"""The human status page: ``GET /`` lists every target, ``GET /targets/{name}`` shows one target's
recent probes, like blackbox_exporter's "recent probes" page.

Server-rendered HTML with inline CSS and no script at all, so it works offline and behind any
proxy. Every value from the config or from a probed server (names, messages, headers, bodies)
goes through ``html.escape``, and the Content-Security-Policy forbids scripts besides. Links are
relative, so the page also works when served under a path prefix. Sorting (``?sort=state|name``)
and filtering (``?state=...``) happen on the server; failing items come first by default.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web

from exporter.status import views
from exporter.units import format_duration

if TYPE_CHECKING:
    from exporter.app import Runtime

__all__ = ["CSP", "add_routes"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
NONE = "&ndash;"
# Certificates expiring sooner than this are highlighted.
CERT_WARN_DAYS = 14

STYLE = """
:root { color-scheme: light dark; --bad: #c62828; --warn: #b26a00; --ok: #2e7d32;
  --muted: #6b6b6b; --line: #8884; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.meta, .sub, .muted { color: var(--muted); } .sub { font-size: 12px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
.badge { display: inline-block; min-width: 4.5em; text-align: center; border-radius: 3px;
  padding: 0 .4em; color: #fff; font-weight: 600; background: var(--muted); }
.badge.down, .badge.failed, .badge.fail { background: var(--bad); }
.badge.late { background: var(--warn); } .badge.up, .badge.pass { background: var(--ok); }
.bad { color: var(--bad); } .warn { color: var(--warn); }
nav a { margin-right: .6rem; } nav a[aria-current] { font-weight: 700; text-decoration: none; }
pre { white-space: pre-wrap; word-break: break-all; margin: 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { color: var(--muted); } dd { margin: 0; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def or_none(value: object) -> str:
    """The escaped value, or a dash for a missing one."""
    return NONE if value is None or value == "" else esc(value)


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def span(value: float) -> str:
    """A rough length of time: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def utc(value: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


def timestamp(value: float) -> str:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return f'<time datetime="{iso}">{utc(value)}</time>'


def ago(value: float | None, now: float) -> str:
    if value is None:
        return "never"
    return f'<span title="{utc(value)}">{span(max(0.0, now - value))} ago</span>'


def badge(state: str) -> str:
    return f'<span class="badge {esc(state)}">{esc(state)}</span>'


def days_left(value: float | None) -> str:
    if value is None:
        return NONE
    css = "bad" if value < 0 else "warn" if value < CERT_WARN_DAYS else ""
    return f'<span class="{css}">{value:.1f}</span>'


def link(query: Mapping[str, str], **changes: str) -> str:
    """A query string for this page with ``changes``, leaving out the defaults."""
    merged = {"state": "all", "sort": "state", **query, **changes}
    kept = {k: v for k, v in merged.items() if (k, v) not in (("state", "all"), ("sort", "state"))}
    return f"?{urlencode(kept)}" if kept else "./"


def current(flag: bool) -> str:
    return ' aria-current="true"' if flag else ""


def document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n<title>{esc(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


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


def controls(items: Sequence[Mapping[str, Any]], query: Mapping[str, str]) -> str:
    counts = {name: 0 for name in views.FILTERS}
    for item in items:
        counts["all"] += 1
        counts[item["state"]] = counts.get(item["state"], 0) + 1
        if item["state"] in views.FAILING:
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


def failure_cell(failure: Mapping[str, Any] | None, now: float) -> str:
    if failure is None:
        return '<span class="muted">none recently</span>'
    when = "now" if failure["current"] else ago(failure["at"], now)
    return (
        f'<span class="bad">{esc(failure["reason"])}</span> <span class="muted">({when})</span>'
        f'<div class="sub">{esc(failure["message"])}</div>'
    )


def targets_section(items: Iterable[Mapping[str, Any]], now: float) -> str:
    rows = []
    for item in items:
        window = item["window"]
        code = item["last_status_code"]
        rows.append(
            f'<tr class="target" data-state="{esc(item["state"])}">'
            f"<td>{badge(item['state'])}</td>"
            f'<td><a href="targets/{esc(quote(item["name"], safe=""))}">{esc(item["name"])}</a>'
            f'<div class="sub">{esc(item["endpoint"])}</div></td>'
            f"<td>{esc(item['kind'])}</td><td>{or_none(item['location'])}</td>"
            f"<td>{failure_cell(item['last_failure'], now)}</td>"
            f'<td class="num">{seconds(item["last_duration_seconds"])}</td>'
            f'<td class="num">{seconds(window["p50_seconds"])}</td>'
            f'<td class="num">{seconds(window["p95_seconds"])}</td>'
            f'<td class="num">{days_left(item["cert_days_left"])}</td>'
            f'<td class="num">{or_none(code)}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="10" class="muted">no targets</td></tr>'
    return (
        '<section id="targets"><h2>Targets</h2><table><thead><tr>'
        "<th>State</th><th>Target</th><th>Kind</th><th>Location</th><th>Last failure</th>"
        '<th class="num">Latency</th><th class="num">p50</th><th class="num">p95</th>'
        '<th class="num">Cert days left</th><th class="num">Status</th>'
        f"</tr></thead><tbody>{body}</tbody></table>"
        '<p class="muted">Latency is the latest probe; p50 and p95 are over the recent probes '
        "kept for each target.</p></section>"
    )


def index_page(runtime: Runtime, query: Mapping[str, str]) -> str:
    state = views.choice(query, "state", views.FILTERS)
    sort = views.choice(query, "sort", views.SORTS)
    now = runtime.clock.time()
    location = runtime.location
    targets = [views.target_summary(s, now, location) for s in runtime.scheduler.all_stats()]
    body = (
        exporter_header(views.exporter_json(runtime, now), now)
        + controls(targets, query)
        + targets_section(views.select(targets, state, sort), now)
        + '<footer><p class="muted"><a href="metrics">metrics</a> · '
        '<a href="api/v1/targets">targets as JSON</a></p></footer>'
    )
    return document("Lookout status", body)


def phases_text(phases: Iterable[Mapping[str, Any]]) -> str:
    return " · ".join(f"{esc(p['phase'])} {seconds(p['seconds'])}" for p in phases) or NONE


def checks_table(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return '<p class="muted">no checks recorded (the probe ended before any ran)</p>'
    rows = "".join(
        f"<tr><td>{badge('pass' if c['passed'] else 'fail')}</td><td>{esc(c['name'])}</td>"
        f"<td><pre>{esc(c['detail'])}</pre></td></tr>"
        for c in checks
    )
    head = "<thead><tr><th>Result</th><th>Check</th><th>Detail</th></tr></thead>"
    return f"<table>{head}{rows}</table>"


def chain_table(certificates: Sequence[Mapping[str, Any]], now: float) -> str:
    if not certificates:
        return '<p class="muted">no certificate presented</p>'
    rows = "".join(
        f"<tr><td>{i}</td><td>{esc(c['subject'])}"
        f'<div class="sub">{esc(", ".join(c["dns_names"]))}</div></td>'
        f"<td>{esc(c['issuer'])}</td><td>{timestamp(c['not_after'])}</td>"
        f'<td class="num">{days_left((c["not_after"] - now) / views.SECONDS_PER_DAY)}</td>'
        f'<td class="sub">{esc(c["serial"])}<br>{esc(c["fingerprint_sha256"])}</td></tr>'
        for i, c in enumerate(certificates)
    )
    return (
        "<table><thead><tr><th>#</th><th>Subject</th><th>Issuer</th><th>Not after</th>"
        '<th class="num">Days left</th><th>Serial, SHA-256</th></tr></thead>'
        f"{rows}</table>"
    )


def history_table(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return '<p class="muted">not probed yet</p>'
    rows = "".join(
        f'<tr data-success="{str(r["success"]).lower()}"><td>{timestamp(r["finished_at"])}</td>'
        f"<td>{badge('pass' if r['success'] else 'fail')}</td>"
        f'<td class="num">{seconds(r["duration_seconds"])}</td>'
        f"<td>{phases_text(r['phases'])}</td>"
        f'<td class="num">{or_none(r["status_code"])}</td>'
        f"<td>{esc(r['reason'] or '')}</td><td><pre>{esc(r['message'])}</pre></td></tr>"
        for r in history
    )
    return (
        "<table><thead><tr><th>Finished</th><th>Result</th>"
        '<th class="num">Duration</th><th>Phases</th><th class="num">Status</th>'
        f"<th>Reason</th><th>Message</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def detail_page(detail: Mapping[str, Any], now: float) -> str:
    window = detail["window"]
    request = detail["request"]
    labels = ", ".join(f"{k}={v}" for k, v in detail["labels"].items())
    failures = ", ".join(f"{k}: {v}" for k, v in detail["failures_total"].items()) or "none"
    method = f"{esc(request['method'])} " if "method" in request else ""
    facts = {
        "State": badge(detail["state"]),
        "Kind": esc(detail["kind"]),
        "Probes": f"{method}{esc(detail['endpoint'])}",
        "Settings": or_none(" · ".join(f"{k} {v}" for k, v in request["options"].items())),
        "Location": or_none(detail["location"]),
        "Labels": or_none(labels),
        "Interval, timeout": f"{format_duration(detail['interval_seconds'])}, "
        f"{format_duration(detail['timeout_seconds'])}",
        "Last run": ago(detail["last_run_at"], now),
        "Recent window": f"{window['probes']} probes, {window['failures']} failed, "
        f"p50 {seconds(window['p50_seconds'])}, p95 {seconds(window['p95_seconds'])}",
        "Since start": f"{detail['probes_total']} probes; failures by reason: {esc(failures)}",
        "Certificate days left": days_left(detail["cert_days_left"]),
    }
    latest = detail["history"][0] if detail["history"] else None
    latest_html = ""
    if latest is not None:
        latest_html = (
            f"<h2>Latest probe</h2><p>{badge('pass' if latest['success'] else 'fail')} "
            f"{esc(latest['reason'] or '')} <pre>{esc(latest['message'])}</pre></p>"
            f"<h3>Checks</h3>{checks_table(latest['checks'])}"
            f"<h3>Certificate chain</h3>{chain_table(latest['certificates'], now)}"
        )
    body = (
        '<p><a href="../">← all targets</a></p>'
        f"<h1>{esc(detail['name'])}</h1><dl>"
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts.items())
        + f"</dl>{latest_html}<h2>Recent probes</h2>{history_table(detail['history'])}"
    )
    return document(f"{detail['name']} - Lookout", body)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def _error_page(status: int, message: str, home: str) -> web.Response:
    body = f'<p><a href="{home}">← all targets</a></p><h1>{status}</h1><p>{esc(message)}</p>'
    return _html(document(f"{status} - Lookout", body), status)


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def index(request: web.Request) -> web.Response:
        try:
            return _html(index_page(runtime, request.query))
        except ValueError as exc:
            return _error_page(400, str(exc), "./")

    async def target(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return _error_page(404, f"no target named {name!r}", "../")
        now = runtime.clock.time()
        return _html(detail_page(views.target_detail(stats, now, runtime.location), now))

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name}", target)
