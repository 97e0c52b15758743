"""The HTTP/API kind: one request (following redirects if allowed), timed by phase, then every
``expect`` check on the response: status, HTTP version, headers, size, body regexes, JSON Schema,
duration; and what the response announces (``api_signals``: Sunset, Deprecation, Retry-After,
which version answered, the error format of a 4xx/5xx answer).

Phases (``http_timing``): resolve, connect, tls, processing (request sent to response headers)
and transfer (the body). All checks are evaluated and recorded for the debug output; the probe
fails with the reason of the first one that failed (an error answer that breaks
``expect.error_format`` fails as ``error_format`` before its status is considered). Its own
series are ``lookout_http_status_code``, ``lookout_http_response_size_bytes`` and, when the
headers are there, ``lookout_http_sunset_timestamp_seconds``,
``lookout_http_deprecation_timestamp_seconds`` and ``lookout_http_retry_after_seconds``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import mmap
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from exporter.config_source import (
    KeyPath,
    Source,
    check_url,
    compile_regex,
    given,
)
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes import api_signals, json_schema
from exporter.probes.api_signals import NO_SIGNALS, ErrorFormat, Signals, VersionExpectation
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.context import ProbeContext, user_agent
from exporter.probes.http_failures import EXCERPT_CHARS, client_error_failure, excerpt
from exporter.probes.http_timing import RequestTiming
from exporter.probes.json_schema import (
    RefSettings,
    SchemaValidator,
    compile_schema,
    reference_error,
)
from exporter.probes.kind import Kind
from exporter.probes.tlsinfo import (
    client_context,
    observe_handshakes,
    record_handshake,
)
from exporter.probes.values import (
    PROBE_VALUE,
    Extraction,
    ValueCheck,
    build_exports,
    build_value_checks,
    check_values,
    parse_document,
    read_exports,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.redaction import REDACTED, redact_url, secret_header
from exporter.results import ProbeTrace, Sample, shared
from exporter.units import StatusPattern, format_duration, parse_duration, parse_size, parse_status

if TYPE_CHECKING:
    import aiohttp
    import jsonschema
    from multidict import CIMultiDictProxy

    from exporter.probes.clients import BodyBudget
else:  # needed by the prober, or only for a target with a json_schema
    aiohttp = lazy_module("aiohttp")
    jsonschema = lazy_module("jsonschema")

__all__ = [
    "BODY_LIMIT",
    "KIND",
    "Exchange",
    "HeaderExpectation",
    "HttpExpect",
    "HttpObservation",
    "HttpSpec",
    "exchange",
]

# Bodies are kept for the body and JSON checks up to expect.max_size, or this when none is set.
BODY_LIMIT = 10 * 1024 * 1024
# Bodies are read in chunks of at most this size; one without body checks is never held.
CHUNK_BYTES = 65536


STATUS_CODE = Family(
    "lookout_http_status_code", "gauge", "HTTP status code of the latest scheduled probe."
)
RESPONSE_SIZE = Family(
    "lookout_http_response_size_bytes",
    "gauge",
    "Body size read by the latest scheduled probe (capped at expect.max_size + 1).",
)


@dataclass(frozen=True, slots=True)
class HeaderExpectation:
    name: str
    pattern: re.Pattern[str] | None
    absent: bool


@dataclass(frozen=True, slots=True)
class HttpExpect:
    status: tuple[StatusPattern, ...] = (parse_status("2xx"),)
    headers: tuple[HeaderExpectation, ...] = ()
    body_matches: tuple[re.Pattern[str], ...] = ()
    body_not_matches: tuple[re.Pattern[str], ...] = ()
    json_schema: Any = None
    json_validator: SchemaValidator | None = field(default=None, compare=False)
    max_size: int | None = None
    max_duration: float | None = None
    http_version: tuple[str, ...] = ()
    # True: Sunset or Deprecation must announce a deprecation; False: neither may.
    deprecated: bool | None = None
    retry_after_required: bool = False
    error_format: ErrorFormat | None = None
    version: VersionExpectation | None = None
    values: tuple[ValueCheck, ...] = ()


# The secret headers of a target without any: one set for them all (an empty frozenset is
# 216 bytes, and each target's own would survive pickling from the config loader process).
NO_SECRET_HEADERS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Headers whose values came from a file or the environment: never shown.
    secret_headers: frozenset[str] = NO_SECRET_HEADERS
    # Values the environment put into the URL or the proxy URL: never shown.
    secret_values: tuple[str, ...] = field(default=(), repr=False)
    body: bytes | None = field(default=None, repr=False)
    tls: ClientTLS = NO_CLIENT_TLS
    follow_redirects: bool = True
    max_redirects: int = 10
    cross_host_redirects: bool = False
    response_excerpts: bool = False
    ip_family: str = "any"
    proxy_url: str | None = None
    reuse_connections: bool = False
    expect: HttpExpect = HttpExpect()
    # export: numbers read by JSONPath, written as lookout_probe_value{name}.
    exports: tuple[Extraction, ...] = ()
    # Keep the body's text for the caller of ``exchange`` (a flow step that extracts from it).
    keep_text: bool = False


@dataclass(frozen=True, slots=True)
class HttpObservation:
    """The response as far as it came: status and version from its head, then the body size."""

    status_code: int
    http_version: str | None
    response_size: int | None = None
    signals: Signals = NO_SIGNALS
    # The exported numbers found, by name (export:).
    values: tuple[tuple[str, float], ...] = ()

    def sized(self, size: int) -> HttpObservation:
        """This observation with the body's size: every field copied here rather than by
        ``dataclasses.replace``, which took about 3 us per probe."""
        return HttpObservation(self.status_code, self.http_version, size, self.signals, self.values)

    def samples(self) -> Iterator[Sample]:
        yield STATUS_CODE, self.status_code, ""
        if self.response_size is not None:
            yield RESPONSE_SIZE, self.response_size, ""
        signals = self.signals
        if signals.sunset is not None:
            yield api_signals.SUNSET, signals.sunset, ""
        if signals.deprecation is not None:
            yield api_signals.DEPRECATION, signals.deprecation, ""
        if signals.retry_after is not None:
            yield api_signals.RETRY_AFTER, signals.retry_after, ""
        for name, value in self.values:
            yield PROBE_VALUE, value, label_pairs([("name", name)])

    def json(self) -> dict[str, Any]:
        signals = self.signals
        facts: dict[str, Any] = {
            "http_version": self.http_version,
            "response_size_bytes": self.response_size,
            "sunset_timestamp_seconds": signals.sunset,
            "deprecation_timestamp_seconds": signals.deprecation,
            "deprecated": signals.deprecated,
            "retry_after_seconds": signals.retry_after,
        }
        if self.values:
            facts["values"] = dict(self.values)
        return facts

    def summary(self) -> list[str]:
        parts = [f"status {self.status_code}"]
        if self.http_version is not None:
            parts.append(f"HTTP/{self.http_version}")
        if self.response_size is not None:
            parts.append(f"{self.response_size} bytes")
        return parts


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> HttpSpec:
    http = raw.get("http")
    if http is None:  # most targets: no headers, body, TLS or proxy, so nothing of them to build
        return HttpSpec(
            url=check_url(raw["url"], (*at, "url")),
            secret_values=tuple(source.environment_values((*at, "url"))),
            expect=_shared_expect(raw.get("expect", {}), (*at, "expect"), source),
            exports=build_exports(raw["export"], (*at, "export")) if "export" in raw else (),
        )
    hat: KeyPath = (*at, "http")
    headers = dict(http.get("headers", {}))
    secret_headers = {
        name for name in headers if source.environment_values((*hat, "headers", name))
    }
    for name, path in http.get("header_files", {}).items():
        headers[name] = source.read_text(path, (*hat, "header_files", name))
        secret_headers.add(name)
    if "bearer_token" in http or "bearer_token_file" in http:
        secret_headers.add("Authorization")
        token = http.get("bearer_token") or source.read_text(
            http["bearer_token_file"], (*hat, "bearer_token_file")
        )
        headers["Authorization"] = f"Bearer {token}"
    if "basic_auth" in http:
        auth = http["basic_auth"]
        password = auth.get("password", "")
        if "password_file" in auth:
            password = source.read_text(
                auth["password_file"], (*hat, "basic_auth", "password_file")
            )
        secret_headers.add("Authorization")
        pair = f"{auth['username']}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    body: bytes | None = None
    if "body" in http:
        body = http["body"].encode()
    elif "body_file" in http:
        body = source.read_text(http["body_file"], (*hat, "body_file")).encode()
    return HttpSpec(
        url=check_url(raw["url"], (*at, "url")),
        headers=tuple(headers.items()),
        secret_headers=frozenset(secret_headers) if secret_headers else NO_SECRET_HEADERS,
        secret_values=(
            *source.environment_values((*at, "url")),
            *source.environment_values((*hat, "proxy_url")),
        ),
        body=body,
        tls=build_client_tls(http.get("tls", {}), (*hat, "tls"), source),
        expect=_shared_expect(raw.get("expect", {}), (*at, "expect"), source),
        exports=build_exports(raw.get("export", {}), (*at, "export")),
        **given(
            http,
            "method",
            "follow_redirects",
            "max_redirects",
            "cross_host_redirects",
            "response_excerpts",
            "ip_family",
            "proxy_url",
            "reuse_connections",
        ),
    )


def _shared_expect(raw: Mapping[str, Any], at: KeyPath, source: Source) -> HttpExpect:
    """The ``expect`` block, built once per load for each way it is written (its ``repr``
    tells text, numbers and booleans apart, and keys in their order)."""
    return source.shared(("http expect", repr(raw)), lambda: _build_expect(raw, at, source))


def _build_expect(raw: Mapping[str, Any], at: KeyPath, source: Source) -> HttpExpect:
    headers = tuple(
        HeaderExpectation(
            name=item["name"],
            pattern=compile_regex(item["matches"], (*at, "headers", i, "matches"))
            if "matches" in item
            else None,
            absent=item.get("absent", False),
        )
        for i, item in enumerate(raw.get("headers", []))
    )
    schema: Any = None
    validator = None
    if "json_schema" in raw:
        refs = RefSettings(
            allow_remote=raw.get("json_schema_remote_refs", False),
            fetch_timeout=parse_duration(raw.get("json_schema_fetch_timeout", "5s")),
        )
        schema, validator = compile_schema(raw["json_schema"], (*at, "json_schema"), source, refs)
    return HttpExpect(
        status=tuple(parse_status(item) for item in raw.get("status", ["2xx"])),
        headers=headers,
        body_matches=tuple(
            compile_regex(p, (*at, "body_matches", i))
            for i, p in enumerate(raw.get("body_matches", []))
        ),
        body_not_matches=tuple(
            compile_regex(p, (*at, "body_not_matches", i))
            for i, p in enumerate(raw.get("body_not_matches", []))
        ),
        json_schema=schema,
        json_validator=validator,
        max_size=parse_size(raw["max_size"]) if "max_size" in raw else None,
        max_duration=parse_duration(raw["max_duration"]) if "max_duration" in raw else None,
        http_version=tuple(raw.get("http_version", ())),
        deprecated=raw.get("deprecated"),
        retry_after_required=raw.get("retry_after") == "required",
        error_format=_build_error_format(raw["error_format"], (*at, "error_format"), source)
        if "error_format" in raw
        else None,
        version=_build_version(raw["version"], (*at, "version")) if "version" in raw else None,
        values=build_value_checks(raw.get("values", ()), (*at, "values")),
    )


def _build_error_format(raw: Any, at: KeyPath, source: Source) -> ErrorFormat:
    """``problem+json``, or ``{json_schema: ..., content_type: ...}`` for another format."""
    if raw == "problem+json":
        return api_signals.problem_json()
    refs = RefSettings(allow_remote=False, fetch_timeout=5.0)
    schema, validator = compile_schema(raw["json_schema"], (*at, "json_schema"), source, refs)
    name = raw["json_schema"] if isinstance(raw["json_schema"], str) else "the error schema"
    content_type = raw.get("content_type")
    return ErrorFormat(
        name, schema, None if content_type is None else content_type.lower(), validator
    )


def _build_version(raw: Mapping[str, Any], at: KeyPath) -> VersionExpectation:
    pattern = compile_regex(raw["matches"], (*at, "matches")) if "matches" in raw else None
    return api_signals.build_version(raw, pattern)


def endpoint(spec: HttpSpec) -> str:
    return redact_url(spec.url, spec.secret_values)


def options(spec: HttpSpec) -> dict[str, str]:
    redirects = "not followed"
    if spec.follow_redirects:
        hosts = "any host" if spec.cross_host_redirects else "same host"
        redirects = f"up to {spec.max_redirects}, {hosts}"
    settings = {"ip family": spec.ip_family, "redirects": redirects}
    if spec.proxy_url:
        settings["proxy"] = redact_url(spec.proxy_url, spec.secret_values)
    if spec.reuse_connections:
        settings["connections"] = "reused"
    return settings | (tls_options(spec.tls) if spec.url.startswith("https") else {})


def request(spec: HttpSpec) -> dict[str, Any]:
    return {
        "method": spec.method,
        "headers": [
            {
                "name": name,
                "value": REDACTED if name in spec.secret_headers or secret_header(name) else value,
            }
            for name, value in spec.headers
        ],
        "body_bytes": len(spec.body) if spec.body is not None else 0,
    }


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one request got: the response's headers, the body's text when the spec asked to
    keep it, the body parsed as JSON when a value check or an export parsed it, and the
    failures of the checks in order (the first one is the probe's failure)."""

    headers: CIMultiDictProxy[str]
    text: str | None
    document: Any
    failures: list[ProbeFailure]


