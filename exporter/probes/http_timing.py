"""The phases of an HTTP request, from aiohttp's tracing signals: resolve, connect, tls,
processing (request sent to response headers). ``transfer`` (the body) is timed by the prober.

The TLS handshake's start comes from ``tlsinfo.ObservedSSLContext``, which separates ``connect``
and ``tls`` inside aiohttp's connection setup. Each request carries its own ``RequestTiming`` as
aiohttp's ``trace_request_ctx``; the sessions install ``phase_trace_config`` once. A request
that cannot carry one (aiohttp's ``ws_connect``) sets ``current_timing`` in its task instead.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from exporter.clock import Clock
from exporter.lazy_import import lazy_module
from exporter.probes.tlsinfo import Handshake
from exporter.results import ProbeTrace

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_module("aiohttp")

__all__ = ["RequestTiming", "current_timing", "end_connection", "phase_trace_config"]


@dataclass(slots=True)
class RequestTiming:
    """Per-request state for the tracing callbacks (aiohttp's ``trace_request_ctx``)."""

    clock: Clock
    trace: ProbeTrace
    handshake: Handshake
    connection_start: float = 0.0
    resolve_in_connection: float = 0.0
    resolve_start: float = 0.0
    ready: float = 0.0


# The timing of a request made in this task without a trace_request_ctx (a WebSocket upgrade).
current_timing: ContextVar[RequestTiming | None] = ContextVar("lookout_timing", default=None)


def _timing(ctx: SimpleNamespace) -> RequestTiming | None:
    timing = ctx.trace_request_ctx
    return timing if isinstance(timing, RequestTiming) else current_timing.get()


async def _on_request_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.ready = t.clock.monotonic()


async def _on_resolve_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.resolve_start = t.clock.monotonic()
        t.trace.active = "resolve"


async def _on_resolve_end(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        elapsed = t.clock.monotonic() - t.resolve_start
        t.resolve_in_connection += elapsed
        t.trace.add_phase("resolve", elapsed)


async def _on_connection_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.connection_start = t.clock.monotonic()
        t.trace.active = "connect"
        t.resolve_in_connection = 0.0
        t.handshake.started_at = None


async def _on_connection_end(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.ready = end_connection(t)
        t.trace.active = "processing"


def end_connection(t: RequestTiming) -> float:
    """Record the connect and (if it started) tls phases of the connection being made; now."""
    now = t.clock.monotonic()
    tls_start = t.handshake.started_at
    connected = tls_start if tls_start is not None else now
    t.trace.add_phase("connect", connected - t.connection_start - t.resolve_in_connection)
    if tls_start is not None:
        t.trace.add_phase("tls", now - tls_start)
    return now


async def _on_reused(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.ready = t.clock.monotonic()


async def _on_response_headers(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.trace.add_phase("processing", t.clock.monotonic() - t.ready)


def phase_trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_on_request_start)
    config.on_dns_resolvehost_start.append(_on_resolve_start)
    config.on_dns_resolvehost_end.append(_on_resolve_end)
    config.on_connection_create_start.append(_on_connection_start)
    config.on_connection_create_end.append(_on_connection_end)
    config.on_connection_reuseconn.append(_on_reused)
    config.on_request_redirect.append(_on_response_headers)
    config.on_request_end.append(_on_response_headers)
    return config
