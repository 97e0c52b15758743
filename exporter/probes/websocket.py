"""The WebSocket kind: the upgrade (ws:// or wss://) with headers and subprotocols, optionally a
message and its reply, checked by regex or JSON Schema, then a clean close.

aiohttp's client makes the upgrade on the shared HTTP sessions, so the phases come from the same
tracing as HTTP probes: resolve, connect, tls, upgrade (the upgrade request sent to its 101
answer), then reply (the message sent, or the connection open, to the first data message). The
certificate metrics are exported for wss:// like for any TLS endpoint, also when verification
failed. A server that refuses the upgrade fails as ``status``; a reply that does not match, a
close or an error frame instead of a reply fail as ``ws_reply``; no reply within the probe's
timeout fails as ``timeout`` during ``reply``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.config_source import ConfigProblem, KeyPath, Source, check_url, compile_regex
from exporter.lazy_import import lazy_module
from exporter.probes.client_tls import NO_CLIENT_TLS, ClientTLS, build_client_tls, tls_options
from exporter.probes.context import ProbeContext, user_agent
from exporter.probes.http_failures import client_error_failure
from exporter.probes.http_timing import RequestTiming, current_timing
from exporter.probes.json_check import JsonExpectation, build_json_expectation
from exporter.probes.kind import Kind, always
from exporter.probes.tlsinfo import (
    client_context,
    describe_error,
    observe_handshakes,
    record_handshake,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.redaction import redact_url, secret_header
from exporter.results import ProbeTrace, Sample

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_module("aiohttp")

__all__ = ["CLOSE_WAIT", "KIND", "REPLY_LIMIT", "WebsocketObservation", "WebsocketSpec"]

# The largest reply accepted; a bigger message fails the probe as ws_reply.
REPLY_LIMIT = 1024 * 1024
# How long the close waits for the server's close frame before dropping the connection.
CLOSE_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class WebsocketExpect:
    reply_matches: re.Pattern[str] | None = None
    reply_json_schema: JsonExpectation | None = None
    subprotocol: str | None = None

    @property
    def reply(self) -> bool:
        return self.reply_matches is not None or self.reply_json_schema is not None


@dataclass(frozen=True, slots=True)
class WebsocketSpec:
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    subprotocols: tuple[str, ...] = ()
    send: str | None = field(default=None, repr=False)
    tls: ClientTLS = NO_CLIENT_TLS
    ip_family: str = "any"
    expect: WebsocketExpect = WebsocketExpect()


@dataclass(frozen=True, slots=True)
class WebsocketObservation:
    """The upgrade's answer, the negotiated subprotocol, and the reply's size once it came."""

    status_code: int
    subprotocol: str | None
    reply_size: int | None = None

    def samples(self) -> Iterator[Sample]:
        return iter(())

    def json(self) -> dict[str, Any]:
        return {"subprotocol": self.subprotocol, "reply_size_bytes": self.reply_size}

    def summary(self) -> list[str]:
        parts = [f"status {self.status_code}"]
        if self.subprotocol is not None:
            parts.append(f"subprotocol {self.subprotocol}")
        if self.reply_size is not None:
            parts.append(f"reply {self.reply_size} bytes")
        return parts


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> WebsocketSpec:
    settings = raw.get("websocket", {})
    wat: KeyPath = (*at, "websocket")
    headers = dict(settings.get("headers", {}))
    for name, path in settings.get("header_files", {}).items():
        headers[name] = source.read_text(path, (*wat, "header_files", name))
    expect_raw = raw.get("expect", {})
    eat: KeyPath = (*at, "expect")
    expect = WebsocketExpect(
        reply_matches=compile_regex(expect_raw["reply_matches"], (*eat, "reply_matches"))
        if "reply_matches" in expect_raw
        else None,
        reply_json_schema=build_json_expectation(
            expect_raw["reply_json_schema"], (*eat, "reply_json_schema"), source
        )
        if "reply_json_schema" in expect_raw
        else None,
        subprotocol=expect_raw.get("subprotocol"),
    )
    subprotocols = tuple(settings.get("subprotocols", ()))
    if expect.subprotocol is not None and expect.subprotocol not in subprotocols:
        raise ConfigProblem(
            (*eat, "subprotocol"),
            f"{expect.subprotocol!r} is not one of websocket.subprotocols, so no server can "
            "choose it",
        )
    return WebsocketSpec(
        url=check_url(raw["url"], (*at, "url")),
        headers=tuple(headers.items()),
        subprotocols=subprotocols,
        send=settings.get("send"),
        tls=build_client_tls(settings.get("tls", {}), (*wat, "tls"), source),
        ip_family=settings.get("ip_family", "any"),
        expect=expect,
    )


def endpoint(spec: WebsocketSpec) -> str:
    return redact_url(spec.url)


def options(spec: WebsocketSpec) -> dict[str, str]:
    settings = {"ip family": spec.ip_family}
    if spec.subprotocols:
        settings["subprotocols"] = ", ".join(spec.subprotocols)
    if spec.send is not None:
        settings["sends"] = f"{len(spec.send.encode())} bytes"
    expect = spec.expect
    if expect.reply_matches is not None:
        settings["reply matches"] = expect.reply_matches.pattern
    if expect.reply_json_schema is not None:
        settings["reply"] = "satisfies a JSON Schema"
    if expect.subprotocol is not None:
        settings["subprotocol must be"] = expect.subprotocol
    return settings | (tls_options(spec.tls) if spec.url.startswith("wss") else {})


def request(spec: WebsocketSpec) -> dict[str, Any]:
    return {
        "method": "GET",
        "headers": [
            {"name": name, "value": "<redacted>" if secret_header(name) else value}
            for name, value in spec.headers
        ],
        "body_bytes": len(spec.send.encode()) if spec.send is not None else 0,
    }


async def probe(spec: WebsocketSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    session = ctx.clients.http.get(spec.ip_family, False)
    headers = {"User-Agent": user_agent(), **dict(spec.headers)}
    with observe_handshakes(ctx.clock) as handshake:
        timing = RequestTiming(ctx.clock, trace, handshake)
        token = current_timing.set(timing)
        started = ctx.clock.monotonic()
        trace.active = "connect"
        try:
            ws = await session.ws_connect(
                spec.url,
                protocols=spec.subprotocols,
                headers=headers,
                ssl=client_context(spec.tls),
                server_hostname=spec.tls.server_name,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_WAIT),
                autoclose=False,
                max_msg_size=REPLY_LIMIT,
            )
        except aiohttp.WSServerHandshakeError as exc:
            _upgrade_phase(trace, ctx.clock.monotonic() - started)
            trace.observation = WebsocketObservation(exc.status, None)
            detail = f"status {exc.status}: {exc.message}"
            trace.check("upgrade", False, detail)
            raise ProbeFailure(Reason.STATUS, f"upgrade refused: {detail}") from exc
        except aiohttp.ClientError as exc:
            raise client_error_failure(exc, timing) from exc
        finally:
            current_timing.reset(token)
            record_handshake(trace, handshake)
    try:
        _upgrade_phase(trace, None)
        trace.observation = seen = WebsocketObservation(101, ws.protocol)
        trace.check("upgrade", True, "101 Switching Protocols")
        failures = _check_subprotocol(spec.expect, ws.protocol, trace)
        if spec.send is not None or spec.expect.reply:
            with trace.phase("reply"):
                if spec.send is not None:
                    await _send(ws, spec.send)
                if spec.expect.reply:
                    reply = await _receive(ws)
            if spec.expect.reply:
                trace.observation = WebsocketObservation(101, seen.subprotocol, len(reply))
                failures += _check_reply(spec.expect, reply, trace)
        await _close(ws, trace)
    finally:
        if not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
    if failures:
        raise failures[0]


def _upgrade_phase(trace: ProbeTrace, fallback: float | None) -> None:
    """aiohttp's tracing times the upgrade as ``processing``: named ``upgrade`` here."""
    seconds = trace.phases.pop("processing", fallback)
    if seconds is not None:
        trace.add_phase("upgrade", seconds)