async def probe(spec: HttpSpec, ctx: ProbeContext) -> None:
    failures = (await exchange(spec, ctx)).failures
    if failures:
        raise failures[0]


async def exchange(spec: HttpSpec, ctx: ProbeContext) -> Exchange:
    """One request and every check of ``spec.expect`` on its response. Raises
    ``ProbeFailure`` when no response came; a response that fails checks is returned."""
    trace = ctx.trace
    clock = ctx.clock
    started = clock.monotonic()
    session = ctx.clients.http.get(spec.ip_family, spec.reuse_connections)
    with observe_handshakes(clock) as handshake:
        timing = RequestTiming(clock, trace, handshake)
        try:
            response = await _follow(session, spec, timing)
        except aiohttp.ClientError as exc:
            raise client_error_failure(exc, timing, spec.response_excerpts) from exc
        finally:
            record_handshake(trace, handshake)
        async with response:
            version = response.version
            seen = HttpObservation(
                response.status,
                f"{version.major}.{version.minor}" if version else None,
                signals=api_signals.read_signals(response.headers, response.status, clock.time()),
            )
            trace.observation = seen
            content_type = response.headers.get("Content-Type", "")
            failures = _check_head(spec, seen, trace, response)
            failures += api_signals.check_signals(
                seen.signals,
                seen.status_code,
                spec.expect.deprecated,
                spec.expect.retry_after_required,
                trace,
                spec.response_excerpts,
            )
            keeps = _keeps_body(spec.expect) or spec.exports or spec.keep_text
            budget = ctx.clients.bodies if keeps else None
            with trace.phase("transfer"):
                body = await _read_body(response, spec.expect, budget, spec.response_excerpts)
    document = None
    try:
        # Equal observations of many targets are one object.
        trace.observation = seen = shared(seen.sized(body.size))
        readable = body.data is not None and body.complete and not body.cut
        text = body.text("replace") if readable else None
        if spec.expect.version is not None and text is not None:
            # After the head's checks, before the body's: a v2 body answering for v1 fails
            # its schema too, but the cause is the version.
            failures += api_signals.check_version(
                spec.expect.version, response.headers, text, trace, spec.response_excerpts
            )
        failures += _check_body(spec, body, trace)
        if (spec.expect.values or spec.exports) and text is not None:
            document, values_failures = _read_values(spec, text, trace, clock.time())
            failures += values_failures
        if spec.expect.error_format is not None and text is not None:
            # Before the status check's failure: an error answer in the wrong format is its
            # own reason, whatever its status.
            failures[:0] = api_signals.check_error_format(
                spec.expect.error_format,
                seen.status_code,
                content_type,
                text,
                trace,
                lambda error: _violation(error, spec.response_excerpts),
                spec.response_excerpts,
            )
    finally:
        body.release()
    elapsed = clock.monotonic() - started
    max_duration = spec.expect.max_duration
    if max_duration is not None and not trace.check(
        "max_duration",
        elapsed <= max_duration,
        f"took {format_duration(elapsed)}, limit {format_duration(max_duration)}",
    ):
        failures.append(ProbeFailure(Reason.SLOW, trace.checks[-1].detail))
    return Exchange(response.headers, text if spec.keep_text else None, document, failures)


