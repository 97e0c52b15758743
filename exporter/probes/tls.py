"""The TLS kind: a handshake with ``address``, directly or after STARTTLS, and its checks.

Checks: the chain verifies (system CAs or ``tls.ca_file``), the leaf matches the server name,
the negotiated version is at least ``tls.min_version``, and the chain stays valid for at least
``expect.valid_for``. The presented chain and the version are recorded whatever happens, so
``lookout_tls_cert_expiry_timestamp_seconds`` shows an expired or untrusted certificate too.
Phases: resolve, connect, starttls (the plaintext negotiation), tls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.addresses import build_address, format_address
from exporter.config_source import KeyPath, Source
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.connection import abort, open_stream, start_tls
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.probes.starttls import NEGOTIATIONS
from exporter.probes.tlsinfo import observe_handshakes
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.units import format_duration, parse_duration

__all__ = ["KIND", "TlsSpec"]


@dataclass(frozen=True, slots=True)
class TlsSpec:
    host: str
    port: int
    ip_family: str = "any"
    starttls: str | None = None  # smtp, imap, pop3, ftp or postgres
    tls: ClientTLS = NO_CLIENT_TLS
    valid_for: float | None = None


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> TlsSpec:
    host, port = build_address(raw, at)
    tls = dict(raw.get("tls", {}))
    ip_family = tls.pop("ip_family", "any")
    starttls = tls.pop("starttls", None)
    expect = raw.get("expect", {})
    return TlsSpec(
        host=host,
        port=port,
        ip_family=ip_family,
        starttls=starttls,
        tls=build_client_tls(tls, (*at, "tls"), source),
        valid_for=parse_duration(expect["valid_for"]) if "valid_for" in expect else None,
    )


def endpoint(spec: TlsSpec) -> str:
    return format_address(spec.host, spec.port)


def options(spec: TlsSpec) -> dict[str, str]:
    settings = {"ip family": spec.ip_family}
    if spec.starttls:
        settings["starttls"] = spec.starttls
    if spec.valid_for is not None:
        settings["valid for at least"] = format_duration(spec.valid_for)
    return settings | tls_options(spec.tls)


async def probe(spec: TlsSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    with observe_handshakes(ctx.clock) as handshake:
        reader, writer = await open_stream(spec.host, spec.port, spec.ip_family, trace)
        try:
            if spec.starttls is not None:
                with trace.phase("starttls"):
                    await NEGOTIATIONS[spec.starttls](reader, writer)
            try:
                await start_tls(writer, spec.tls, spec.host, trace, handshake)
            except ProbeFailure as failure:
                trace.check("handshake", False, failure.message)
                raise
        finally:
            abort(writer)
    _record_passed(spec, trace)
    if spec.valid_for is not None:
        _check_validity(spec.valid_for, trace)


def _record_passed(spec: TlsSpec, trace: ProbeTrace) -> None:
    """The checks the handshake itself made, for the debug output."""
    settings = spec.tls
    if settings.insecure_skip_verify:
        trace.check("chain", True, "not verified (insecure_skip_verify)")
    else:
        trust = settings.ca_file or "the system CAs"
        trace.check("chain", True, f"verified against {trust}")
        trace.check("hostname", True, f"matches {settings.server_name or spec.host}")
    if settings.min_version:
        version = trace.tls.version if trace.tls is not None else None
        trace.check("min_version", True, f"negotiated {version}, minimum {settings.min_version}")


def _check_validity(valid_for: float, trace: ProbeTrace) -> None:
    chain = trace.tls.chain if trace.tls is not None else ()
    if not chain:
        trace.check("valid_for", False, "no certificate presented")
        raise ProbeFailure(Reason.CERT_INVALID, "the server presented no certificate")
    expiry = min(cert.not_after for cert in chain)
    left = expiry - trace.clock.time()
    detail = f"expires in {left / 86400:.1f} days, must stay valid for {valid_for / 86400:g} days"
    if not trace.check("valid_for", left >= valid_for, detail):
        reason = Reason.CERT_EXPIRED if left < 0 else Reason.CERT_EXPIRING
        raise ProbeFailure(reason, f"certificate {detail}")


KIND = Kind(
    name="tls",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    imports=always("cryptography.x509"),
)
