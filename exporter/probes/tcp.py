"""The TCP prober: connect to ``address``, optionally start TLS, then run the dialog, if any.

A dialog is a list of steps: ``send`` writes its text followed by CRLF, ``expect`` reads lines
until one matches its regex (line endings stripped first, so ``^\\+PONG$`` works as written),
``starttls`` runs the TLS handshake at that point. Phases: resolve, connect, tls, dialog (all
send and expect steps together).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from exporter.probes.connection import abort, open_stream, read_line, start_tls
from exporter.probes.tlsinfo import observe_handshakes
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.targets import Send, StartTls, Target, TcpSpec

if TYPE_CHECKING:
    from exporter.probes.context import ProbeContext

__all__ = ["EXPECT_LIMIT", "probe"]

# How much one expect step reads, in bytes, before it fails for want of a matching line.
EXPECT_LIMIT = 64 * 1024


async def probe(target: Target, ctx: ProbeContext) -> None:
    spec = target.spec
    assert isinstance(spec, TcpSpec)
    trace = ctx.trace
    with observe_handshakes(ctx.clock) as handshake:
        reader, writer = await open_stream(spec.host, spec.port, spec.ip_family, trace)
        try:
            if spec.tls is not None:
                await start_tls(writer, spec.tls, spec.host, trace, handshake)
            for number, step in enumerate(spec.dialog, 1):
                if isinstance(step, StartTls):
                    await start_tls(writer, step.tls, spec.host, trace, handshake)
                    continue
                with trace.phase("dialog"):
                    if isinstance(step, Send):
                        await _send(writer, step.data, number)
                    else:
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
