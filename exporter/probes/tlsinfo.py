"""TLS client contexts, and what a handshake presented: the chain, the version, why it failed.

Shared by every prober with a TLS step. ``ObservedSSLContext`` remembers the SSL object of each
handshake started in the current task, so the presented chain can be read even when verification
failed (an expired or self-signed certificate still shows its NotAfter), without a second
handshake, and marks when the handshake started and finished so TCP connect, TLS and the first
reply are told apart.
"""

from __future__ import annotations

import _ssl
import errno
import hashlib
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.clock import Clock
from exporter.lazy_import import lazy_module
from exporter.probes.client_tls import ClientTLS
from exporter.reasons import ProbeFailure, Reason
from exporter.results import Certificate, ProbeTrace, TlsSeen

if TYPE_CHECKING:
    from cryptography import x509
else:  # needed to read a presented certificate, not to build a config
    x509 = lazy_module("cryptography.x509")

__all__ = [
    "Handshake",
    "ObservedSSLContext",
    "client_context",
    "describe_error",
    "failure_from_ssl_error",
    "handshake_failure",
    "observe_handshakes",
    "parse_certificate",
    "presented_chain",
    "record_handshake",
]

# The errno behind each OSError subclass that asyncio raises without one (str() is then empty).
_ERRNOS: dict[type[OSError], int] = {
    ConnectionResetError: errno.ECONNRESET,
    ConnectionAbortedError: errno.ECONNABORTED,
    ConnectionRefusedError: errno.ECONNREFUSED,
    BrokenPipeError: errno.EPIPE,
    TimeoutError: errno.ETIMEDOUT,
}

_TLS_VERSIONS = {
    "TLS1.0": ssl.TLSVersion.TLSv1,
    "TLS1.1": ssl.TLSVersion.TLSv1_1,
    "TLS1.2": ssl.TLSVersion.TLSv1_2,
    "TLS1.3": ssl.TLSVersion.TLSv1_3,
}

# OpenSSL's reasons for "no TLS version both sides accept". Not WRONG_VERSION_NUMBER: that is
# what a peer that does not speak TLS at all produces (a plaintext banner, an HTTP answer).
_VERSION_ERRORS = frozenset(
    {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}
)


@dataclass(slots=True)
class Handshake:
    """The latest handshake started by this task: when it began and ended, and its SSL object."""

    clock: Clock
    started_at: float | None = None
    finished_at: float | None = None
    ssl_object: ssl.SSLObject | None = None


_current: ContextVar[Handshake | None] = ContextVar("lookout_handshake", default=None)


class _ObservedSSLObject(ssl.SSLObject):
    """Tells its ``Handshake`` (if any) when the handshake completed."""

    handshake: Handshake | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        if self.handshake is not None:
            self.handshake.finished_at = self.handshake.clock.monotonic()


class ObservedSSLContext(ssl.SSLContext):
    """An SSLContext that tells the current task's ``Handshake`` about each TLS session it makes."""

    sslobject_class = _ObservedSSLObject

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        ssl_object = super().wrap_bio(*args, **kwargs)
        handshake = _current.get()
        if handshake is not None:
            handshake.started_at = handshake.clock.monotonic()
            handshake.finished_at = None
            handshake.ssl_object = ssl_object
            if isinstance(ssl_object, _ObservedSSLObject):
                ssl_object.handshake = handshake
        return ssl_object


@contextmanager
def observe_handshakes(clock: Clock) -> Iterator[Handshake]:
    """Observe this task's handshakes. Open the connection inside the block: uvloop runs the
    handshake in the context the connection was created in, not the one calling start_tls."""
    handshake = Handshake(clock)
    token = _current.set(handshake)
    try:
        yield handshake
    finally:
        _current.reset(token)


_contexts: dict[ClientTLS, ObservedSSLContext] = {}


