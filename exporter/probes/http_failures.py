"""What an aiohttp client error means as a probe failure, for every kind that speaks HTTP
(http, flow steps, websocket upgrades, RDAP lookups), and how much of a response a failure
message may quote: nothing unless the target allows excerpts (``http.response_excerpts``)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from exporter.lazy_import import lazy_module
from exporter.probes.http_timing import RequestTiming, end_connection
from exporter.probes.tlsinfo import describe_error, failure_from_ssl_error, handshake_failure
from exporter.reasons import ProbeFailure, Reason

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_module("aiohttp")

__all__ = ["EXCERPT_CHARS", "client_error_failure", "excerpt"]

# The longest piece of a response a failure message quotes, with http.response_excerpts.
EXCERPT_CHARS = 40


def excerpt(value: str, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted, cut to ``limit`` characters (``…`` marks the cut)."""
    return repr(value[:limit] + "…") if len(value) > limit else repr(value)


def client_error_failure(
    exc: aiohttp.ClientError, timing: RequestTiming | None = None, excerpts: bool = False
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
        # The parser's message quotes what the server sent.
        said = f": {excerpt(str(exc.message), 80)}" if excerpts else ""
        return ProbeFailure(Reason.PROTOCOL, f"invalid HTTP response{said}")
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