def _check_subprotocol(
    expect: WebsocketExpect, chosen: str | None, trace: ProbeTrace
) -> list[ProbeFailure]:
    if expect.subprotocol is None:
        return []
    detail = f"server chose {chosen or 'none'}, expected {expect.subprotocol}"
    if trace.check("subprotocol", chosen == expect.subprotocol, detail):
        return []
    return [ProbeFailure(Reason.WS_REPLY, f"subprotocol: {detail}")]


async def _send(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
    try:
        await ws.send_str(text)
    except (aiohttp.ClientError, OSError) as exc:
        raise ProbeFailure(Reason.RESET, f"cannot send the message: {describe_error(exc)}") from exc


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> bytes:
    """The first data message (pings are answered by aiohttp, pongs skipped)."""
    while True:
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            data: bytes = message.data.encode()
            return data
        if message.type is aiohttp.WSMsgType.BINARY:
            binary: bytes = message.data
            return binary
        if message.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            continue
        if message.type is aiohttp.WSMsgType.CLOSE:
            raise ProbeFailure(
                Reason.WS_REPLY,
                f"the server closed the connection (code {message.data}) before replying",
            )
        if message.type is aiohttp.WSMsgType.ERROR:
            error = message.data
            if isinstance(error, aiohttp.WebSocketError) and error.code == 1009:
                raise ProbeFailure(Reason.WS_REPLY, f"the reply exceeds {REPLY_LIMIT} bytes")
            raise ProbeFailure(Reason.WS_REPLY, f"invalid reply: {describe_error(error)}")
        raise ProbeFailure(Reason.RESET, "the connection ended before a reply")


def _check_reply(expect: WebsocketExpect, reply: bytes, trace: ProbeTrace) -> list[ProbeFailure]:
    text = reply.decode("utf-8", errors="replace")
    shown = repr(text[:120])
    failures = []
    if expect.reply_matches is not None:
        pattern = expect.reply_matches.pattern
        if not trace.check(
            f"reply matches {pattern!r}", bool(expect.reply_matches.search(text)), f"got {shown}"
        ):
            failures.append(
                ProbeFailure(Reason.WS_REPLY, f"reply does not match {pattern!r}: got {shown}")
            )
    if expect.reply_json_schema is not None:
        passed, detail = expect.reply_json_schema.check(text)
        if not trace.check("reply json_schema", passed, detail):
            failures.append(ProbeFailure(Reason.WS_REPLY, f"reply JSON Schema: {detail}"))
    return failures


async def _close(ws: aiohttp.ClientWebSocketResponse, trace: ProbeTrace) -> None:
    """The closing handshake; a server that does not answer it is noted, not failed."""
    try:
        await ws.close()
    except (aiohttp.ClientError, OSError) as exc:
        trace.check("close", False, f"close failed: {describe_error(exc)}")
        return
    code = ws.close_code
    clean = code in (aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.GOING_AWAY)
    trace.check("close", clean, f"close code {code}" if code is not None else "no close frame")


KIND = Kind(
    name="websocket",
    imports=always("aiohttp", "cryptography.x509"),
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    request=request,
)