def client_context(settings: ClientTLS) -> ObservedSSLContext:
    """The (cached) client context for these settings; loading CA bundles is too slow per probe."""
    context = _contexts.get(settings)
    if context is not None:
        return context
    context = ObservedSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.ca_file:
        context.load_verify_locations(cafile=settings.ca_file)
    else:
        context.load_default_certs()
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.min_version:
        context.minimum_version = _TLS_VERSIONS[settings.min_version]
    _contexts[settings] = context
    return context


def presented_chain(ssl_object: ssl.SSLObject | None) -> tuple[Certificate, ...]:
    """The chain the peer sent, verified or not (empty when it sent none)."""
    if ssl_object is None:
        return ()
    reader = getattr(ssl_object, "get_unverified_chain", None)  # public from Python 3.13
    if reader is None:
        reader = ssl_object._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    try:
        raw = reader() or []
    except (ssl.SSLError, ValueError):
        return ()
    ders = [
        item if isinstance(item, bytes) else item.public_bytes(_ssl.ENCODING_DER) for item in raw
    ]
    return tuple(parse_certificate(der) for der in ders)


def record_handshake(trace: ProbeTrace, handshake: Handshake) -> None:
    """Put what the handshake showed into the trace: the presented chain and the TLS version."""
    ssl_object = handshake.ssl_object
    chain = presented_chain(ssl_object)
    version = ssl_object.version() if ssl_object is not None else None
    if version is None and trace.tls is not None:
        version = trace.tls.version
    trace.tls = TlsSeen(chain, version) if chain or version else None


def parse_certificate(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(str(v) for v in names.get_values_for_type(x509.DNSName))
        dns_names += tuple(str(v) for v in names.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names = ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        dns_names=dns_names,
    )


def failure_from_ssl_error(error: ssl.SSLError) -> ProbeFailure:
    """The failure reason for a failed handshake, telling certificate problems apart."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        text = f"certificate verification failed: {error.verify_message}"
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return ProbeFailure(Reason.CERT_EXPIRED, text)
        if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
            return ProbeFailure(Reason.CERT_NOT_YET_VALID, text)
        if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return ProbeFailure(Reason.CERT_HOSTNAME, text)
        return ProbeFailure(Reason.CERT_INVALID, text)
    reason = error.reason or str(error)
    if reason in _VERSION_ERRORS:
        return ProbeFailure(Reason.TLS_VERSION, f"TLS handshake failed: {reason}")
    return ProbeFailure(Reason.TLS, f"TLS handshake failed: {reason}")


def describe_error(error: BaseException) -> str:
    """A never-empty text for an error: ``str()`` is empty for a bare ``ConnectionResetError()``,
    which is how asyncio reports a peer that hung up, and for aiohttp errors wrapping one."""
    text = str(error)
    if text:
        return text
    wrapped = next((a for a in error.args if isinstance(a, BaseException)), error.__cause__)
    if wrapped is not None and wrapped is not error:
        return describe_error(wrapped)
    for kind, code in _ERRNOS.items():
        if isinstance(error, kind):
            return os.strerror(code)
    return type(error).__name__


def handshake_failure(error: BaseException, handshake: Handshake) -> ProbeFailure:
    """Why a handshake that started did not finish.

    OpenSSL's reason when it gave one, the server's alert included (``failure_from_ssl_error``:
    ``tls_version`` for no common version). A server that hangs up without an alert after
    presenting its certificate rejected the handshake (a client certificate it requires is
    missing, say): ``tls``. One that hangs up before answering the hello is a lost connection,
    ``reset``, as for the other probers.
    """
    if isinstance(error, ssl.SSLError):
        return failure_from_ssl_error(error)
    cause = describe_error(error)
    if presented_chain(handshake.ssl_object):
        return ProbeFailure(
            Reason.TLS,
            f"TLS handshake failed: the server closed the connection after presenting its "
            f"certificate ({cause}); it rejected the handshake",
        )
    return ProbeFailure(Reason.RESET, f"connection lost during the TLS handshake: {cause}")
