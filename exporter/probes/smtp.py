"""The SMTP kind: a real client conversation with aiosmtplib, one timed step after another.

connect (implicit TLS right away on port 465 by default) -> the 220 greeting -> EHLO ->
STARTTLS when offered or required -> EHLO again -> AUTH when credentials are configured -> QUIT.
Phases: resolve, connect, tls, banner, ehlo, starttls, auth. The chain presented on implicit TLS
or after STARTTLS is exported like any TLS endpoint's, also when its verification fails. Each
step fails with its own reason: ``smtp_banner``, ``smtp_ehlo``, ``starttls``, ``smtp_auth``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from exporter.addresses import build_address, format_address
from exporter.config_source import ConfigProblem, KeyPath, Source, given
from exporter.lazy_import import lazy_module
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.connection import connect
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.probes.tlsinfo import (
    Handshake,
    client_context,
    failure_from_ssl_error,
    observe_handshakes,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace

if TYPE_CHECKING:
    import aiosmtplib
else:  # needed by the prober, not to build a config
    aiosmtplib = lazy_module("aiosmtplib")

__all__ = ["KIND", "SmtpAuth", "SmtpSpec"]


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
    tls: ClientTLS = NO_CLIENT_TLS
    auth: SmtpAuth | None = None


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> SmtpSpec:
    host, port = build_address(raw, at)
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
    return SmtpSpec(
        host=host,
        port=port,
        implicit_tls=implicit_tls,
        starttls=starttls,
        tls=build_client_tls(smtp.get("tls", {}), (*sat, "tls"), source),
        auth=auth,
        **given(smtp, "ip_family", "ehlo_name"),
    )


def endpoint(spec: SmtpSpec) -> str:
    return format_address(spec.host, spec.port)


def options(spec: SmtpSpec) -> dict[str, str]:
    settings = {"ip family": spec.ip_family}
    settings["tls"] = "implicit" if spec.implicit_tls else f"starttls {spec.starttls}"
    settings["ehlo name"] = spec.ehlo_name
    if spec.auth is not None:
        settings["auth user"] = spec.auth.username
    return settings | tls_options(spec.tls)


@cache
def _client_class() -> type[aiosmtplib.SMTP]:
    """The SMTP client, made at the first probe (aiosmtplib is not needed to build a config)."""

    class Client(aiosmtplib.SMTP):
        """Closes by dropping the connection: the probe is over by then, and a graceful TLS
        close waits up to 30 s for a peer that never answers it."""

        def close(self) -> None:
            if self.transport is not None:
                cast(asyncio.WriteTransport, self.transport).abort()
            super().close()

    return Client


def _lost(step: str, exc: Exception) -> ProbeFailure:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return failure_from_ssl_error(cause)
    return ProbeFailure(Reason.RESET, f"connection lost during {step}: {exc}")


async def probe(spec: SmtpSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    context = client_context(spec.tls)
    server_name = spec.tls.server_name or spec.host
    with observe_handshakes(ctx.clock) as handshake:
        sock = await connect(spec.host, spec.port, spec.ip_family, trace)
        client = _client_class()(
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


async def _greeting(client: aiosmtplib.SMTP, handshake: Handshake, trace: ProbeTrace) -> None:
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
            trace.add_phase("tls", (tls_finished or now) - tls_started)
            trace.active = "tls"
        if tls_started is None or tls_finished is not None:
            trace.add_phase("banner", now - (tls_finished or started))
            trace.active = "banner"
    trace.check("banner", True, "220")


async def _ehlo(client: aiosmtplib.SMTP, trace: ProbeTrace) -> None:
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
    client: aiosmtplib.SMTP,
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
        trace.add_phase("starttls", (tls_started or now) - started)
        if tls_started is not None:
            trace.add_phase("tls", now - tls_started)
            trace.active = "tls"


async def _login(client: aiosmtplib.SMTP, auth: SmtpAuth) -> None:
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


async def _quit(client: aiosmtplib.SMTP, trace: ProbeTrace) -> None:
    """QUIT politely; the dependency has answered everything that matters by now."""
    trace.active = "QUIT"
    try:
        response = await client.quit()
    except aiosmtplib.SMTPException as exc:
        trace.check("quit", False, f"QUIT failed: {exc}")
        return
    trace.check("quit", True, f"{response.code}")


KIND = Kind(
    name="smtp",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    imports=always("aiosmtplib", "cryptography.x509"),
)