def _read_values(
    spec: HttpSpec, text: str, trace: ProbeTrace, now: float
) -> tuple[Any, list[ProbeFailure]]:
    """The value assertions and exports on the JSON body: the document, and their failures;
    the exported numbers go into the trace's observation."""
    document, not_json = parse_document(text, trace, "values" if spec.expect.values else "export")
    if not_json is not None:
        return None, [not_json]
    failures = check_values(spec.expect.values, document, now, trace)
    if spec.exports:
        found, export_failures = read_exports(spec.exports, document, trace)
        failures += export_failures
        if isinstance(trace.observation, HttpObservation):
            trace.observation = dataclasses.replace(trace.observation, values=tuple(found))
    return document, failures


_REDIRECTS = frozenset((301, 302, 303, 307, 308))


async def _follow(
    session: aiohttp.ClientSession, spec: HttpSpec, timing: RequestTiming
) -> aiohttp.ClientResponse:
    """The response to the request, after the redirects the spec allows.

    Redirects are followed here rather than by aiohttp, so that each hop is checked: to the same
    host only unless ``cross_host_redirects``, and once the host changes (or https turns into
    http) the request goes on without the configured headers, body credentials and client
    certificate, and without the pinned server name.
    """
    method, url, body = spec.method, spec.url, spec.body
    headers = {"User-Agent": user_agent(), **dict(spec.headers)}
    tls = spec.tls
    hops = 0
    while True:
        response = await session.request(
            method,
            url,
            headers=headers,
            data=body,
            ssl=client_context(tls),  # used only for https connections
            server_hostname=tls.server_name,
            allow_redirects=False,
            proxy=spec.proxy_url,
            trace_request_ctx=timing,
        )
        location = response.headers.get("Location")
        if not spec.follow_redirects or response.status not in _REDIRECTS or not location:
            return response
        response.release()
        following = urljoin(url, location)
        parts = urlsplit(following)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeFailure(
                Reason.REDIRECT,
                "redirect to a location that is not an http(s) URL, not followed"
                + _got(location, spec.response_excerpts),
            )
        hops += 1
        if hops > spec.max_redirects:
            raise ProbeFailure(
                Reason.REDIRECT,
                f"too many redirects ({spec.max_redirects})"
                + (
                    f", last to {excerpt(redact_url(following, spec.secret_values))}"
                    if spec.response_excerpts
                    else ""
                ),
            )
        origin = urlsplit(spec.url)  # split here: most probes are not redirected
        other_host = parts.hostname.lower() != (origin.hostname or "").lower()
        if other_host and not spec.cross_host_redirects:
            where = f" to {excerpt(parts.hostname)}" if spec.response_excerpts else ""
            raise ProbeFailure(
                Reason.REDIRECT,
                f"redirect{where} on another host than {origin.hostname}, not followed "
                "(http.cross_host_redirects allows it)",
            )
        if other_host or (origin.scheme == "https" and parts.scheme == "http"):
            # Nothing configured for the first host goes to another one, nor over plain http.
            headers = {"User-Agent": headers.get("User-Agent", user_agent())}
            tls = dataclasses.replace(tls, cert_file=None, key_file=None, server_name=None)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            body = None
        url = following


