"""The HTTP/API prober: one request (following redirects if allowed), timed by phase, then every
``expect`` check on the response: status, HTTP version, headers, size, body regexes, JSON Schema,
duration.

Phases come from aiohttp's tracing signals plus the TLS handshake start that
``tlsinfo.ObservedSSLContext`` records: resolve, connect, tls, processing (request sent to
response headers) and transfer (the body). All checks are evaluated and recorded for the debug
output; the probe fails with the reason of the first one that failed.
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from multidict import CIMultiDictProxy

from exporter import __version__
from exporter.clock import Clock
from exporter.probes.tlsinfo import (
    Handshake,
    client_context,
    describe_error,
    failure_from_ssl_error,
    handshake_failure,
    observe_handshakes,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.targets import HttpExpect, HttpSpec, Target
from exporter.units import format_duration

if TYPE_CHECKING:
    from exporter.probes.context import ProbeContext

__all__ = ["BODY_LIMIT", "HttpSessions", "probe"]

# Bodies are kept for the body and JSON checks up to expect.max_size, or this when none is set.
BODY_LIMIT = 10 * 1024 * 1024
_FAMILIES = {"any": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}
_USER_AGENT = f"Lookout/{__version__}"


@dataclass(slots=True)
class _Timing:
    """Per-probe state for the tracing callbacks (aiohttp's ``trace_request_ctx``)."""

    clock: Clock
    trace: ProbeTrace
    handshake: Handshake
    connection_start: float = 0.0
    resolve_in_connection: float = 0.0
    resolve_start: float = 0.0
    ready: float = 0.0


def _timing(ctx: SimpleNamespace) -> _Timing | None:
    timing = ctx.trace_request_ctx
    return timing if isinstance(timing, _Timing) else None


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
        _add(t.trace, "resolve", elapsed)


async def _on_connection_start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.connection_start = t.clock.monotonic()
        t.trace.active = "connect"
        t.resolve_in_connection = 0.0
        t.handshake.started_at = None


async def _on_connection_end(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.ready = _end_connection(t)
        t.trace.active = "processing"


def _end_connection(t: _Timing) -> float:
    """Record the connect and (if it started) tls phases of the connection being made; now."""
    now = t.clock.monotonic()
    tls_start = t.handshake.started_at
    connected = tls_start if tls_start is not None else now
    _add(t.trace, "connect", connected - t.connection_start - t.resolve_in_connection)
    if tls_start is not None:
        _add(t.trace, "tls", now - tls_start)
    return now


async def _on_reused(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        t.ready = t.clock.monotonic()


async def _on_response_headers(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
    if (t := _timing(ctx)) is not None:
        _add(t.trace, "processing", t.clock.monotonic() - t.ready)


def _add(trace: ProbeTrace, phase: str, seconds: float) -> None:
    trace.phases[phase] = trace.phases.get(phase, 0.0) + max(seconds, 0.0)


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


class HttpSessions:
    """aiohttp sessions shared by all HTTP probes, one per (IP family, connection reuse).

    Sessions are expensive to create and cheap to share; per-target settings (TLS context,
    headers, proxy) go with each request. Without reuse the connector closes each connection
    after its response, so every probe measures a real connect and TLS handshake.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}

    def get(self, ip_family: str, reuse: bool) -> aiohttp.ClientSession:
        key = (ip_family, reuse)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                family=_FAMILIES[ip_family], force_close=not reuse, use_dns_cache=False, limit=0
            )
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                trace_configs=[phase_trace_config()],
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


async def probe(target: Target, ctx: ProbeContext) -> None:
    spec = target.spec
    assert isinstance(spec, HttpSpec)
    trace = ctx.trace
    clock = ctx.clock
    started = clock.monotonic()
    headers = {"User-Agent": _USER_AGENT, **dict(spec.headers)}
    session = ctx.clients.http.get(spec.ip_family, spec.reuse_connections)
    with observe_handshakes(clock) as handshake:
        timing = _Timing(clock, trace, handshake)
        try:
            response = await session.request(
                spec.method,
                spec.url,
                headers=headers,
                data=spec.body,
                # Used only for https connections, also after a redirect from http.
                ssl=client_context(spec.tls),
                server_hostname=spec.tls.server_name,
                allow_redirects=spec.follow_redirects,
                max_redirects=spec.max_redirects,
                proxy=spec.proxy_url,
                trace_request_ctx=timing,
            )
        except aiohttp.ClientError as exc:
            raise _failure_from_client_error(exc, timing) from exc
        finally:
            record_handshake(trace, handshake)
        async with response:
            trace.status_code = response.status
            version = response.version
            trace.http_version = f"{version.major}.{version.minor}" if version else None
            failures = _check_head(spec.expect, response.status, trace, response.headers)
            with trace.phase("transfer"):
                body, complete = await _read_body(response, spec.expect)
    trace.response_size = len(body)
    failures += _check_body(spec.expect, body, complete, trace)
    elapsed = clock.monotonic() - started
    max_duration = spec.expect.max_duration
    if max_duration is not None and not trace.check(
        "max_duration",
        elapsed <= max_duration,
        f"took {format_duration(elapsed)}, limit {format_duration(max_duration)}",
    ):
        failures.append(ProbeFailure(Reason.SLOW, trace.checks[-1].detail))
    if failures:
        raise failures[0]


async def _read_body(response: aiohttp.ClientResponse, expect: HttpExpect) -> tuple[bytes, bool]:
    """The body up to the limit, and whether it ended within it (reading stops past the limit)."""
    limit = expect.max_size if expect.max_size is not None else BODY_LIMIT
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_chunked(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(chunks)[: limit + 1], False
    except aiohttp.ClientPayloadError as exc:
        raise ProbeFailure(Reason.RESET, f"response body incomplete: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise _failure_from_client_error(exc) from exc
    return b"".join(chunks), True


def _check_head(
    expect: HttpExpect, status: int, trace: ProbeTrace, headers: CIMultiDictProxy[str]
) -> list[ProbeFailure]:
    failures = []
    wanted = ", ".join(p.text for p in expect.status)
    if not trace.check(
        "status", any(p.matches(status) for p in expect.status), f"{status}, expected {wanted}"
    ):
        failures.append(ProbeFailure(Reason.STATUS, f"status {status}, expected {wanted}"))
    if expect.http_version and not trace.check(
        "http_version",
        trace.http_version in expect.http_version,
        f"HTTP/{trace.http_version}, expected {', '.join(expect.http_version)}",
    ):
        failures.append(ProbeFailure(Reason.HTTP_VERSION, trace.checks[-1].detail))
    for rule in expect.headers:
        values = headers.getall(rule.name, [])
        if rule.absent:
            passed = not values
            detail = f"{rule.name} must be absent" + ("" if passed else f", got {values[0]!r}")
        elif rule.pattern is None:
            passed = bool(values)
            detail = f"{rule.name} must be present"
        else:
            passed = any(rule.pattern.search(v) for v in values)
            got = f"got {values[0]!r}" if values else "header missing"
            detail = f"{rule.name} must match {rule.pattern.pattern!r}, {got}"
        if not trace.check(f"header {rule.name}", passed, detail):
            failures.append(ProbeFailure(Reason.HEADER, detail))
    return failures


def _check_body(
    expect: HttpExpect, body: bytes, complete: bool, trace: ProbeTrace
) -> list[ProbeFailure]:
    failures: list[ProbeFailure] = []
    if expect.max_size is not None:
        detail = (
            f"{len(body)} bytes, limit {expect.max_size}"
            if complete
            else f"more than {expect.max_size} bytes (stopped reading)"
        )
        if not trace.check("max_size", complete, detail):
            return [ProbeFailure(Reason.SIZE, f"body is {detail}")]
    elif not complete:
        detail = f"body exceeds {BODY_LIMIT} bytes, the limit for checks (stopped reading)"
        trace.check("body_limit", False, detail)
        return [ProbeFailure(Reason.SIZE, detail)]
    if not (expect.body_matches or expect.body_not_matches or expect.json_validator):
        return failures
    text = body.decode("utf-8", errors="replace")
    for pattern in expect.body_matches:
        if not trace.check(f"body matches {pattern.pattern!r}", bool(pattern.search(text)), ""):
            failures.append(ProbeFailure(Reason.BODY, f"body does not match {pattern.pattern!r}"))
    for pattern in expect.body_not_matches:
        found = pattern.search(text)
        detail = f"found {found.group(0)[:80]!r}" if found else ""
        if not trace.check(f"body does not match {pattern.pattern!r}", found is None, detail):
            failures.append(
                ProbeFailure(Reason.BODY, f"body matches {pattern.pattern!r}: {detail}")
            )
    if expect.json_validator is not None:
        failures.extend(_check_json(expect, text, trace))
    return failures


def _check_json(expect: HttpExpect, text: str, trace: ProbeTrace) -> list[ProbeFailure]:
    assert expect.json_validator is not None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        trace.check("json_schema", False, detail)
        return [ProbeFailure(Reason.JSON, detail)]
    errors = sorted(expect.json_validator.iter_errors(document), key=lambda e: list(e.path))
    if not errors:
        trace.check("json_schema", True, "body satisfies the schema")
        return []
    first = errors[0]
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{where}: {first.message}{more}"
    trace.check("json_schema", False, detail)
    return [ProbeFailure(Reason.JSON_SCHEMA, f"JSON Schema: {detail}")]


def _failure_from_client_error(
    exc: aiohttp.ClientError, timing: _Timing | None = None
) -> ProbeFailure:
    """The failure for an aiohttp error; ``timing`` tells a failed TLS step from a failed
    connect when the error came while the connection was being made."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        if isinstance(error, ssl.SSLError):
            return failure_from_ssl_error(error)
        return ProbeFailure(
            Reason.CERT_INVALID, f"certificate verification failed: {describe_error(error)}"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connector_failure(exc, timing)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ProbeFailure(
            Reason.REDIRECT,
            f"too many redirects ({len(exc.history)}), last to {exc.request_info.real_url}",
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return ProbeFailure(Reason.RESET, f"server closed the connection: {describe_error(exc)}")
    if isinstance(exc, aiohttp.ClientOSError):
        return ProbeFailure(Reason.RESET, f"connection error: {describe_error(exc)}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProbeFailure(Reason.RESET, f"response body incomplete: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProbeFailure(Reason.PROTOCOL, f"invalid HTTP response: {exc.message}")
    return ProbeFailure(Reason.PROTOCOL, f"{type(exc).__name__}: {describe_error(exc)}")


def _connector_failure(exc: aiohttp.ClientConnectorError, timing: _Timing | None) -> ProbeFailure:
    """A connection that could not be made: in the TLS step once its handshake started (the
    same outcome the other probers give a handshake), else resolving or connecting."""
    error = exc.os_error
    if timing is not None:
        handshake = timing.handshake
        if handshake.started_at is not None and handshake.finished_at is None:
            _end_connection(timing)
            return handshake_failure(error, handshake)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeFailure(Reason.DNS, f"cannot resolve {exc.host}: {describe_error(error)}")
    if isinstance(error, ssl.SSLError):
        return failure_from_ssl_error(error)
    if isinstance(error, ConnectionRefusedError):
        return ProbeFailure(Reason.REFUSED, f"connection to {exc.host}:{exc.port} refused")
    return ProbeFailure(
        Reason.CONNECT, f"cannot connect to {exc.host}:{exc.port}: {describe_error(error)}"
    )
