"""Typed probe targets: the common ``Target`` and one spec dataclass per probe kind.

Builders turn a schema-validated mapping into these frozen dataclasses, parsing units, compiling
regexes, reading ``*_file`` secrets and JSON Schemas, so a prober never parses anything at run
time. Equality of two targets is what a reload uses to decide whether a target changed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import jsonschema

from exporter.config_source import ConfigProblem, KeyPath, Source, describe_error
from exporter.units import StatusPattern, parse_duration, parse_size, parse_status

__all__ = [
    "RESERVED_LABELS",
    "ClientTLS",
    "DialogStep",
    "DnsExpect",
    "DnsSpec",
    "Expect",
    "HeaderExpectation",
    "HttpExpect",
    "HttpSpec",
    "Send",
    "Slo",
    "SmtpAuth",
    "SmtpSpec",
    "StartTls",
    "Target",
    "TcpSpec",
    "TlsSpec",
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


_DEFAULT_CLIENT_TLS = ClientTLS()


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


@dataclass(frozen=True, slots=True)
class Send:
    """A dialog step: write these bytes (the text plus CRLF unless it ends with a newline)."""

    data: bytes = field(repr=False)  # may carry a password (Redis AUTH)


@dataclass(frozen=True, slots=True)
class Expect:
    """A dialog step: read lines until one matches (line endings stripped before matching)."""

    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class StartTls:
    """A dialog step: the TLS handshake, on the connection as it is at this point."""

    tls: ClientTLS


DialogStep = Send | Expect | StartTls


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int
    ip_family: str = "any"
    tls: ClientTLS | None = None  # TLS right after connecting
    dialog: tuple[DialogStep, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsSpec:
    host: str
    port: int
    ip_family: str = "any"
    starttls: str | None = None  # smtp, imap, pop3, ftp or postgres
    tls: ClientTLS = ClientTLS()
    valid_for: float | None = None


@dataclass(frozen=True, slots=True)
class DnsExpect:
    rcodes: tuple[dns.rcode.Rcode, ...] = (dns.rcode.Rcode.NOERROR,)
    min_answers: int = 1
    max_answers: int | None = None
    any_answer_matches: tuple[re.Pattern[str], ...] = ()
    all_answers_match: tuple[re.Pattern[str], ...] = ()
    no_answer_matches: tuple[re.Pattern[str], ...] = ()
    answers: frozenset[dns.rdata.Rdata] | None = None


@dataclass(frozen=True, slots=True)
class DnsSpec:
    query: dns.name.Name
    record: dns.rdatatype.RdataType = dns.rdatatype.RdataType.A
    nameserver: str | None = None  # an IP address; None: the system's first nameserver
    port: int = 53
    transport: str = "udp"
    recursion: bool = True
    expect: DnsExpect = DnsExpect()


@dataclass(frozen=True, slots=True)
class SmtpAuth:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SmtpSpec:
    host: str
    port: int
    ip_family: str = "any"
    implicit_tls: bool = False
    starttls: str = "optional"  # required, optional or never
    ehlo_name: str = field(default_factory=socket.gethostname)
    tls: ClientTLS = ClientTLS()
    auth: SmtpAuth | None = None


Spec = HttpSpec | TcpSpec | TlsSpec | DnsSpec | SmtpSpec


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
        kind=sys.intern(kind),
        interval=interval,
        timeout=timeout,
        # Label names and values repeat across targets: one string each instead of one per target.
        labels=tuple(sorted((sys.intern(k), sys.intern(v)) for k, v in labels.items())),
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
    if not raw:
        return _DEFAULT_CLIENT_TLS  # shared by every target without TLS settings
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


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (the schema checked the shape) -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _address(raw: Mapping[str, Any], at: KeyPath) -> tuple[str, int]:
    host, port = parse_address(raw["address"])
    if not 0 < port < 65536:
        raise ConfigProblem((*at, "address"), f"port {port} is out of range (1-65535)")
    return host, port


def _tls_setting(value: Any, at: KeyPath, source: Source) -> ClientTLS | None:
    """``true``/``false`` or a ``client_tls`` mapping."""
    if value is False:
        return None
    return _build_client_tls({} if value is True else value, at, source)


def _build_tcp(raw: Mapping[str, Any], at: KeyPath, source: Source) -> TcpSpec:
    host, port = _address(raw, at)
    tcp = raw.get("tcp", {})
    tat: KeyPath = (*at, "tcp")
    tls = _tls_setting(tcp.get("tls", False), (*tat, "tls"), source)
    steps: list[DialogStep] = []
    starttls_at: int | None = None
    for i, item in enumerate(tcp.get("dialog", [])):
        if "send" in item:
            text = item["send"]
            steps.append(Send((text if text.endswith("\n") else text + "\r\n").encode()))
        elif "expect" in item:
            steps.append(Expect(compile_regex(item["expect"], (*tat, "dialog", i, "expect"))))
        else:
            step_at: KeyPath = (*tat, "dialog", i, "starttls")
            if tls is not None:
                raise ConfigProblem(step_at, "tcp.tls already starts TLS right after connecting")
            if starttls_at is not None:
                raise ConfigProblem(step_at, f"TLS already starts at dialog step {starttls_at}")
            starttls_at = i
            settings = item["starttls"]  # true or a client_tls mapping (the schema allows no false)
            steps.append(
                StartTls(_build_client_tls({} if settings is True else settings, step_at, source))
            )
    return TcpSpec(
        host=host, port=port, ip_family=tcp.get("ip_family", "any"), tls=tls, dialog=tuple(steps)
    )


def _build_tls(raw: Mapping[str, Any], at: KeyPath, source: Source) -> TlsSpec:
    host, port = _address(raw, at)
    tls = dict(raw.get("tls", {}))
    ip_family = tls.pop("ip_family", "any")
    starttls = tls.pop("starttls", None)
    expect = raw.get("expect", {})
    return TlsSpec(
        host=host,
        port=port,
        ip_family=ip_family,
        starttls=starttls,
        tls=_build_client_tls(tls, (*at, "tls"), source),
        valid_for=parse_duration(expect["valid_for"]) if "valid_for" in expect else None,
    )


def _build_dns(raw: Mapping[str, Any], at: KeyPath, source: Source) -> DnsSpec:
    try:
        query = dns.name.from_text(raw["query"])
    except dns.exception.DNSException as exc:
        raise ConfigProblem((*at, "query"), f"invalid name {raw['query']!r}: {exc}") from None
    record = dns.rdatatype.from_text(raw.get("record", "A"))
    settings = raw.get("dns", {})
    nameserver: str | None = None
    port = 53
    if "nameserver" in settings:
        nameserver, port = _nameserver(settings["nameserver"], (*at, "dns", "nameserver"))
    return DnsSpec(
        query=query,
        record=record,
        nameserver=nameserver,
        port=port,
        transport=settings.get("transport", "udp"),
        recursion=settings.get("recursion", True),
        expect=_build_dns_expect(raw.get("expect", {}), (*at, "expect"), record),
    )


def _nameserver(text: str, at: KeyPath) -> tuple[str, int]:
    """``10.0.0.2``, ``10.0.0.2:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353``."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else -1
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = int(rest) if rest.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigProblem(at, f"{text!r} is not an IP address (with an optional :port)") from None
    if not 0 < port < 65536:
        raise ConfigProblem(at, f"{text!r} has no valid port (1-65535)")
    return host, port


