"""Typed probe targets: the common ``Target`` and one spec dataclass per probe kind.

Builders turn a schema-validated mapping into these frozen dataclasses, parsing units, compiling
regexes, reading ``*_file`` secrets and JSON Schemas, so a prober never parses anything at run
time. Equality of two targets is what a reload uses to decide whether a target changed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from exporter.config_source import ConfigProblem, KeyPath, Source, describe_error
from exporter.units import StatusPattern, parse_duration, parse_size, parse_status

__all__ = [
    "RESERVED_LABELS",
    "ClientTLS",
    "HeaderExpectation",
    "HttpExpect",
    "HttpSpec",
    "Slo",
    "Target",
    "build_target",
]

# Labels the exporter sets itself; a target's static labels may not reuse them.
RESERVED_LABELS = frozenset(
    {"target", "kind", "location", "reason", "phase", "slo", "le", "job", "instance", "heartbeat"}
)


@dataclass(frozen=True, slots=True)
class Slo:
    """Objectives as ratios (99.9 in the config is 0.999 here)."""

    availability: float | None
    latency_threshold: float | None
    latency_objective: float | None


@dataclass(frozen=True, slots=True)
class ClientTLS:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: str | None = None


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


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes | None = field(default=None, repr=False)
    tls: ClientTLS = ClientTLS()
    follow_redirects: bool = True
    max_redirects: int = 10
    ip_family: str = "any"
    proxy_url: str | None = None
    reuse_connections: bool = False
    expect: HttpExpect = HttpExpect()


Spec = HttpSpec


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    kind: str
    interval: float
    timeout: float
    labels: tuple[tuple[str, str], ...]
    slo: Slo | None
    spec: Spec


def build_target(
    raw: Mapping[str, Any], at: KeyPath, source: Source, *, interval: float, timeout: float
) -> Target:
    interval = parse_duration(raw["interval"]) if "interval" in raw else interval
    timeout = parse_duration(raw["timeout"]) if "timeout" in raw else timeout
    if interval <= 0:
        raise ConfigProblem((*at, "interval"), "interval must be greater than 0")
    if timeout <= 0:
        raise ConfigProblem((*at, "timeout"), "timeout must be greater than 0")
    if timeout > interval:
        raise ConfigProblem(
            (*at, "timeout"), f"timeout ({raw.get('timeout', timeout)}) exceeds the interval"
        )
    labels = raw.get("labels", {})
    for name in labels:
        if name in RESERVED_LABELS or name.startswith("__"):
            raise ConfigProblem((*at, "labels", name), f"label {name!r} is reserved")
    kind = raw["kind"]
    return Target(
        name=raw["name"],
        kind=kind,
        interval=interval,
        timeout=timeout,
        labels=tuple(sorted(labels.items())),
        slo=_build_slo(raw["slo"]) if "slo" in raw else None,
        spec=SPEC_BUILDERS[kind](raw, at, source),
    )


def _build_slo(raw: Mapping[str, Any]) -> Slo:
    latency = raw.get("latency")
    return Slo(
        availability=round(raw["availability"] / 100, 10) if "availability" in raw else None,
        latency_threshold=parse_duration(latency["threshold"]) if latency else None,
        latency_objective=round(latency["objective"] / 100, 10) if latency else None,
    )


def compile_regex(pattern: str, at: KeyPath) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ConfigProblem(at, f"invalid regular expression {pattern!r}: {exc}") from None


def _build_http(raw: Mapping[str, Any], at: KeyPath, source: Source) -> HttpSpec:
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
    tls = _build_client_tls(http.get("tls", {}), (*hat, "tls"), source)
    return HttpSpec(
        url=raw["url"],
        method=http.get("method", "GET"),
        headers=tuple(headers.items()),
        body=body,
        tls=tls,
        follow_redirects=http.get("follow_redirects", True),
        max_redirects=http.get("max_redirects", 10),
        ip_family=http.get("ip_family", "any"),
        proxy_url=http.get("proxy_url"),
        reuse_connections=http.get("reuse_connections", False),
        expect=_build_http_expect(raw.get("expect", {}), (*at, "expect"), source),
    )


def _build_client_tls(raw: Mapping[str, Any], at: KeyPath, source: Source) -> ClientTLS:
    files = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in raw:
            path = source.path(raw[key])
            if not path.is_file():
                raise ConfigProblem((*at, key), f"file {str(path)!r} does not exist")
            files[key] = str(path)
    return ClientTLS(
        server_name=raw.get("server_name"),
        insecure_skip_verify=raw.get("insecure_skip_verify", False),
        min_version=raw.get("min_version"),
        **files,
    )


def _build_http_expect(raw: Mapping[str, Any], at: KeyPath, source: Source) -> HttpExpect:
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
                (*at, "json_schema"), f"not a valid JSON Schema: {describe_error(exc)}"
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
    )


def _load_json_schema(value: Any, at: KeyPath, source: Source) -> Any:
    if not isinstance(value, str):
        return value
    text = source.read_text(value, at)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigProblem(at, f"{value}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


SPEC_BUILDERS: dict[str, Callable[[Mapping[str, Any], KeyPath, Source], Spec]] = {
    "http": _build_http,
}