def _keeps_body(expect: HttpExpect) -> bool:
    """Whether a check needs the body itself; without one the body is only counted."""
    return bool(
        expect.body_matches
        or expect.body_not_matches
        or expect.json_validator
        or expect.error_format
        or expect.values
        or (expect.version is not None and expect.version.pointer is not None)
    )


@dataclass(slots=True)
class _Body:
    """A response body as read: its size (capped at the limit + 1), whether it ended within
    the limit, and, for checks that need it, its bytes, held within the body budget.

    The bytes go into an anonymous memory map of the reserved size: its pages become resident
    only as they are written, it never grows by copying, and closing it hands the memory back to
    the system at once (a heap block of that size would keep the process's resident memory high
    after the probe).
    """

    budget: BodyBudget | None
    size: int = 0
    complete: bool = True
    data: mmap.mmap | None = None
    length: int = 0
    reserved: int = 0
    # The budget let this probe keep fewer bytes than the body has (the budget is smaller
    # than the limit).
    cut: bool = False

    def text(self, errors: str) -> str:
        """The kept bytes decoded as UTF-8 (``errors`` as for ``bytes.decode``)."""
        assert self.data is not None
        with memoryview(self.data) as view, view[: self.length] as kept:
            return str(kept, "utf-8", errors)

    def release(self) -> None:
        if self.data is not None:
            self.data.close()
            self.data = None
        if self.budget is not None and self.reserved:
            self.budget.release(self.reserved)
            self.reserved = 0


