"""HTML building blocks shared by the status pages: escaping, times and durations for people,
state badges, the document shell with its inline style, and the response headers.

Every value that did not come from this package goes through ``esc`` (``html.escape``); the
Content-Security-Policy sent with every page forbids scripts besides, and allows only the inline
style and the empty inline icon (so a browser asks for no favicon).
"""

from __future__ import annotations

import html
import time

from aiohttp import web

__all__ = [
    "CSP",
    "NONE",
    "ago",
    "badge",
    "days_left",
    "document",
    "error_page",
    "esc",
    "or_none",
    "respond",
    "seconds",
    "span",
    "timestamp",
    "until",
    "utc",
]

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


def until(value: float | None, now: float) -> str:
    """``in 5m`` or ``12m ago``, with the time itself as the tooltip."""
    if value is None:
        return NONE
    when = f"in {span(value - now)}" if value >= now else f"{span(now - value)} ago"
    return f'<span title="{utc(value)}">{when}</span>'


def badge(state: str) -> str:
    return f'<span class="badge {esc(state)}">{esc(state)}</span>'


def days_left(value: float | None) -> str:
    if value is None:
        return NONE
    css = "bad" if value < 0 else "warn" if value < CERT_WARN_DAYS else ""
    return f'<span class="{css}">{value:.1f}</span>'


def document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n<title>{esc(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def respond(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def error_page(status: int, message: str, home: str) -> web.Response:
    body = f'<p><a href="{home}">← all targets</a></p><h1>{status}</h1><p>{esc(message)}</p>'
    return respond(document(f"{status} - Lookout", body), status)
