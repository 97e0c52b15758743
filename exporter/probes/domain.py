"""The domain kind: a domain registration's expiry, registrar and status through RDAP (RFC 9083),
the registries' JSON over HTTPS.

The RDAP server of the domain's registry comes from the IANA bootstrap file (RFC 9224): a copy
ships in the package (``rdap_dns.json``, see ``BOOTSTRAP_PUBLICATION``) and
``rdap.bootstrap_file`` points at a fresh one; nothing is fetched at start-up. It is read when the
config is loaded, so a domain whose top-level domain has no RDAP server is a config error. One
probe is one ``GET <server>domain/<name>`` on the shared HTTP sessions (phases as for HTTP:
resolve, connect, tls, processing, transfer). RDAP servers rate-limit, so this kind's default
interval is 6 hours (``DEFAULT_INTERVAL``) whatever ``defaults.interval`` says.

Reasons: ``domain_not_found`` for 404 (the registry knows no such domain), ``rate_limited`` for
429, ``status`` for any other answer but 200, ``json`` for a body that is not JSON, ``protocol``
for JSON that is not an RDAP domain object.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.context import ProbeContext, user_agent
from exporter.probes.http_failures import client_error_failure
from exporter.probes.http_timing import RequestTiming
from exporter.probes.kind import Kind, always
from exporter.probes.tlsinfo import (
    client_context,
    describe_error,
    observe_handshakes,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.redaction import redact_url
from exporter.results import ProbeTrace, Sample

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_module("aiohttp")

__all__ = [
    "BOOTSTRAP_FILE",
    "DEFAULT_INTERVAL",
    "KIND",
    "DomainObservation",
    "DomainSpec",
    "rdap_server",
]

# The packaged copy of https://data.iana.org/rdap/dns.json.
BOOTSTRAP_FILE = Path(__file__).with_name("rdap_dns.json")
DEFAULT_INTERVAL = 6 * 3600.0
# The largest RDAP answer read; domain objects are a few KiB.
BODY_LIMIT = 1024 * 1024

EXPIRY = Family(
    "lookout_domain_expiry_timestamp_seconds",
    "gauge",
    "When the domain registration expires (the RDAP expiration event), from the latest probe.",
)
INFO = Family(
    "lookout_domain_info",
    "gauge",
    "The domain's registrar and its RDAP status values (sorted, comma-separated) from the latest "
    "probe, always 1.",
)


@dataclass(frozen=True, slots=True)
class DomainSpec:
    domain: str  # lower case, A-labels (xn--), no final dot
    server: str  # the RDAP base URL, ending with a slash
    tls: ClientTLS = NO_CLIENT_TLS
    ip_family: str = "any"

    @property
    def url(self) -> str:
        return f"{self.server}domain/{self.domain}"


@dataclass(frozen=True, slots=True)
class DomainObservation:
    """What the registry answered: the HTTP status and, for a domain object, its facts."""

    status_code: int
    expiry: float | None = None
    registrar: str | None = None
    statuses: tuple[str, ...] = ()

    def samples(self) -> Iterator[Sample]:
        if self.expiry is not None:
            yield EXPIRY, self.expiry, ""
        if self.registrar is not None or self.statuses:
            labels = [("registrar", self.registrar or ""), ("status", ",".join(self.statuses))]
            yield INFO, 1, label_pairs(labels)

    def json(self) -> dict[str, Any]:
        return {
            "domain_expiry": self.expiry,
            "registrar": self.registrar,
            "domain_status": list(self.statuses),
        }

    def summary(self) -> list[str]:
        parts = [f"status {self.status_code}"]
        if self.expiry is not None:
            day = datetime.datetime.fromtimestamp(self.expiry, datetime.UTC).date()
            parts.append(f"expires {day.isoformat()}")
        if self.registrar is not None:
            parts.append(f"registrar {self.registrar}")
        if self.statuses:
            parts.append(", ".join(self.statuses))
        return parts


# Parsed bootstrap files by (path, mtime): a config with many domains reads each file once.
_bootstraps: dict[tuple[str, float], dict[str, tuple[str, ...]]] = {}


def _bootstrap(path: Path, at: KeyPath) -> dict[str, tuple[str, ...]]:
    """The bootstrap file as a map of label suffix (``com``, ``co.uk``) to RDAP base URLs."""
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise ConfigProblem(at, f"cannot read file {str(path)!r}: {exc.strerror}") from None
    cached = _bootstraps.get(key)
    if cached is not None:
        return cached
    try:
        document = json.loads(path.read_bytes())
        services = document["services"]
        table = {
            suffix.lower().rstrip("."): tuple(urls)
            for suffixes, urls in services
            for suffix in suffixes
        }
    except OSError as exc:
        raise ConfigProblem(at, f"cannot read file {str(path)!r}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigProblem(
            at, f"{str(path)!r} is not an RDAP bootstrap file (RFC 9224): {exc}"
        ) from None
    _bootstraps[key] = table
    return table


def rdap_server(domain: str, bootstrap: Mapping[str, tuple[str, ...]]) -> str | None:
    """The base URL for ``domain``: the longest matching label suffix, HTTPS preferred."""
    labels = domain.split(".")
    for start in range(len(labels)):
        urls = bootstrap.get(".".join(labels[start:]))
        if urls:
            chosen = next((u for u in urls if u.startswith("https://")), urls[0])
            return chosen if chosen.endswith("/") else chosen + "/"
    return None


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> DomainSpec:
    name = raw["domain"].rstrip(".")
    try:
        domain = name.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ConfigProblem(
            (*at, "domain"), f"{name!r} is not a valid domain name: {exc}"
        ) from None
    settings = raw.get("rdap", {})
    rat: KeyPath = (*at, "rdap")
    if "server" in settings:
        server = settings["server"]
        server = server if server.endswith("/") else server + "/"
    else:
        file_at: KeyPath = (*rat, "bootstrap_file")
        path = source.path(settings["bootstrap_file"]) if "bootstrap_file" in settings else None
        found = rdap_server(domain, _bootstrap(path or BOOTSTRAP_FILE, file_at))
        if found is None:
            where = str(path) if path is not None else "the packaged IANA bootstrap file"
            raise ConfigProblem(
                (*at, "domain"),
                f"no RDAP server for .{domain.rsplit('.', 1)[-1]} in {where}; "
                "set rdap.server, or rdap.bootstrap_file to a fresh copy of "
                "https://data.iana.org/rdap/dns.json",
            )
        server = found
    return DomainSpec(
        domain=domain,
        server=server,
        tls=build_client_tls(settings.get("tls", {}), (*rat, "tls"), source),
        ip_family=settings.get("ip_family", "any"),
    )


def endpoint(spec: DomainSpec) -> str:
    return spec.domain


def options(spec: DomainSpec) -> dict[str, str]:
    settings = {"rdap": redact_url(spec.url), "ip family": spec.ip_family}
    return settings | (tls_options(spec.tls) if spec.server.startswith("https") else {})


async def probe(spec: DomainSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    session = ctx.clients.http.get(spec.ip_family, False)
    with observe_handshakes(ctx.clock) as handshake:
        timing = RequestTiming(ctx.clock, trace, handshake)
        try:
            response = await session.get(
                spec.url,
                headers={"Accept": "application/rdap+json", "User-Agent": user_agent()},
                ssl=client_context(spec.tls),
                server_hostname=spec.tls.server_name,
                max_redirects=5,
                trace_request_ctx=timing,
            )
        except aiohttp.ClientError as exc:
            raise client_error_failure(exc, timing) from exc
        finally:
            record_handshake(trace, handshake)
        async with response:
            status = response.status
            trace.observation = DomainObservation(status)
            with trace.phase("transfer"):
                body = await _read(response)
            retry_after = response.headers.get("Retry-After")
    _check_status(spec, status, retry_after, trace)
    document = _parse(body, trace)
    seen = _observe(status, document)
    trace.observation = seen
    if seen.expiry is None:
        trace.check("expiration", True, "the registry publishes no expiration event")
    else:
        left = (seen.expiry - ctx.clock.time()) / 86400
        trace.check("expiration", True, f"expires in {left:.1f} days")


async def _read(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_chunked(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > BODY_LIMIT:
                raise ProbeFailure(Reason.SIZE, f"RDAP answer larger than {BODY_LIMIT} bytes")
    except aiohttp.ClientError as exc:
        raise ProbeFailure(Reason.RESET, f"RDAP answer incomplete: {describe_error(exc)}") from exc
    return b"".join(chunks)


def _check_status(
    spec: DomainSpec, status: int, retry_after: str | None, trace: ProbeTrace
) -> None:
    if status == 404:
        trace.check("registered", False, f"{spec.domain}: 404 from the RDAP server")
        raise ProbeFailure(
            Reason.DOMAIN_NOT_FOUND, f"the registry knows no domain {spec.domain} (404)"
        )
    if status == 429:
        after = f", retry after {retry_after[:40]}" if retry_after else ""
        trace.check("status", False, f"429 Too Many Requests{after}")
        raise ProbeFailure(Reason.RATE_LIMITED, f"the RDAP server is rate limiting (429{after})")
    if not trace.check("status", status == 200, f"{status}, expected 200"):
        raise ProbeFailure(Reason.STATUS, f"RDAP server answered {status}, expected 200")


def _parse(body: bytes, trace: ProbeTrace) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        trace.check("rdap", False, "the answer is not JSON")
        raise ProbeFailure(Reason.JSON, f"the RDAP answer is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("objectClassName") != "domain":
        trace.check("rdap", False, "not an RDAP domain object")
        raise ProbeFailure(
            Reason.PROTOCOL, "the answer is not an RDAP domain object (objectClassName domain)"
        )
    trace.check("registered", True, f"domain object for {document.get('ldhName', '?')}")
    return document


def _observe(status: int, document: Mapping[str, Any]) -> DomainObservation:
    expiry = None
    for event in _list(document.get("events")):
        if isinstance(event, dict) and event.get("eventAction") == "expiration":
            expiry = _timestamp(event.get("eventDate"))
            if expiry is not None:
                break
    statuses = tuple(sorted(str(s)[:64] for s in _list(document.get("status")))[:16])
    return DomainObservation(status, expiry, _registrar(document), statuses)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _registrar(document: Mapping[str, Any]) -> str | None:
    """The ``fn`` of the vCard of the entity with the role registrar (else its handle)."""
    for entity in _list(document.get("entities")):
        if not isinstance(entity, dict) or "registrar" not in _list(entity.get("roles")):
            continue
        vcard = _list(entity.get("vcardArray"))
        properties = _list(vcard[1]) if len(vcard) > 1 else []
        for item in properties:
            if isinstance(item, list) and len(item) >= 4 and item[0] == "fn":
                return str(item[3])[:128]
        handle = entity.get("handle")
        return str(handle)[:128] if handle is not None else None
    return None


KIND = Kind(
    name="domain",
    imports=always("aiohttp", "cryptography.x509"),
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(EXPIRY, INFO),
    default_interval=DEFAULT_INTERVAL,
)