async def _read_body(
    response: aiohttp.ClientResponse,
    expect: HttpExpect,
    budget: BodyBudget | None,
    expect_excerpts: bool = False,
) -> _Body:
    """The body streamed in chunks of at most 64 KiB: counted, and kept only when ``budget``
    is given (a check needs it), up to what the budget granted. Reading stops past the limit."""
    limit = expect.max_size if expect.max_size is not None else BODY_LIMIT
    body = _Body(budget)
    try:
        if budget is not None:
            length = response.content_length
            wanted = limit + 1 if length is None else min(limit + 1, length)
            body.reserved = await budget.reserve(wanted)
            body.data = mmap.mmap(-1, max(body.reserved, 1))
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            body.size += len(chunk)
            data = body.data
            if data is not None:
                end = min(body.length + len(chunk), body.reserved)
                data[body.length : end] = chunk[: end - body.length]
                body.length = end
                if body.length < body.size <= limit:
                    body.cut = True
                    body.complete = False
                    break
            if body.size > limit:
                body.size = limit + 1
                body.complete = False
                break
    except aiohttp.ClientPayloadError as exc:
        body.release()
        raise ProbeFailure(Reason.RESET, f"response body incomplete: {exc}") from exc
    except aiohttp.ClientError as exc:
        body.release()
        raise client_error_failure(exc, excerpts=expect_excerpts) from exc
    except BaseException:
        body.release()
        raise
    if budget is not None and body.reserved > body.length:
        budget.release(body.reserved - body.length)  # what the body did not need
        body.reserved = body.length
    return body


