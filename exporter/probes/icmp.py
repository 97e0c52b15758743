"""The ICMP kind: ``count`` echo requests to a host, ``interval`` apart, through the kernel's
datagram ICMP sockets (``SOCK_DGRAM``/``IPPROTO_ICMP``, IPv4 and IPv6), which need no root where
``net.ipv4.ping_group_range`` includes the exporter's group (or it has ``CAP_NET_RAW``).

The kernel fills in the identifier and checksum and hands each socket only the replies to its
own requests; replies are matched by sequence number. The probe exports the latest packet loss
ratio and the round trips' min, avg, max and jitter (the mean difference between consecutive
round trips) as ``lookout_icmp_*``, and reports the average round trip as its duration, so the
duration histogram holds round trips (one observation per probe, so its ``_count`` stays the
number of probes). Phases: ``resolve`` (for a host name), ``echo`` (first request to the last
reply, or to ``reply_timeout`` after the last request).

Reasons: ``packet_loss`` when more requests went unanswered than ``expect.max_loss`` allows (by
default: when none was answered), ``slow`` when the average round trip exceeds
``expect.max_rtt``, ``dns``, and ``connect`` when the kernel refuses the ICMP socket (the message
says which sysctl or capability is missing) or the host is unreachable.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.addresses import IP_FAMILIES
from exporter.config_source import KeyPath, Source
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace, Sample
from exporter.units import format_duration, parse_duration

__all__ = ["KIND", "IcmpObservation", "IcmpSpec", "open_icmp_socket"]

PACKET_LOSS = Family(
    "lookout_icmp_packet_loss_ratio",
    "gauge",
    "Share of the latest ICMP probe's echo requests that got no reply (0 to 1).",
)
RTT = Family(
    "lookout_icmp_rtt_seconds",
    "gauge",
    "Round trips of the latest ICMP probe's replies: min, avg, max and jitter (mean difference "
    "between consecutive round trips).",
)

_ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTOCOL: dict[int, int] = {
    socket.AF_INET: socket.IPPROTO_ICMP,
    socket.AF_INET6: socket.IPPROTO_ICMPV6,
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}ms"


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    host: str
    count: int = 3
    interval: float = 0.2
    reply_timeout: float = 1.0
    size: int = 56  # payload bytes after the 8-byte ICMP header
    ip_family: str = "any"
    max_loss: float | None = None  # a ratio; None: at least one reply
    max_rtt: float | None = None


@dataclass(frozen=True, slots=True)
class IcmpObservation:
    """How many requests went out and the round trips of the replies, in request order."""

    address: str
    sent: int
    rtts: tuple[float, ...]

    @property
    def status_code(self) -> None:
        return None

    @property
    def loss(self) -> float:
        return 1 - len(self.rtts) / self.sent if self.sent else 0.0

    @property
    def jitter(self) -> float | None:
        if len(self.rtts) < 2:
            return None
        steps = [abs(b - a) for a, b in zip(self.rtts, self.rtts[1:], strict=False)]
        return sum(steps) / len(steps)

    def stats(self) -> dict[str, float]:
        if not self.rtts:
            return {}
        stats = {
            "min": min(self.rtts),
            "avg": sum(self.rtts) / len(self.rtts),
            "max": max(self.rtts),
        }
        jitter = self.jitter
        if jitter is not None:
            stats["jitter"] = jitter
        return stats

    def samples(self) -> Iterator[Sample]:
        yield PACKET_LOSS, self.loss, ""
        for stat, seconds in self.stats().items():
            yield RTT, seconds, label_pairs([("stat", stat)])

    def json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "sent": self.sent,
            "received": len(self.rtts),
            "packet_loss_ratio": self.loss,
            "rtt_seconds": self.stats(),
        }

    def summary(self) -> list[str]:
        parts = [f"{len(self.rtts)}/{self.sent} replies from {self.address}"]
        parts.append(f"{self.loss:.0%} loss")
        stats = self.stats()
        if stats:
            shown = "/".join(_ms(stats[s]) for s in ("min", "avg", "max"))
            parts.append(f"rtt min/avg/max {shown}")
        if "jitter" in stats:
            parts.append(f"jitter {_ms(stats['jitter'])}")
        return parts


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> IcmpSpec:
    settings = raw.get("icmp", {})
    expect = raw.get("expect", {})
    return IcmpSpec(
        host=raw["host"].strip("[]"),
        count=settings.get("count", 3),
        interval=parse_duration(settings["interval"]) if "interval" in settings else 0.2,
        reply_timeout=parse_duration(settings["reply_timeout"])
        if "reply_timeout" in settings
        else 1.0,
        size=settings.get("size", 56),
        ip_family=settings.get("ip_family", "any"),
        max_loss=expect["max_loss"] / 100 if "max_loss" in expect else None,
        max_rtt=parse_duration(expect["max_rtt"]) if "max_rtt" in expect else None,
    )


def endpoint(spec: IcmpSpec) -> str:
    return spec.host


def options(spec: IcmpSpec) -> dict[str, str]:
    settings = {
        "echo requests": f"{spec.count}, {format_duration(spec.interval)} apart",
        "reply timeout": format_duration(spec.reply_timeout),
        "payload": f"{spec.size} bytes",
        "ip family": spec.ip_family,
    }
    if spec.max_loss is not None:
        settings["max loss"] = f"{spec.max_loss:.0%}"
    if spec.max_rtt is not None:
        settings["max rtt"] = format_duration(spec.max_rtt)
    return settings


def open_icmp_socket(family: int) -> socket.socket:
    """A non-blocking datagram ICMP socket, or a ProbeFailure that says what the kernel needs."""
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM, _PROTOCOL[family])
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            group = os.getgid()
            raise ProbeFailure(
                Reason.CONNECT,
                f"the kernel refuses unprivileged ICMP sockets to group {group}: set "
                f'net.ipv4.ping_group_range to include it (sysctl net.ipv4.ping_group_range="0 '
                f'2147483647"), or give the exporter CAP_NET_RAW',
            ) from exc
        raise ProbeFailure(Reason.CONNECT, f"cannot open an ICMP socket: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


async def _resolve(spec: IcmpSpec, trace: ProbeTrace) -> tuple[int, str]:
    try:
        address = ipaddress.ip_address(spec.host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        if spec.ip_family != "any" and family != IP_FAMILIES[spec.ip_family]:
            raise ProbeFailure(Reason.CONNECT, f"{spec.host} is not an {spec.ip_family} address")
        return family, spec.host
    with trace.phase("resolve"):
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                spec.host, None, family=IP_FAMILIES[spec.ip_family], type=socket.SOCK_DGRAM
            )
        except socket.gaierror as exc:
            raise ProbeFailure(Reason.DNS, f"cannot resolve {spec.host}: {exc.strerror}") from exc
        except UnicodeError as exc:
            raise ProbeFailure(Reason.DNS, f"cannot resolve {spec.host}: invalid name") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


async def probe(spec: IcmpSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    clock = ctx.clock
    family, address = await _resolve(spec, trace)
    sock = open_icmp_socket(family)
    loop = asyncio.get_running_loop()
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    all_answered = asyncio.Event()
    payload = (b"lookout-" * (spec.size // 8 + 1))[: spec.size]
    base = int.from_bytes(os.urandom(2), "big")  # the first sequence number

    async def receive() -> None:
        while True:
            data = await loop.sock_recv(sock, 65535)
            now = clock.monotonic()
            if len(data) < 8 or data[0] != _ECHO_REPLY[family]:
                continue
            sequence = struct.unpack_from("!H", data, 6)[0]
            if sequence in sent_at and sequence not in rtts and data[8:] == payload:
                rtts[sequence] = now - sent_at[sequence]
                if len(rtts) == spec.count:
                    all_answered.set()

    def observe(sent: int) -> None:
        ordered = tuple(rtts[s] for s in sorted(rtts, key=lambda s: (s - base) % 65536))
        trace.observation = IcmpObservation(address, sent, ordered)

    receiver = loop.create_task(receive())
    sent = 0
    try:
        with trace.phase("echo"):
            for number in range(spec.count):
                if number:
                    await asyncio.sleep(spec.interval)
                sequence = (base + number) % 65536
                header = struct.pack("!BBHHH", _ECHO_REQUEST[family], 0, 0, 0, sequence)
                sent_at[sequence] = clock.monotonic()
                try:
                    await loop.sock_sendto(sock, header + payload, (address, 0))
                except OSError as exc:
                    raise ProbeFailure(
                        Reason.CONNECT, f"cannot send to {address}: {exc.strerror or exc}"
                    ) from exc
                sent += 1
                observe(sent)
            try:
                async with asyncio.timeout(spec.reply_timeout):
                    await all_answered.wait()
            except TimeoutError:
                pass
            if receiver.done() and not receiver.cancelled() and receiver.exception() is not None:
                error = receiver.exception()
                raise ProbeFailure(Reason.CONNECT, f"cannot receive from {address}: {error}")
    finally:
        receiver.cancel()
        sock.close()
        observe(sent)
    _check(spec, trace)


def _check(spec: IcmpSpec, trace: ProbeTrace) -> None:
    seen = trace.observation
    assert isinstance(seen, IcmpObservation)
    stats = seen.stats()
    if "avg" in stats:
        trace.latency = stats["avg"]
    received = len(seen.rtts)
    detail = f"{received} of {seen.sent} echo requests answered ({seen.loss:.0%} loss)"
    if spec.max_loss is None:
        passed = received > 0
        detail += ", at least one reply expected"
    else:
        passed = seen.loss <= spec.max_loss + 1e-9
        detail += f", at most {spec.max_loss:.0%} allowed"
    if not trace.check("packet loss", passed, detail):
        raise ProbeFailure(Reason.PACKET_LOSS, detail)
    if spec.max_rtt is not None:
        average = stats["avg"]
        rtt = f"average round trip {_ms(average)}, limit {_ms(spec.max_rtt)}"
        if not trace.check("max_rtt", average <= spec.max_rtt, rtt):
            raise ProbeFailure(Reason.SLOW, rtt)


KIND = Kind(
    name="icmp",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(PACKET_LOSS, RTT),
)
