"""The heartbeat parts of the status page: the heartbeats table of ``GET /`` and the page of one
heartbeat (``GET /heartbeats/{name}``) with its kept pings and their bodies.

A ping body is job output: it is shown escaped, the list shows its end (where errors are), and a
heartbeat with a token gets its bodies replaced by a note unless the request had the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from exporter.status.markup import (
    NONE,
    ago,
    badge,
    document,
    esc,
    or_none,
    seconds,
    timestamp,
    until,
)
from exporter.units import format_duration

__all__ = ["heartbeat_page", "heartbeats_section"]

# Characters of a ping body shown in the list (its end, where errors are) and on its own page.
BODY_EXCERPT = 300
BODY_FULL = 4000


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