def _check_head(
    spec: HttpSpec, seen: HttpObservation, trace: ProbeTrace, response: aiohttp.ClientResponse
) -> list[ProbeFailure]:
    expect = spec.expect
    excerpts = spec.response_excerpts
    failures = []
    status = seen.status_code
    wanted = ", ".join(p.text for p in expect.status)
    if not trace.check(
        "status", any(p.matches(status) for p in expect.status), f"{status}, expected {wanted}"
    ):
        reason = Reason.RATE_LIMITED if status == 429 else Reason.STATUS
        failures.append(ProbeFailure(reason, f"status {status}, expected {wanted}"))
    if expect.http_version and not trace.check(
        "http_version",
        seen.http_version in expect.http_version,
        f"HTTP/{seen.http_version}, expected {', '.join(expect.http_version)}",
    ):
        failures.append(ProbeFailure(Reason.HTTP_VERSION, trace.checks[-1].detail))
    for rule in expect.headers:
        values = response.headers.getall(rule.name, [])
        if rule.absent:
            passed = not values
            detail = f"{rule.name} must be absent" + ("" if passed else _got(values[0], excerpts))
        elif rule.pattern is None:
            passed = bool(values)
            detail = f"{rule.name} must be present"
        else:
            passed = any(rule.pattern.search(v) for v in values)
            got = _got(values[0], excerpts) if values else ", header missing"
            detail = f"{rule.name} must match {rule.pattern.pattern!r}{got}"
        if not trace.check(f"header {rule.name}", passed, detail):
            failures.append(ProbeFailure(Reason.HEADER, detail))
    return failures


