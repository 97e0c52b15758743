"""The SMTP prober: a real client conversation with aiosmtplib, one timed step after another.

connect (implicit TLS right away on port 465 by default) -> the 220 greeting -> EHLO ->
STARTTLS when offered or required -> EHLO again -> AUTH when credentials are configured -> QUIT.
Phases: resolve, connect, tls, banner, ehlo, starttls, auth. The chain presented on implicit TLS
or after STARTTLS is exported like any TLS endpoint's, also when its verification fails. Each
step fails with its own reason: ``smtp_banner``, ``smtp_ehlo``, ``starttls``, ``smtp_auth``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

import aiosmtplib

from exporter.probes.connection import connect
from exporter.probes.tlsinfo import (
    Handshake,
    client_context,
    failure_from_ssl_error,
    observe_handshakes,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.targets import SmtpAuth, SmtpSpec, Target

if TYPE_CHECKING:
    from exporter.probes.context import ProbeContext

__all__ = ["probe"]


class _Client(aiosmtplib.SMTP):
    """Closes by dropping the connection: the probe is over by then, and a graceful TLS close
    waits up to 30 s for a peer that never answers it."""

    def close(self) -> None:
        if self.transport is not None:
            cast(asyncio.WriteTransport, self.transport).abort()
        super().close()


def _add(trace: ProbeTrace, phase: str, seconds: float) -> None:
    trace.phases[phase] = trace.phases.get(phase, 0.0) + max(seconds, 0.0)


def _lost(step: str, exc: Exception) -> ProbeFailure:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return failure_from_ssl_error(cause)
    return ProbeFailure(Reason.RESET, f"connection lost during {step}: {exc}")


async def probe(target: Target, ctx: ProbeContext) -> None:
    spec = target.spec
    assert isinstance(spec, SmtpSpec)
    trace = ctx.trace
    context = client_context(spec.tls)
    server_name = spec.tls.server_name or spec.host
    with observe_handshakes(ctx.clock) as handshake:
        sock = await connect(spec.host, spec.port, spec.ip_family, trace)
        client = _Client(
            hostname=server_name,
            sock=sock,
            use_tls=spec.implicit_tls,
            start_tls=False,
            tls_context=context if spec.implicit_tls else None,
            timeout=None,
            local_hostname=spec.ehlo_name,
        )
        try:
            await _greeting(client, handshake, trace)
            await _ehlo(client, trace)
            if spec.starttls != "never":
                offered = client.supports_extension("starttls")
                passed = offered or spec.starttls == "optional"
                detail = "offered" if offered else f"not offered ({spec.starttls})"
                if not trace.check("starttls", passed, detail):
                    raise ProbeFailure(Reason.STARTTLS, "the server does not offer STARTTLS")
                if offered:
                    await _starttls(client, context, server_name, handshake, trace)
                    await _ehlo(client, trace)
            if spec.auth is not None:
                with trace.phase("auth"):
                    await _login(client, spec.auth)
            await _quit(client, trace)
        finally:
            if handshake.ssl_object is not None:
                record_handshake(trace, handshake)
            client.close()
            sock.close()


async def _greeting(client: _Client, handshake: Handshake, trace: ProbeTrace) -> None:
    """Connecting (with the TLS handshake on implicit TLS) and reading the 220 greeting."""
    clock = trace.clock
    started = clock.monotonic()
    trace.active = "tls" if client.use_tls else "banner"
    try:
        await client.connect()
    except aiosmtplib.SMTPResponseException as exc:
        detail = f"greeting {exc.code} {exc.message!r}, expected 220"
        if not isinstance(exc, aiosmtplib.SMTPConnectResponseError):
            detail = f"invalid greeting: {exc.message}"
        trace.check("banner", False, detail)
        raise ProbeFailure(Reason.SMTP_BANNER, detail) from exc
    except aiosmtplib.SMTPConnectError as exc:
        raise _lost("the greeting", exc) from exc
    finally:
        now = clock.monotonic()
        tls_started, tls_finished = handshake.started_at, handshake.finished_at
        if tls_started is not None:
            _add(trace, "tls", (tls_finished or now) - tls_started)
            trace.active = "tls"
        if tls_started is None or tls_finished is not None:
            _add(trace, "banner", now - (tls_finished or started))
            trace.active = "banner"
    trace.check("banner", True, "220")


async def _ehlo(client: _Client, trace: ProbeTrace) -> None:
    with trace.phase("ehlo"):
        try:
            await client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            detail = f"EHLO answered {exc.code} {exc.message!r}"
            trace.check("ehlo", False, detail)
            raise ProbeFailure(Reason.SMTP_EHLO, detail) from exc
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _lost("EHLO", exc) from exc


async def _starttls(
    client: _Client,
    context: ssl.SSLContext,
    server_name: str,
    handshake: Handshake,
    trace: ProbeTrace,
) -> None:
    """The STARTTLS command (phase ``starttls``), then the TLS handshake (phase ``tls``)."""
    clock = trace.clock
    started = clock.monotonic()
    trace.active = "starttls"
    try:
        await client.starttls(server_hostname=server_name, tls_context=context)
    except aiosmtplib.SMTPResponseException as exc:
        detail = f"STARTTLS answered {exc.code} {exc.message!r}"
        trace.check("starttls", False, detail)
        raise ProbeFailure(Reason.STARTTLS, detail) from exc
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise _lost("STARTTLS", exc) from exc
    except ssl.SSLError as exc:
        raise failure_from_ssl_error(exc) from exc
    finally:
        now = clock.monotonic()
        tls_started = handshake.started_at
        _add(trace, "starttls", (tls_started or now) - started)
        if tls_started is not None:
            _add(trace, "tls", now - tls_started)
            trace.active = "tls"


async def _login(client: _Client, auth: SmtpAuth) -> None:
    try:
        await client.login(auth.username, auth.password)
    except aiosmtplib.SMTPResponseException as exc:
        raise ProbeFailure(
            Reason.SMTP_AUTH, f"AUTH as {auth.username!r} answered {exc.code} {exc.message!r}"
        ) from exc
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise _lost("AUTH", exc) from exc
    except aiosmtplib.SMTPException as exc:
        raise ProbeFailure(Reason.SMTP_AUTH, f"AUTH impossible: {exc.message}") from exc


async def _quit(client: _Client, trace: ProbeTrace) -> None:
    """QUIT politely; the dependency has answered everything that matters by now."""
    trace.active = "QUIT"
    try:
        response = await client.quit()
    except aiosmtplib.SMTPException as exc:
        trace.check("quit", False, f"QUIT failed: {exc}")
        return
    trace.check("quit", True, f"{response.code}")
