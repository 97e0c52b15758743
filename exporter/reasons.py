"""The one bounded set of probe failure reasons, the ``reason`` label of
``lookout_probe_failures_total``.

Every failed probe maps to exactly one reason, chosen by the first thing that went wrong::

    Reason
    ├── network
    │   ├── dns            the name did not resolve (NXDOMAIN, no address, resolver error)
    │   ├── refused        the port actively refused the connection
    │   ├── connect        any other connect error (unreachable, no route)
    │   ├── reset          the peer reset or closed the connection mid-exchange (or mid-handshake)
    │   └── timeout        the probe did not finish within its timeout
    ├── tls
    │   ├── tls            the handshake failed (protocol error, no shared cipher, garbage)
    │   ├── tls_version    the negotiated version is below the configured minimum
    │   ├── cert_expired   a certificate in the chain is past its NotAfter
    │   ├── cert_not_yet_valid  a certificate in the chain is before its NotBefore
    │   ├── cert_hostname  the leaf certificate does not match the server name
    │   ├── cert_invalid   the chain does not verify (self-signed, unknown CA, other)
    │   └── cert_expiring  the chain expires sooner than ``expect.valid_for`` (tls kind)
    ├── response (HTTP)
    │   ├── protocol       the peer did not speak the protocol (malformed HTTP response or
    │   │                  DNS message)
    │   ├── redirect       too many redirects, or a redirect loop
    │   ├── status         the status code is not one of ``expect.status``
    │   ├── rate_limited   the status code is 429 (Too Many Requests) and not expected (also
    │   │                  RDAP's 429 for the domain kind, below)
    │   ├── version        the response does not name the expected version (``expect.version``:
    │   │                  a header or JSON field), e.g. a gateway routing v1 to v2
    │   ├── error_format   a 4xx/5xx answer does not follow ``expect.error_format`` (RFC 9457
    │   │                  problem details or the user's schema: media type, JSON, schema)
    │   ├── http_version   the HTTP version is not one of ``expect.http_version``
    │   ├── header         a header regex failed (required missing or forbidden present)
    │   ├── body           a body regex failed (must match / must not match)
    │   ├── json           the body is not JSON although a JSON Schema is expected
    │   ├── json_schema    the JSON body does not satisfy the schema
    │   ├── size           the body is larger than ``expect.max_size``
    │   ├── value          a value assertion on a JSONPath failed (``expect.values``: a
    │   │                  comparison, a count or a timestamp's age)
    │   ├── extract        a value to extract or export is missing from the response (or an
    │   │                  exported value is not a number)
    │   └── slow           the probe took longer than ``expect.max_duration``
    ├── dependency protocols
    │   ├── dialog         a TCP dialog ``expect`` step did not match (no matching line before
    │   │                  the peer closed, within 64 KiB, or a line over 8 KiB)
    │   ├── starttls       the server refused or does not offer STARTTLS, or its plaintext
    │   │                  greeting before STARTTLS was wrong
    │   ├── dns_rcode      the DNS answer code is not one of the accepted ones
    │   ├── dns_answer     the DNS answers fail a count, regex or exact-set check
    │   ├── smtp_banner    the SMTP server's greeting is not 220 (or not SMTP at all)
    │   ├── smtp_ehlo      EHLO was rejected
    │   ├── smtp_auth      AUTH was rejected, or the server offers no AUTH
    │   ├── grpc_status    the gRPC health check answered a status other than the expected one
    │   │                  (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN) or failed with a gRPC status
    │   │                  code (UNIMPLEMENTED, UNAVAILABLE, PERMISSION_DENIED, ...)
    │   ├── ws_reply       a WebSocket reply did not match, the server closed instead of
    │   │                  replying, or it chose another subprotocol
    │   ├── packet_loss    more ICMP echo requests went unanswered than ``expect.max_loss``
    │   ├── domain_not_found  the RDAP server knows no such domain (404)
    │   └── rate_limited   the server answered 429 Too Many Requests (RDAP)
    ├── exporter_offline   the probe failed while every connectivity canary failed too: the
    │                      exporter's own network, not the target (does not change the
    │                      target's confirmed state)
    └── error              an unexpected error inside the prober (a bug; logged with a trace)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ProbeFailure", "Reason"]


class Reason(StrEnum):
    DNS = "dns"
    REFUSED = "refused"
    CONNECT = "connect"
    RESET = "reset"
    TIMEOUT = "timeout"
    TLS = "tls"
    TLS_VERSION = "tls_version"
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    CERT_HOSTNAME = "cert_hostname"
    CERT_INVALID = "cert_invalid"
    CERT_EXPIRING = "cert_expiring"
    PROTOCOL = "protocol"
    REDIRECT = "redirect"
    STATUS = "status"
    VERSION = "version"
    ERROR_FORMAT = "error_format"
    HTTP_VERSION = "http_version"
    HEADER = "header"
    BODY = "body"
    JSON = "json"
    JSON_SCHEMA = "json_schema"
    SIZE = "size"
    VALUE = "value"
    EXTRACT = "extract"
    SLOW = "slow"
    DIALOG = "dialog"
    STARTTLS = "starttls"
    DNS_RCODE = "dns_rcode"
    DNS_ANSWER = "dns_answer"
    SMTP_BANNER = "smtp_banner"
    SMTP_EHLO = "smtp_ehlo"
    SMTP_AUTH = "smtp_auth"
    GRPC_STATUS = "grpc_status"
    WS_REPLY = "ws_reply"
    PACKET_LOSS = "packet_loss"
    DOMAIN_NOT_FOUND = "domain_not_found"
    RATE_LIMITED = "rate_limited"
    EXPORTER_OFFLINE = "exporter_offline"
    ERROR = "error"


class ProbeFailure(Exception):
    """Raised by a prober to fail the probe with one reason and a message for people."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
