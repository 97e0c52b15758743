"""The HTTP/API kind: one request (following redirects if allowed), timed by phase, then every
``expect`` check on the response: status, HTTP version, headers, size, body regexes, JSON Schema,
duration.

Phases (``http_timing``): resolve, connect, tls, processing (request sent to response headers)
and transfer (the body). All checks are evaluated and recorded for the debug output; the probe
fails with the reason of the first one that failed. Its own series are
``lookout_http_status_code`` and ``lookout_http_response_size_bytes``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
from multidict import CIMultiDictProxy

from exporter import __version__
from exporter.config_source import (
    ConfigProblem,
    KeyPath,
    Source,
    compile_regex,
)
from exporter.config_source import (
    describe_error as describe_schema_error,
)
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.context import ProbeContext
from exporter.probes.http_timing import RequestTiming, end_connection
from exporter.probes.kind import Kind
from exporter.probes.tlsinfo import (
    client_context,
    describe_error,
    failure_from_ssl_error,
    handshake_failure,
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
from exporter.redaction import redact_url, secret_header
from exporter.results import ProbeTrace, Sample
from exporter.units import StatusPattern, format_duration, parse_duration, parse_size, parse_status

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
_USER_AGENT = f"Lookout/{__version__}"

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
    json_validator: jsonschema.protocols.Validator | None = field(default=None, compare=False)
    max_size: int | None = None
    max_duration: float | None = None
    http_version: tuple[str, ...] = ()
    values: tuple[ValueCheck, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes | None = field(default=None, repr=False)
    tls: ClientTLS = NO_CLIENT_TLS
    follow_redirects: bool = True
    max_redirects: int = 10
    ip_family: str = "any"
    proxy_url: str | None = None
    reuse_connections: bool = False
    expect: HttpExpect = HttpExpect()
    # export: numbers read by JSONPath, written as lookout_probe_value{name}.
    exports: tuple[Extraction, ...] = ()


@dataclass(frozen=True, slots=True)
class HttpObservation:
    """The response as far as it came: status and version from its head, then the body size."""

    status_code: int
    http_version: str | None
    response_size: int | None = None
    # The exported numbers found, by name (export:).
    values: tuple[tuple[str, float], ...] = ()

    def samples(self) -> Iterator[Sample]:
        yield STATUS_CODE, self.status_code, ""
        if self.response_size is not None:
            yield RESPONSE_SIZE, self.response_size, ""
        for name, value in self.values:
            yield PROBE_VALUE, value, label_pairs([("name", name)])

    def json(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "http_version": self.http_version,
            "response_size_bytes": self.response_size,
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
    http = raw.get("http", {})
    hat: KeyPath = (*at, "http")
    headers = dict(http.get("headers", {}))
    for name, path in http.get("header_files", {}).items():
        headers[name] = source.read_text(path, (*hat, "header_files", name))
    if "bearer_token" in http or "bearer_token_file" in http:
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
        pair = f"{auth['username']}:{password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    body: bytes | None = None
    if "body" in http:
        body = http["body"].encode()
    elif "body_file" in http:
        body = source.read_text(http["body_file"], (*hat, "body_file")).encode()
    return HttpSpec(
        url=raw["url"],
        method=http.get("method", "GET"),
        headers=tuple(headers.items()),
        body=body,
        tls=build_client_tls(http.get("tls", {}), (*hat, "tls"), source),
        follow_redirects=http.get("follow_redirects", True),
        max_redirects=http.get("max_redirects", 10),
        ip_family=http.get("ip_family", "any"),
        proxy_url=http.get("proxy_url"),
        reuse_connections=http.get("reuse_connections", False),
        expect=_build_expect(raw.get("expect", {}), (*at, "expect"), source),
        exports=build_exports(raw.get("export", {}), (*at, "export")),
    )


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
        schema = _load_json_schema(raw["json_schema"], (*at, "json_schema"), source)
        validator_class = jsonschema.validators.validator_for(
            schema, jsonschema.Draft202012Validator
        )
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigProblem(
                (*at, "json_schema"), f"not a valid JSON Schema: {describe_schema_error(exc)}"
            ) from None
        validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
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
        values=build_value_checks(raw.get("values", ()), (*at, "values")),
    )


def _load_json_schema(value: Any, at: KeyPath, source: Source) -> Any:
    if not isinstance(value, str):
        return value
    text = source.read_text(value, at)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigProblem(at, f"{value}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def endpoint(spec: HttpSpec) -> str:
    return redact_url(spec.url)


def options(spec: HttpSpec) -> dict[str, str]:
    redirects = f"up to {spec.max_redirects}" if spec.follow_redirects else "not followed"
    settings = {"ip family": spec.ip_family, "redirects": redirects}
    if spec.proxy_url:
        settings["proxy"] = redact_url(spec.proxy_url)
    if spec.reuse_connections:
        settings["connections"] = "reused"
    return settings | (tls_options(spec.tls) if spec.url.startswith("https") else {})


def request(spec: HttpSpec) -> dict[str, Any]:
    return {
        "method": spec.method,
        "headers": [
            {"name": name, "value": "<redacted>" if secret_header(name) else value}
            for name, value in spec.headers
        ],
        "body_bytes": len(spec.body) if spec.body is not None else 0,
    }


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one request got: the response's headers and body (as far as read), and the
    failures of the checks, in order (the first one is the probe's failure)."""

    headers: CIMultiDictProxy[str]
    body: bytes
    failures: list[ProbeFailure]
    # The body parsed as JSON when a check or an export needed it, else None.
    document: Any = None


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
    headers = {"User-Agent": _USER_AGENT, **dict(spec.headers)}
    session = ctx.clients.http.get(spec.ip_family, spec.reuse_connections)
    with observe_handshakes(clock) as handshake:
        timing = RequestTiming(clock, trace, handshake)
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
            version = response.version
            seen = HttpObservation(
                response.status, f"{version.major}.{version.minor}" if version else None
            )
            trace.observation = seen
            failures = _check_head(spec.expect, seen, trace, response.headers)
            with trace.phase("transfer"):
                body, complete = await _read_body(response, spec.expect)
    trace.observation = seen = dataclasses.replace(seen, response_size=len(body))
    document, body_failures = _check_body(spec.expect, body, complete, trace, clock.time())
    failures += body_failures
    if spec.exports and not body_failures:
        if document is None:
            document, failure = parse_document(body.decode("utf-8", "replace"), trace, "export")
            failures += [failure] if failure is not None else []
        if document is not None:
            values, export_failures = read_exports(spec.exports, document, trace)
            failures += export_failures
            trace.observation = dataclasses.replace(seen, values=tuple(values))
    elapsed = clock.monotonic() - started
    max_duration = spec.expect.max_duration
    if max_duration is not None and not trace.check(
        "max_duration",
        elapsed <= max_duration,
        f"took {format_duration(elapsed)}, limit {format_duration(max_duration)}",
    ):
        failures.append(ProbeFailure(Reason.SLOW, trace.checks[-1].detail))
    return Exchange(response.headers, body, failures, document)


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
    expect: HttpExpect, seen: HttpObservation, trace: ProbeTrace, headers: CIMultiDictProxy[str]
) -> list[ProbeFailure]:
    failures = []
    status = seen.status_code
    wanted = ", ".join(p.text for p in expect.status)
    if not trace.check(
        "status", any(p.matches(status) for p in expect.status), f"{status}, expected {wanted}"
    ):
        failures.append(ProbeFailure(Reason.STATUS, f"status {status}, expected {wanted}"))
    if expect.http_version and not trace.check(
        "http_version",
        seen.http_version in expect.http_version,
        f"HTTP/{seen.http_version}, expected {', '.join(expect.http_version)}",
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
    expect: HttpExpect, body: bytes, complete: bool, trace: ProbeTrace, now: float
) -> tuple[Any, list[ProbeFailure]]:
    """The body's checks, and the body parsed as JSON when a check needed it (else None)."""
    failures: list[ProbeFailure] = []
    if expect.max_size is not None:
        detail = (
            f"{len(body)} bytes, limit {expect.max_size}"
            if complete
            else f"more than {expect.max_size} bytes (stopped reading)"
        )
        if not trace.check("max_size", complete, detail):
            return None, [ProbeFailure(Reason.SIZE, f"body is {detail}")]
    elif not complete:
        detail = f"body exceeds {BODY_LIMIT} bytes, the limit for checks (stopped reading)"
        trace.check("body_limit", False, detail)
        return None, [ProbeFailure(Reason.SIZE, detail)]
    if not (
        expect.body_matches or expect.body_not_matches or expect.json_validator or expect.values
    ):
        return None, failures
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
    if expect.json_validator is None and not expect.values:
        return None, failures
    check = "json_schema" if expect.json_validator is not None else "values"
    document, not_json = parse_document(text, trace, check)
    if not_json is not None:
        return None, [*failures, not_json]
    if expect.json_validator is not None:
        failures.extend(_check_json(expect.json_validator, document, trace))
    failures.extend(check_values(expect.values, document, now, trace))
    return document, failures


def _check_json(
    validator: jsonschema.protocols.Validator, document: Any, trace: ProbeTrace
) -> list[ProbeFailure]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
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
    exc: aiohttp.ClientError, timing: RequestTiming | None = None
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


def _connector_failure(
    exc: aiohttp.ClientConnectorError, timing: RequestTiming | None
) -> ProbeFailure:
    """A connection that could not be made: in the TLS step once its handshake started (the
    same outcome the other probers give a handshake), else resolving or connecting."""
    error = exc.os_error
    if timing is not None:
        handshake = timing.handshake
        if handshake.started_at is not None and handshake.finished_at is None:
            end_connection(timing)
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


KIND = Kind(
    name="http",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(STATUS_CODE, RESPONSE_SIZE),
    request=request,
)
