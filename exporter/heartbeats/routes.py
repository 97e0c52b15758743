"""The ping routes jobs call: ``/ping/{name}`` and ``/ping/{name}/{start|fail|exit code}``.

GET, HEAD and POST all count. A ping is answered ``200 OK`` only after the store committed it;
``404`` for a heartbeat that is not declared (nothing is created), ``401`` for a missing or wrong
token, ``400`` for a malformed parameter, ``413`` for a body above ``MAX_BODY_BYTES`` (refused
from its ``Content-Length`` before it is read), ``503`` when the store cannot write. The body of
a ping (typically the tail of a job's output) is kept up to ``KEEP_BODY_BYTES``: its last bytes,
where the error usually is.
"""

from __future__ import annotations

import math
import re

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.heartbeats.service import HEARTBEATS
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Ping, Signal
from exporter.heartbeats.store import StoreError

__all__ = ["HEARTBEATS", "KEEP_BODY_BYTES", "MAX_BODY_BYTES", "add_routes"]

KEEP_BODY_BYTES = 10 * 1024
MAX_BODY_BYTES = 1024 * 1024
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_SIGNALS = {"start": Signal.START, "fail": Signal.FAIL}


def add_routes(app: web.Application) -> None:
    """Add the ping routes; ``app[HEARTBEATS]`` must be set before requests."""
    for path in ("/ping/{name}", "/ping/{name}/{signal}"):
        app.router.add_get(path, ping)  # also answers HEAD
        app.router.add_post(path, ping)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def ping(request: web.Request) -> web.Response:
    heartbeats = request.app[HEARTBEATS]
    name = request.match_info["name"]
    spec = heartbeats.specs.get(name)
    try:
        if spec is None:
            raise _Refused(404, f"unknown heartbeat {name!r}")
        signal, exit_code = _signal(request.match_info.get("signal"))
        if spec.token is not None and not authorized(request, spec.token):
            raise _Refused(401, f"heartbeat {name!r} needs its token")
        rid = _identifier(request, "rid")
        instance = _instance(request, spec)
        duration = _duration(request) if signal is not Signal.START else None
        body = await _body(request)
    except _Refused as refused:
        response = web.Response(status=refused.status, text=refused.message + "\n")
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="lookout"'
        elif refused.status == 413:
            response.force_close()
        return response
    event = Ping(name, signal, heartbeats.clock.time(), rid, instance, exit_code, duration, body)
    try:
        await heartbeats.record(spec, event)
    except StoreError as exc:
        return web.Response(status=503, text=f"ping not stored: {exc}\n")
    return web.Response(text="OK\n")


def _signal(part: str | None) -> tuple[Signal, int | None]:
    if part is None:
        return Signal.SUCCESS, None
    if part in _SIGNALS:
        return _SIGNALS[part], None
    if not (part.isascii() and part.isdigit()):
        raise _Refused(404, f"unknown ping {part!r} (use start, fail or an exit code)")
    code = int(part)
    if code > 255:
        raise _Refused(400, f"exit code {part} is out of range 0-255")
    return (Signal.SUCCESS if code == 0 else Signal.FAIL), code


def _identifier(request: web.Request, key: str) -> str | None:
    value = request.query.get(key)
    if value is not None and not _ID.fullmatch(value):
        raise _Refused(400, f"{key} must be 1-128 letters, digits, '_', '.', ':' or '-'")
    return value


def _instance(request: web.Request, spec: Heartbeat) -> str | None:
    instance = _identifier(request, "instance")
    if instance is not None and spec.instances is None:
        raise _Refused(400, f"heartbeat {spec.name!r} does not declare instances")
    return instance


def _duration(request: web.Request) -> float | None:
    text = request.query.get("duration")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise _Refused(400, f"duration must be a number of seconds >= 0, not {text!r}")
    return seconds


async def _body(request: web.Request) -> bytes:
    """The last ``KEEP_BODY_BYTES`` of the body; never holds more than that plus one chunk."""
    if not request.body_exists:
        return b""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _Refused(413, f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
    kept = bytearray()
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _Refused(413, f"body exceeds {MAX_BODY_BYTES} bytes")
        kept += chunk
        if len(kept) > KEEP_BODY_BYTES:
            del kept[: len(kept) - KEEP_BODY_BYTES]
    return bytes(kept)
