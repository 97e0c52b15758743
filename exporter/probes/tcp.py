"""The TCP kind: connect to ``address``, optionally start TLS, then run the dialog, if any.

A dialog is a list of steps: ``send`` writes its text followed by CRLF, ``expect`` reads lines
until one matches its regex (line endings stripped first, so ``^\\+PONG$`` works as written),
``starttls`` runs the TLS handshake at that point. Phases: resolve, connect, tls, dialog (all
send and expect steps together).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.addresses import build_address, format_address
from exporter.config_source import ConfigProblem, KeyPath, Source, compile_regex, given
from exporter.probes.client_tls import ClientTLS, build_client_tls, tls_options
from exporter.probes.connection import abort, open_stream, read_line, start_tls
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.probes.tlsinfo import observe_handshakes
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace

if TYPE_CHECKING:
    import asyncio

__all__ = ["EXPECT_LIMIT", "KIND", "DialogStep", "Expect", "Send", "StartTls", "TcpSpec"]

# How much one expect step reads, in bytes, before it fails for want of a matching line.
EXPECT_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Send:
    """A dialog step: write these bytes (the text plus CRLF unless it ends with a newline)."""

    data: bytes = field(repr=False)  # may carry a password (Redis AUTH)


@dataclass(frozen=True, slots=True)
class Expect:
    """A dialog step: read lines until one matches (line endings stripped before matching)."""

    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class StartTls:
    """A dialog step: the TLS handshake, on the connection as it is at this point."""

    tls: ClientTLS


DialogStep = Send | Expect | StartTls


@dataclass(frozen=True, slots=True)
class TcpSpec:
    host: str
    port: int
    ip_family: str = "any"
    tls: ClientTLS | None = None  # TLS right after connecting
    dialog: tuple[DialogStep, ...] = ()


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> TcpSpec:
    host, port = build_address(raw, at)
    tcp = raw.get("tcp", {})
    tat: KeyPath = (*at, "tcp")
    tls = None
    if tcp.get("tls", False) is not False:  # true or a client_tls mapping
        settings = tcp["tls"]
        tls = build_client_tls({} if settings is True else settings, (*tat, "tls"), source)
    steps: list[DialogStep] = []
    starttls_at: int | None = None
    for i, item in enumerate(tcp.get("dialog", [])):
        if "send" in item:
            text = item["send"]
            steps.append(Send((text if text.endswith("\n") else text + "\r\n").encode()))
        elif "expect" in item:
            steps.append(Expect(compile_regex(item["expect"], (*tat, "dialog", i, "expect"))))
        else:
            step_at: KeyPath = (*tat, "dialog", i, "starttls")
            if tls is not None:
                raise ConfigProblem(step_at, "tcp.tls already starts TLS right after connecting")
            if starttls_at is not None:
                raise ConfigProblem(step_at, f"TLS already starts at dialog step {starttls_at}")
            starttls_at = i
            settings = item["starttls"]  # true or a client_tls mapping (the schema allows no false)
            steps.append(
                StartTls(build_client_tls({} if settings is True else settings, step_at, source))
            )
    return TcpSpec(host=host, port=port, tls=tls, dialog=tuple(steps), **given(tcp, "ip_family"))


def endpoint(spec: TcpSpec) -> str:
    return format_address(spec.host, spec.port)


def _describe_step(step: DialogStep) -> str:
    match step:
        case Send():
            return f"send {len(step.data)} bytes"
        case Expect():
            return f"expect {step.pattern.pattern!r}"
        case StartTls():
            return "starttls"


def options(spec: TcpSpec) -> dict[str, str]:
    settings = {"ip family": spec.ip_family}
    if spec.dialog:
        settings["dialog"] = ", ".join(_describe_step(step) for step in spec.dialog)
    if spec.tls is not None:
        settings |= {"tls": "right after connecting"} | tls_options(spec.tls)
    return settings


async def probe(spec: TcpSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    with observe_handshakes(ctx.clock) as handshake:
        reader, writer = await open_stream(spec.host, spec.port, spec.ip_family, trace)
        try:
            if spec.tls is not None:
                await start_tls(writer, spec.tls, spec.host, trace, handshake)
            for number, step in enumerate(spec.dialog, 1):
                match step:
                    case StartTls():
                        await start_tls(writer, step.tls, spec.host, trace, handshake)
                    case Send():
                        with trace.phase("dialog"):
                            await _send(writer, step.data, number)
                    case Expect():
                        with trace.phase("dialog"):
                            await _expect(reader, step.pattern, number, trace)
        finally:
            abort(writer)


async def _send(writer: asyncio.StreamWriter, data: bytes, number: int) -> None:
    try:
        writer.write(data)
        await writer.drain()
    except OSError as exc:
        raise ProbeFailure(Reason.RESET, f"dialog step {number}: cannot send: {exc}") from exc


async def _expect(
    reader: asyncio.StreamReader, pattern: re.Pattern[str], number: int, trace: ProbeTrace
) -> None:
    name = f"dialog step {number}: expect {pattern.pattern!r}"
    lines = 0
    size = 0
    last = ""
    while True:
        raw = await read_line(reader, Reason.DIALOG)
        if raw is None:
            if lines == 0:
                detail = "connection closed by the peer before it sent a line"
                trace.check(name, False, detail)
                raise ProbeFailure(Reason.RESET, f"dialog step {number}: {detail}")
            detail = f"connection closed after {lines} line(s), none matched (last {last!r})"
            break
        line = raw.decode("utf-8", errors="replace")
        if pattern.search(line):
            trace.check(name, True, f"matched {line[:120]!r}")
            return
        lines += 1
        size += len(raw) + 2
        last = line[:120]
        if size > EXPECT_LIMIT:
            detail = f"no match in the first {EXPECT_LIMIT} bytes ({lines} lines, last {last!r})"
            break
    trace.check(name, False, detail)
    raise ProbeFailure(Reason.DIALOG, f"dialog step {number}: no line matched: {detail}")


KIND = Kind(
    name="tcp",
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    imports=always("cryptography.x509"),
)
