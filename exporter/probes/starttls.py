"""The plaintext exchanges that come before TLS on ports that start in the clear (STARTTLS).

One negotiation per protocol (``smtp``, ``imap``, ``pop3``, ``ftp``, ``postgres``); each leaves
the stream where the TLS handshake begins, or fails with reason ``starttls`` quoting what the
server said (``reset`` when it hung up). Replies are read with a size limit, so a server that
talks forever fails the negotiation instead of holding the probe until its timeout.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from exporter.probes.connection import read_line
from exporter.reasons import ProbeFailure, Reason

if TYPE_CHECKING:
    import asyncio

__all__ = ["NEGOTIATIONS", "REPLY_LIMIT"]

# The most a server may send in one reply (all lines of it) during the negotiation.
REPLY_LIMIT = 64 * 1024
# PostgreSQL's SSLRequest: length 8, then the magic code 80877103.
_POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)

Negotiation = Callable[["asyncio.StreamReader", "asyncio.StreamWriter"], Awaitable[None]]


def _refused(message: str) -> ProbeFailure:
    return ProbeFailure(Reason.STARTTLS, message)


async def _line(reader: asyncio.StreamReader) -> str:
    raw = await read_line(reader, Reason.STARTTLS)
    if raw is None:
        raise ProbeFailure(Reason.RESET, "the server closed the connection before STARTTLS")
    return raw.decode("utf-8", errors="replace")


async def _send(writer: asyncio.StreamWriter, command: str) -> None:
    try:
        writer.write(command.encode() + b"\r\n")
        await writer.drain()
    except OSError as exc:
        raise ProbeFailure(Reason.RESET, f"cannot send {command.split()[0]}: {exc}") from exc


async def _reply(reader: asyncio.StreamReader, to: str) -> tuple[str, list[str]]:
    """A numbered reply in the SMTP/FTP form: ``250-first`` ... ``250 last`` (or one line)."""
    first = await _line(reader)
    code = first[:3]
    if not (code.isdigit() and first[3:4] in ("", " ", "-")):
        raise _refused(f"{to}: not a numbered reply: {first[:120]!r}")
    lines = [first]
    size = len(first)
    if first[3:4] == "-":
        while True:
            line = await _line(reader)
            lines.append(line)
            size += len(line) + 2
            if size > REPLY_LIMIT:
                raise _refused(f"{to}: reply longer than {REPLY_LIMIT} bytes")
            if line[:3] == code and line[3:4] in ("", " "):
                break
    return code, lines


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    code, lines = await _reply(reader, "greeting")
    if code != "220":
        raise _refused(f"greeting {lines[0][:120]!r}, expected 220")
    await _send(writer, f"EHLO {socket.gethostname()}")
    code, lines = await _reply(reader, "EHLO")
    if code != "250":
        raise _refused(f"EHLO answered {lines[0][:120]!r}")
    if not any(line[4:].strip().upper() == "STARTTLS" for line in lines[1:]):
        raise _refused("the server does not offer STARTTLS")
    await _send(writer, "STARTTLS")
    code, lines = await _reply(reader, "STARTTLS")
    if code != "220":
        raise _refused(f"STARTTLS answered {lines[0][:120]!r}")


async def _imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _line(reader)
    if not greeting.upper().startswith("* OK"):
        raise _refused(f"greeting {greeting[:120]!r}, expected '* OK'")
    await _send(writer, "L1 STARTTLS")
    size = 0
    while size <= REPLY_LIMIT:
        line = await _line(reader)
        size += len(line) + 2
        if line.startswith("L1 "):
            if line[3:].upper().startswith("OK"):
                return
            raise _refused(f"STARTTLS answered {line[:120]!r}")
    raise _refused(f"no answer to STARTTLS in the first {REPLY_LIMIT} bytes")


async def _pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _line(reader)
    if not greeting.startswith("+OK"):
        raise _refused(f"greeting {greeting[:120]!r}, expected '+OK'")
    await _send(writer, "STLS")
    answer = await _line(reader)
    if not answer.startswith("+OK"):
        raise _refused(f"STLS answered {answer[:120]!r}")


async def _ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    code, lines = await _reply(reader, "greeting")
    if code != "220":
        raise _refused(f"greeting {lines[0][:120]!r}, expected 220")
    await _send(writer, "AUTH TLS")
    code, lines = await _reply(reader, "AUTH TLS")
    if code != "234":
        raise _refused(f"AUTH TLS answered {lines[0][:120]!r}")


async def _postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(_POSTGRES_SSL_REQUEST)
        await writer.drain()
        answer = await reader.read(1)
    except OSError as exc:
        raise ProbeFailure(Reason.RESET, f"connection lost during SSLRequest: {exc}") from exc
    if answer == b"":
        raise ProbeFailure(Reason.RESET, "the server closed the connection after SSLRequest")
    if answer == b"N":
        raise _refused("the server does not accept SSL connections (answered N)")
    if answer != b"S":
        raise _refused(f"unexpected answer to SSLRequest: {answer!r}")


NEGOTIATIONS: dict[str, Negotiation] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "postgres": _postgres,
}
