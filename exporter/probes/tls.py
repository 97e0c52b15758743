"""The TLS prober: a handshake with ``address``, directly or after STARTTLS, and its checks.

Checks: the chain verifies (system CAs or ``tls.ca_file``), the leaf matches the server name,
the negotiated version is at least ``tls.min_version``, and the chain stays valid for at least
``expect.valid_for``. The presented chain and the version are recorded whatever happens, so
``lookout_tls_cert_expiry_timestamp_seconds`` shows an expired or untrusted certificate too.
Phases: resolve, connect, starttls (the plaintext negotiation), tls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exporter.probes.connection import abort, open_stream, start_tls
from exporter.probes.starttls import NEGOTIATIONS
from exporter.probes.tlsinfo import observe_handshakes
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.targets import Target, TlsSpec

if TYPE_CHECKING:
    from exporter.probes.context import ProbeContext

__all__ = ["probe"]


async def probe(target: Target, ctx: ProbeContext) -> None:
    spec = target.spec
    assert isinstance(spec, TlsSpec)
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
        trace.check(
            "min_version", True, f"negotiated {trace.tls_version}, minimum {settings.min_version}"
        )


def _check_validity(valid_for: float, trace: ProbeTrace) -> None:
    if not trace.chain:
        trace.check("valid_for", False, "no certificate presented")
        raise ProbeFailure(Reason.CERT_INVALID, "the server presented no certificate")
    expiry = min(cert.not_after for cert in trace.chain)
    left = expiry - trace.clock.time()
    detail = f"expires in {left / 86400:.1f} days, must stay valid for {valid_for / 86400:g} days"
    if not trace.check("valid_for", left >= valid_for, detail):
        reason = Reason.CERT_EXPIRED if left < 0 else Reason.CERT_EXPIRING
        raise ProbeFailure(reason, f"certificate {detail}")
