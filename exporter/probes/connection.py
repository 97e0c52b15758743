"""A TCP connection opened in timed phases, and the TLS step on it: shared by tcp, tls and smtp.

``connect`` resolves (phase ``resolve``, skipped for an IP literal) and connects (phase
``connect``), trying each resolved address in turn. ``start_tls`` upgrades a stream (phase
``tls``) with the shared client contexts of ``tlsinfo``, so the presented chain and the
negotiated version reach the trace even when verification fails. Reading is bounded everywhere:
a peer that sends an endless line or endless lines fails the probe instead of filling memory.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from exporter.addresses import IP_FAMILIES, format_address
from exporter.lazy_import import lazy_module
from exporter.probes.client_tls import ClientTLS
from exporter.probes.tlsinfo import (
    Handshake,
    client_context,
    handshake_failure,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace

if TYPE_CHECKING:
    import asyncio

    Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
else:  # only probes use the event loop, not the builders of a config
    asyncio = lazy_module("asyncio")

__all__ = [
    "LINE_LIMIT",
    "abort",
    "connect",
    "open_stream",
    "read_line",
    "start_tls",
]

# The longest line a dialog or a STARTTLS negotiation accepts from a peer.
LINE_LIMIT = 8192

Address = tuple[int, tuple[Any, ...]]  # (family, sockaddr)


async def _resolve(host: str, port: int, ip_family: str, trace: ProbeTrace) -> list[Address]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        if ip_family != "any" and family != IP_FAMILIES[ip_family]:
            raise ProbeFailure(Reason.CONNECT, f"{host} is not an {ip_family} address")
        return [(family, (host, port))]
    with trace.phase("resolve"):
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, family=IP_FAMILIES[ip_family], type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise ProbeFailure(Reason.DNS, f"cannot resolve {host}: {exc.strerror}") from exc
        except UnicodeError as exc:  # raised before any lookup, e.g. for an empty label
            raise ProbeFailure(Reason.DNS, f"cannot resolve {host}: invalid name") from exc
    return [(family, addr) for family, _, _, _, addr in infos]


async def connect(host: str, port: int, ip_family: str, trace: ProbeTrace) -> socket.socket:
    """A connected non-blocking socket to the first address of ``host`` that accepts."""
    addresses = await _resolve(host, port, ip_family, trace)
    loop = asyncio.get_running_loop()
    errors: list[OSError] = []
    with trace.phase("connect"):
        for family, addr in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                errors.append(exc)
                continue
            except BaseException:
                sock.close()
                raise
            return sock
    where = format_address(host, port)
    if all(isinstance(e, ConnectionRefusedError) for e in errors):
        raise ProbeFailure(Reason.REFUSED, f"connection to {where} refused")
    last = errors[-1]
    raise ProbeFailure(Reason.CONNECT, f"cannot connect to {where}: {last.strerror or last}")


async def open_stream(host: str, port: int, ip_family: str, trace: ProbeTrace) -> Stream:
    sock = await connect(host, port, ip_family, trace)
    try:
        return await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
    except BaseException:
        sock.close()
        raise


def abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once: a probe is over, and a graceful TLS close can wait long."""
    writer.transport.abort()


async def start_tls(
    writer: asyncio.StreamWriter,
    settings: ClientTLS,
    host: str,
    trace: ProbeTrace,
    handshake: Handshake,
) -> None:
    """The TLS handshake on an open stream, as phase ``tls``; failures name their reason.

    ``handshake`` must come from an ``observe_handshakes`` block entered before the stream was
    opened (see there).
    """
    with trace.phase("tls"):
        try:
            await writer.start_tls(
                client_context(settings), server_hostname=settings.server_name or host
            )
        except OSError as exc:  # ssl.SSLError included
            raise handshake_failure(exc, handshake) from exc
        finally:
            record_handshake(trace, handshake)


async def read_line(reader: asyncio.StreamReader, too_long: Reason) -> bytes | None:
    """The next line with its line ending stripped, or None at the end of the stream.

    A last line without a line ending is returned as a line. A line longer than
    ``LINE_LIMIT`` fails the probe with reason ``too_long``; a reset fails it as ``reset``.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        line = exc.partial
    except asyncio.LimitOverrunError as exc:
        raise ProbeFailure(
            too_long, f"the peer sent a line longer than {LINE_LIMIT} bytes"
        ) from exc
    except OSError as exc:
        raise ProbeFailure(Reason.RESET, f"connection lost: {exc}") from exc
    return line.rstrip(b"\r\n")
