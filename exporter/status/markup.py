"""The status pages' HTML: one Jinja environment that escapes every value it outputs unless the
value is markup, the filters that put times, durations and states into words for people, and the
responses with their headers.

Autoescape is on for every template, so ``{{ value }}`` is escaped wherever it appears and no
call site can forget it. Only the filters here make ``Markup``, from their own literals, what
they format from numbers (times, durations, days: ``time.gmtime``, ``int`` and ``:.1f`` take
nothing else) and ``escape_text``'d text, so no value can bring its own tags; no template marks
anything ``|safe`` (``tests/test_status_page.py`` holds both to that). The
Content-Security-Policy sent with every page forbids scripts besides, and allows only the inline
style and the empty inline icon (so a browser asks for no favicon).

The templates in ``templates/`` are compiled once, when the module using them is imported. A line
break in an ``.html`` template, with the indentation after it, is left out of the page:
templates are indented for people while the pages stay as compact as hand-written HTML, so a
space that matters is written inside a line.
"""

from __future__ import annotations

import functools
import html
import operator
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.ext import Extension
from markupsafe import Markup

from exporter.status.pictures import clock_time
from exporter.status.views import SECONDS_PER_DAY
from exporter.units import format_duration

__all__ = ["CSP", "ENVIRONMENT", "error_page", "escape_text", "respond"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
NONE = Markup("&ndash;")
# Certificates expiring sooner than this are highlighted.
CERT_WARN_DAYS = 14
_LINE_BREAK = re.compile(r"\n\s*")
# The characters ``quote`` leaves as they are in a path segment.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def escape_text(value: object) -> str:
    """``value`` as HTML: markup (anything with ``__html__``) as it is, anything else as text
    escaped the way ``html.escape`` does it (the entities these pages always had). Text with
    nothing to escape comes back as it is, without the ``Markup`` object ``markupsafe.escape``
    would allocate for it."""
    if type(value) is not str:
        if isinstance(value, Markup):
            return value
        to_html = getattr(value, "__html__", None)
        if to_html is not None:
            return str(to_html())
        value = str(value)
    if "&" in value or "<" in value or ">" in value or '"' in value or "'" in value:
        return html.escape(value)
    return value


def or_none(value: object) -> object:
    """The value (escaped where it is output), or a dash for a missing one."""
    return NONE if value is None or value == "" else value


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def percent(value: float) -> str:
    """An uptime ratio as ``99.95 %``: two decimals, never rounded up to 100 unless it is."""
    if value >= 1:
        return "100 %"
    return f"{min(value * 100, 99.99):.2f} %"


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


def timestamp(value: float) -> Markup:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return Markup(f'<time datetime="{iso}">{utc(value)}</time>')


def ago(value: float | None, now: float) -> str:
    """``12m ago`` with the time itself as the tooltip, or ``never``."""
    if value is None:
        return "never"
    return Markup(f'<span title="{utc(value)}">{span(max(0.0, now - value))} ago</span>')


def until(value: float | None, now: float) -> str:
    """``in 5m`` or ``12m ago``, with the time itself as the tooltip."""
    if value is None:
        return NONE
    when = f"in {span(value - now)}" if value >= now else f"{span(now - value)} ago"
    return Markup(f'<span title="{utc(value)}">{when}</span>')


@functools.lru_cache(maxsize=64)
def badge(state: str) -> Markup:
    """A state as a coloured label. There are few states, so each label is built once."""
    text = escape_text(state)
    return Markup(f'<span class="badge {text}">{text}</span>')


def days_left(value: float | None) -> str:
    """Days as ``10.0``, orange below ``CERT_WARN_DAYS``, red once negative."""
    if value is None:
        return NONE
    css = "bad" if value < 0 else "warn" if value < CERT_WARN_DAYS else ""
    return Markup(f'<span class="{css}">{value:.1f}</span>')


def days_until(value: float, now: float) -> float:
    return (value - now) / SECONDS_PER_DAY


def pairs(mapping: Mapping[str, object], between: str, separator: str) -> str:
    """``{"a": 1, "b": 2}`` as ``a=1, b=2`` (with ``between="="`` and ``separator=", "``)."""
    return separator.join(f"{key}{between}{value}" for key, value in mapping.items())


def facts(mapping: Mapping[str, object], omit: tuple[str, ...] = ()) -> str:
    """A kind's facts (the API's ``facts``) as ``key value · key value``: missing ones and the
    keys ``omit`` (shown on their own, as a flow's steps) left out, lists joined, nested
    mappings as ``key=value``, ratios and seconds kept short."""

    def shown(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.6g}"
        if isinstance(value, list | tuple):
            return ", ".join(shown(item) for item in value) or "none"
        if isinstance(value, Mapping):
            return ", ".join(f"{key}={shown(item)}" for key, item in value.items()) or "none"
        return str(value)

    return " · ".join(
        f"{key.replace('_', ' ')} {shown(value)}"
        for key, value in mapping.items()
        if value is not None and key not in omit
    )


def instances(value: Mapping[str, int] | None) -> str:
    """A heartbeat's instances as ``alive / expected``, or a dash for one without."""
    return NONE if value is None else f"{value['alive']} / {value['expected']}"


def earlier_failures(count: int) -> str:
    """What a heartbeat's row says about failures it no longer shows."""
    return f"{count} since start, see its page" if count else "none"


def path_segment(value: str) -> str:
    """``value`` quoted as one segment of a relative link, a ``/`` in it too. Most names need no
    quoting, and a match says so faster than ``quote`` does."""
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


class _CodeGenerator(CodeGenerator):
    """Compiles each ``{{ value }}`` of an autoescaped template to
    ``environment.escape_text(value)`` instead of markupsafe's ``escape(value)``: the same
    escaping, without a ``Markup`` object per value. That allocation, not the escaping, made the
    targets table twice as slow to render as the hand-written HTML it replaces. What a template
    outputs is only ever joined, so the pieces need not be ``Markup``; macros and ``{% set %}``
    blocks still return ``Markup``.

    ``_output_child_pre`` is the hook Jinja's own ``NativeCodeGenerator`` overrides, but not
    public API: Jinja is pinned to 3.1.x, and a test fails when a template compiles without it
    (the pages would still be escaped, by markupsafe, only slower).
    """

    def _output_child_pre(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        if frame.eval_ctx.volatile or not frame.eval_ctx.autoescape:
            super()._output_child_pre(node, frame, finalize)
            return
        self.write("environment.escape_text(")
        if finalize.src is not None:
            self.write(finalize.src)


class _JoinLines(Extension):
    """Leaves line breaks and the indentation after them out of ``.html`` templates."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name is None or not name.endswith(".html"):
            return source
        return _LINE_BREAK.sub("", source)


class _Environment(Environment):
    """Jinja's environment with the two functions templates call per value as slots (the
    quickest attributes to read): ``escape_text`` for each output, and, for each
    ``view["key"]``, Python's own subscript in place of Jinja's, which falls back to attributes
    and to undefined values. The views are dicts; a key one lacks raises ``KeyError`` naming it.
    """

    __slots__ = ("escape_text", "getitem")
    code_generator_class = _CodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.escape_text = escape_text
        self.getitem = operator.getitem  # type: ignore[method-assign, assignment]


ENVIRONMENT = _Environment(
    loader=PackageLoader("exporter.status"),
    autoescape=True,
    undefined=StrictUndefined,
    extensions=[_JoinLines],
    auto_reload=False,
)
ENVIRONMENT.filters.update(
    ago=ago,
    badge=badge,
    clock=clock_time,
    days_left=days_left,
    days_until=days_until,
    duration=format_duration,
    earlier_failures=earlier_failures,
    facts=facts,
    instances=instances,
    or_none=or_none,
    pairs=pairs,
    path_segment=path_segment,
    percent=percent,
    seconds=seconds,
    span=span,
    timestamp=timestamp,
    until=until,
)
# Templates are compiled at their first use, and kept (Jinja's cache holds every one of them):
# the first request for a page takes a few tens of milliseconds longer, and an exporter whose
# pages nobody opens never holds Jinja's compiler (about 6 MiB resident).


def respond(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def error_page(status: int, message: str, home: str) -> web.Response:
    page = ENVIRONMENT.get_template("error.html")
    return respond(page.render(status=status, message=message, home=home), status)
