"""The human status page: ``GET /`` lists every target and heartbeat, ``GET /targets/{name}``
shows one target's recent probes, like blackbox_exporter's "recent probes" page, and
``GET /heartbeats/{name}`` one heartbeat's kept pings with their bodies (those of a heartbeat with
a token only with ``?token=``, as in the heartbeat read API).

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

from exporter.heartbeats.api import DEFAULT_LIMIT
from exporter.heartbeats.auth import authorized
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
# Characters of a ping body shown in the list (its end, where errors are) and on its own page.
BODY_EXCERPT = 300
BODY_FULL = 4000
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
.badge.late { background: var(--warn); }
.badge.up, .badge.pass, .badge.success { background: var(--ok); }
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


def until(value: float | None, now: float) -> str:
    """``in 5m`` or ``12m ago``, with the time itself as the tooltip."""
    if value is None:
        return NONE
    when = f"in {span(value - now)}" if value >= now else f"{span(now - value)} ago"
    return f'<span title="{utc(value)}">{when}</span>'


def body_excerpt(body: str | None, limit: int = BODY_EXCERPT) -> str:
    if body is None:
        return '<span class="muted">body hidden: this heartbeat has a token</span>'
    if not body:
        return '<span class="muted">empty body</span>'
    tail = body if len(body) <= limit else "..." + body[-limit:]
    return f"<pre>{esc(tail)}</pre>"


def ping_failure_cell(failure: Mapping[str, Any] | None, failures: int, now: float) -> str:
    """The last failure with the end of its body; ``failures`` counts them since the start."""
    if failure is None:
        earlier = f"{failures} since start, see its page" if failures else "none"
        return f'<span class="muted">{earlier}</span>'
    code = f", exit code {esc(failure['exit_code'])}" if failure["exit_code"] is not None else ""
    return (
        f'<span class="bad">fail</span> <span class="muted">({ago(failure["at"], now)}{code})'
        f'</span><div class="sub">{body_excerpt(failure["body"])}</div>'
    )


def instances_text(instances: Mapping[str, Any] | None) -> str:
    if instances is None:
        return NONE
    return f"{esc(instances['alive'])} / {esc(instances['expected'])}"


def heartbeats_section(items: Iterable[Mapping[str, Any]], now: float) -> str:
    rows = []
    for item in items:
        rows.append(
            f'<tr class="heartbeat" data-state="{esc(item["status"])}">'
            f"<td>{badge(item['status'])}</td>"
            f'<td><a href="heartbeats/{esc(quote(item["name"], safe=""))}">{esc(item["name"])}'
            f'</a><div class="sub">{esc(item["schedule"])}, grace '
            f"{format_duration(item['grace_seconds'])}</div></td>"
            f"<td>{ago(item['last_success'], now)}</td>"
            f"<td>{until(item['deadline'], now)}</td>"
            f'<td class="num">{seconds(item["last_duration_seconds"])}</td>'
            f'<td class="num">{or_none(item["last_exit_code"])}</td>'
            f'<td class="num">{instances_text(item["instances"])}</td>'
            f"<td>{ping_failure_cell(item['last_failure'], item['pings']['fail'], now)}</td>"
            "</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="8" class="muted">no heartbeats</td></tr>'
    return (
        '<section id="heartbeats"><h2>Heartbeats</h2><table><thead><tr>'
        "<th>State</th><th>Heartbeat</th><th>Last success</th><th>Deadline</th>"
        '<th class="num">Last duration</th><th class="num">Exit code</th>'
        '<th class="num">Instances alive</th><th>Last failure</th>'
        f"</tr></thead><tbody>{body}</tbody></table></section>"
    )


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


def pings_table(pings: Sequence[Mapping[str, Any]]) -> str:
    if not pings:
        return '<p class="muted">no pings kept</p>'
    rows = "".join(
        f'<tr data-signal="{esc(p["signal"])}"><td>{timestamp(p["at"])}</td>'
        f"<td>{badge('fail' if p['signal'] == 'fail' else p['signal'])}</td>"
        f"<td>{or_none(p['instance'])}</td><td>{or_none(p['rid'])}</td>"
        f'<td class="num">{or_none(p["exit_code"])}</td>'
        f'<td class="num">{seconds(p["duration_seconds"])}</td>'
        f"<td>{body_excerpt(p['body'], BODY_FULL)}</td></tr>"
        for p in pings
    )
    return (
        "<table><thead><tr><th>Received</th><th>Signal</th><th>Instance</th><th>Run id</th>"
        '<th class="num">Exit code</th><th class="num">Duration</th><th>Body</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def heartbeat_page(detail: Mapping[str, Any], now: float) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in detail["labels"].items())
    counts = detail["pings"]
    max_runtime = detail["max_runtime_seconds"]
    facts = {
        "State": badge(detail["status"]),
        "Schedule": esc(detail["schedule"]),
        "Grace, max runtime": f"{format_duration(detail['grace_seconds'])}, "
        + (format_duration(max_runtime) if max_runtime is not None else "the grace"),
        "Labels": or_none(labels),
        "Last success": ago(detail["last_success"], now),
        "Last start": ago(detail["last_start"], now),
        "Deadline": until(detail["deadline"], now),
        "Last duration, exit code": f"{seconds(detail['last_duration_seconds'])}, "
        f"{or_none(detail['last_exit_code'])}",
        "Instances alive": instances_text(detail["instances"]),
        "Pings since start": esc(", ".join(f"{k}: {v}" for k, v in counts.items())),
        "Last failure": ping_failure_cell(detail["last_failure"], counts["fail"], now),
    }
    body = (
        '<p><a href="../">← status page</a></p>'
        f"<h1>{esc(detail['name'])}</h1><dl>"
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts.items())
        + f"</dl><h2>Recent pings</h2>{pings_table(detail['recent'])}"
    )
    return document(f"{detail['name']} - Lookout", body)


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def index(request: web.Request) -> web.Response:
        try:
            return _html(await index_page(runtime, request.query))
        except ValueError as exc:
            return _error_page(400, str(exc), "./")

    async def heartbeat(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        spec = runtime.heartbeats.specs.get(name)
        if spec is None:
            return _error_page(404, f"no heartbeat named {name!r}", "../")
        visible = spec.token is None or authorized(request, spec.token)
        detail = await views.heartbeat_detail(runtime.heartbeats, spec, DEFAULT_LIMIT, visible)
        return _html(heartbeat_page(detail, runtime.clock.time()))

    async def target(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stats = runtime.scheduler.stats.get(name)
        if stats is None:
            return _error_page(404, f"no target named {name!r}", "../")
        now = runtime.clock.time()
        return _html(detail_page(views.target_detail(stats, now, runtime.location), now))

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name}", target)
    app.router.add_get("/heartbeats/{name}", heartbeat)
