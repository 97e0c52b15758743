"""The ping routes jobs call: ``/ping/{name}`` and ``/ping/{name}/{start|fail|exit code}``.

GET, HEAD and POST all count. A ping is answered ``200 OK`` only after the store committed it;
``404`` for a heartbeat that is not declared (nothing is created), ``401`` for a missing or wrong
token, ``400`` for a malformed parameter, ``413`` for a body above ``MAX_BODY_BYTES`` (refused
from its ``Content-Length`` before it is read), ``429`` for a new instance name while the
heartbeat already tracks as many live instances as it may, ``503`` when the store cannot write.
The body of a ping (typically the tail of a job's output) is kept up to ``KEEP_BODY_BYTES``: its
last bytes, where the error usually is.

Refused pings are logged at info level, at most one line per ``REFUSAL_LOG_SECONDS`` with the
number left out, so a misbehaving client cannot flood the log. A store that cannot be read while
any page is served (``StoreError``) is answered 503 with the reason, never 500.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.heartbeats.service import HEARTBEATS
from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Ping, Signal, TooManyInstances
from exporter.heartbeats.store import StoreError

__all__ = [
    "HEARTBEATS",
    "KEEP_BODY_BYTES",
    "MAX_BODY_BYTES",
    "REFUSAL_LOG_SECONDS",
    "add_routes",
    "store_errors",
]

log = logging.getLogger(__name__)

KEEP_BODY_BYTES = 10 * 1024
MAX_BODY_BYTES = 1024 * 1024
REFUSAL_LOG_SECONDS = 10.0
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_SIGNALS = {"start": Signal.START, "fail": Signal.FAIL}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    """Add the ping routes and the store error answer; ``app[HEARTBEATS]`` must be set before
    requests."""
    for path in ("/ping/{name}", "/ping/{name}/{signal}"):
        app.router.add_get(path, ping)  # also answers HEAD
        app.router.add_post(path, ping)
    app.middlewares.append(store_errors)
    app[_REFUSALS] = _RefusalLog()


@web.middleware
async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page that needs the store while it cannot be read answers 503 with the reason."""
    try:
        return await handler(request)
    except StoreError as exc:
        if request.path.startswith("/api/"):
            return web.json_response({"error": str(exc)}, status=503)
        return web.Response(status=503, text=f"heartbeat store unavailable: {exc}\n")


class _RefusalLog:
    """Refused pings as info lines, at most one per ``REFUSAL_LOG_SECONDS``."""

    def __init__(self) -> None:
        self._next_at = 0.0
        self._left_out = 0

    def note(self, now: float, status: int, name: str, message: str) -> None:
        if now < self._next_at:
            self._left_out += 1
            return
        extra = {"status": status, "heartbeat": name[:128], "reason": message[:200]}
        if self._left_out:
            extra["left_out"] = self._left_out
        log.info("ping refused", extra=extra)
        self._next_at = now + REFUSAL_LOG_SECONDS
        self._left_out = 0


_REFUSALS = web.AppKey("ping_refusals", _RefusalLog)


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
        return _refuse(request, name, refused)
    event = Ping(name, signal, heartbeats.clock.time(), rid, instance, exit_code, duration, body)
    try:
        await heartbeats.record(spec, event)
    except StoreError as exc:
        return web.Response(status=503, text=f"ping not stored: {exc}\n")
    except TooManyInstances as exc:
        return _refuse(request, name, _Refused(429, str(exc)))
    return web.Response(text="OK\n")


def _refuse(request: web.Request, name: str, refused: _Refused) -> web.Response:
    request.app[_REFUSALS].note(
        request.app[HEARTBEATS].clock.monotonic(), refused.status, name, refused.message
    )
    response = web.Response(status=refused.status, text=refused.message + "\n")
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lookout"'
    elif refused.status == 413:
        response.force_close()
    return response


def _signal(part: str | None) -> tuple[Signal, int | None]:
    if part is None:
        return Signal.SUCCESS, None
    if part in _SIGNALS:
        return _SIGNALS[part], None
    if not (part.isascii() and part.isdigit()):
        raise _Refused(404, f"unknown ping {part[:40]!r} (use start, fail or an exit code)")
    digits = part.lstrip("0") or "0"
    # Checked before int(): Python refuses to convert more than 4300 digits.
    if len(digits) > 3 or int(digits) > 255:
        shown = part if len(part) <= 10 else part[:10] + "..."
        raise _Refused(400, f"exit code {shown} is out of range 0-255")
    code = int(digits)
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