def _build_dns_expect(
    raw: Mapping[str, Any], at: KeyPath, record: dns.rdatatype.RdataType
) -> DnsExpect:
    rcodes = tuple(dns.rcode.from_text(name) for name in raw.get("rcode", ["NOERROR"]))
    # A name that must exist is the common case; only then does no answer count as a failure.
    default_min = 1 if rcodes == (dns.rcode.Rcode.NOERROR,) else 0
    min_answers = raw.get("min_answers", default_min)
    max_answers = raw.get("max_answers")
    if max_answers is not None and max_answers < min_answers:
        raise ConfigProblem(
            (*at, "max_answers"),
            f"max_answers ({max_answers}) is below min_answers ({min_answers})",
        )
    answers = None
    if "answers" in raw:
        parsed = []
        for i, text in enumerate(raw["answers"]):
            try:
                parsed.append(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, record, text, origin=dns.name.root, relativize=False
                    )
                )
            except (dns.exception.DNSException, ValueError) as exc:
                raise ConfigProblem(
                    (*at, "answers", i), f"{text!r} is not valid {record.name} data: {exc}"
                ) from None
        answers = frozenset(parsed)

    def regexes(key: str) -> tuple[re.Pattern[str], ...]:
        return tuple(compile_regex(p, (*at, key, i)) for i, p in enumerate(raw.get(key, [])))

    return DnsExpect(
        rcodes=rcodes,
        min_answers=min_answers,
        max_answers=max_answers,
        any_answer_matches=regexes("any_answer_matches"),
        all_answers_match=regexes("all_answers_match"),
        no_answer_matches=regexes("no_answer_matches"),
        answers=answers,
    )


def _build_smtp(raw: Mapping[str, Any], at: KeyPath, source: Source) -> SmtpSpec:
    host, port = _address(raw, at)
    smtp = raw.get("smtp", {})
    sat: KeyPath = (*at, "smtp")
    implicit_tls = smtp.get("implicit_tls", port == 465)
    starttls = smtp.get("starttls", "never" if implicit_tls else "optional")
    if implicit_tls and starttls != "never":
        raise ConfigProblem(
            (*sat, "starttls"), f"starttls: {starttls} cannot be used with implicit TLS"
        )
    auth = None
    if "auth" in smtp:
        item = smtp["auth"]
        password = item.get("password", "")
        if "password_file" in item:
            password = source.read_text(item["password_file"], (*sat, "auth", "password_file"))
        auth = SmtpAuth(item["username"], password)
    extra = {"ehlo_name": smtp["ehlo_name"]} if "ehlo_name" in smtp else {}
    return SmtpSpec(
        host=host,
        port=port,
        ip_family=smtp.get("ip_family", "any"),
        implicit_tls=implicit_tls,
        starttls=starttls,
        tls=_build_client_tls(smtp.get("tls", {}), (*sat, "tls"), source),
        auth=auth,
        **extra,
    )


SPEC_BUILDERS: dict[str, Callable[[Mapping[str, Any], KeyPath, Source], Spec]] = {
    "http": _build_http,
    "tcp": _build_tcp,
    "tls": _build_tls,
    "dns": _build_dns,
    "smtp": _build_smtp,
}
