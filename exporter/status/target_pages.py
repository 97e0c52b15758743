"""The target parts of the status page: the targets table of ``GET /`` and the page of one target
(``GET /targets/{name}``) with its latest checks, certificate chain and recent probes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from exporter.status import views
from exporter.status.markup import (
    NONE,
    ago,
    badge,
    days_left,
    document,
    esc,
    or_none,
    seconds,
    timestamp,
)
from exporter.units import format_duration

__all__ = ["detail_page", "targets_section"]


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
    latest = detail["latest"]
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