def _check_body(spec: HttpSpec, body: _Body, trace: ProbeTrace) -> list[ProbeFailure]:
    expect = spec.expect
    failures: list[ProbeFailure] = []
    if body.cut:
        detail = (
            f"body exceeds {body.reserved} bytes, what the budget for bodies in flight "
            "(scheduler.body_bytes_in_flight) lets one probe keep (stopped reading)"
        )
        trace.check("body_limit", False, detail)
        return [ProbeFailure(Reason.SIZE, detail)]
    if expect.max_size is not None:
        detail = (
            f"{body.size} bytes, limit {expect.max_size}"
            if body.complete
            else f"more than {expect.max_size} bytes (stopped reading)"
        )
        if not trace.check("max_size", body.complete, detail):
            return [ProbeFailure(Reason.SIZE, f"body is {detail}")]
    elif not body.complete:
        detail = f"body exceeds {BODY_LIMIT} bytes, the limit for checks (stopped reading)"
        trace.check("body_limit", False, detail)
        return [ProbeFailure(Reason.SIZE, detail)]
    if body.data is None:
        return failures
    text = None
    if expect.body_matches or expect.body_not_matches:
        text = body.text("replace")
    for pattern in expect.body_matches:
        assert text is not None
        if not trace.check(f"body matches {pattern.pattern!r}", bool(pattern.search(text)), ""):
            failures.append(ProbeFailure(Reason.BODY, f"body does not match {pattern.pattern!r}"))
    for pattern in expect.body_not_matches:
        assert text is not None
        found = pattern.search(text)
        detail = ""
        if found and spec.response_excerpts:
            detail = f"found {excerpt(found.group(0))}"
        if not trace.check(f"body does not match {pattern.pattern!r}", found is None, detail):
            message = f"body matches {pattern.pattern!r}" + (f": {detail}" if detail else "")
            failures.append(ProbeFailure(Reason.BODY, message))
    if expect.json_validator is not None:
        failures.extend(
            _check_json(expect.json_validator, body, text, trace, spec.response_excerpts)
        )
    return failures


def _check_json(
    validator: SchemaValidator,
    body: _Body,
    text: str | None,
    trace: ProbeTrace,
    excerpts: bool,
) -> list[ProbeFailure]:
    """The body against the schema; ``text`` is the body decoded for the regexes, if it was."""
    try:
        document = json.loads(body.text("strict") if text is None else text)
    except json.JSONDecodeError as exc:
        detail = f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        trace.check("json_schema", False, detail)
        return [ProbeFailure(Reason.JSON, detail)]
    except UnicodeDecodeError as exc:
        detail = f"body is not JSON: not UTF-8 text at byte {exc.start}"
        trace.check("json_schema", False, detail)
        return [ProbeFailure(Reason.JSON, detail)]
    try:
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    except json_schema.Unresolvable as exc:
        detail = reference_error(exc)
        trace.check("json_schema", False, detail)
        return [ProbeFailure(Reason.JSON_SCHEMA, f"JSON Schema: {detail}")]
    if not errors:
        trace.check("json_schema", True, "body satisfies the schema")
        return []
    first = errors[0]
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = f"{where}: {_violation(first, excerpts)}{more}"
    trace.check("json_schema", False, detail)
    return [ProbeFailure(Reason.JSON_SCHEMA, f"JSON Schema: {detail}")]


def _got(value: str, excerpts: bool) -> str:
    return f", got {excerpt(value)}" if excerpts else ""


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _violation(error: jsonschema.ValidationError, excerpts: bool) -> str:
    """What a JSON Schema error says, without the response's values unless ``excerpts`` (then
    each at most EXCERPT_CHARS long): the keyword and what the schema asks."""
    if excerpts:
        message = error.message
        shown = repr(error.instance)
        if shown in message:
            message = message.replace(shown, excerpt(str(error.instance)), 1)
        return message[: 4 * EXCERPT_CHARS]
    keyword, wanted, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        found = _JSON_TYPES.get(type(instance))
        if found is None:
            found = "null" if instance is None else "a number"
        return f"is {found}, not of type {wanted!r}"
    if keyword == "required" and isinstance(instance, dict) and isinstance(wanted, list):
        missing = [name for name in wanted if name not in instance]
        if missing:
            return f"{missing[0]!r} is a required property"
    shown = repr(wanted)
    if len(shown) > 2 * EXCERPT_CHARS:
        shown = shown[: 2 * EXCERPT_CHARS] + "…"
    return f"fails {keyword!r} ({shown})"


def imports(spec: HttpSpec) -> tuple[str, ...]:
    """aiohttp, and for an https URL cryptography's certificate parser (about 8 MiB resident):
    a target of plain http imports the parser only if a redirect takes it to https."""
    return _TLS_IMPORTS if spec.url.startswith("https:") else _IMPORTS


_IMPORTS = ("aiohttp",)
_TLS_IMPORTS = ("aiohttp", "cryptography.x509")

KIND = Kind(
    name="http",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    imports=imports,
    families=(
        STATUS_CODE,
        RESPONSE_SIZE,
        api_signals.SUNSET,
        api_signals.DEPRECATION,
        api_signals.RETRY_AFTER,
    ),
    request=request,
)
