"""The aiohttp application: ``/metrics``, health, readiness and reload routes, plus the ping and
status routes, around one ``runtime.Runtime`` whose lifetime the application owns.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator

from aiohttp import web

from exporter import gzip_stream, malloc_trim
from exporter import protobuf as protobuf_format
from exporter.clock import Clock, SystemClock
from exporter.config import Config
from exporter.heartbeats.routes import HEARTBEATS, add_routes
from exporter.runtime import RUNTIME, Options, Runtime, settle_heap
from exporter.status import add_routes as add_status_routes
from exporter.web_limits import read_body_within

__all__ = ["authorized", "create_app"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What a scraper asks for to get the protobuf exposition (native histograms need it).
PROTOBUF_TYPE = "application/vnd.google.protobuf"
PROTOBUF_PARAMETERS = {"proto": "io.prometheus.client.MetricFamily", "encoding": "delimited"}
# Below this size, compressing costs more than sending.
GZIP_MIN_BYTES = 4096


def _weighted(header: str) -> list[tuple[str, dict[str, str], float]]:
    """The items of an ``Accept`` or ``Accept-Encoding`` header: value (lower case), its
    parameters, its weight (``q``, 1 when absent, 0 when not a number)."""
    items = []
    for item in header.split(","):
        value, *params = (part.strip() for part in item.split(";"))
        parameters: dict[str, str] = {}
        weight = 1.0
        for param in params:
            key, _, argument = param.partition("=")
            key, argument = key.strip().lower(), argument.strip().strip('"')
            if key == "q":
                try:
                    weight = float(argument)
                except ValueError:
                    weight = 0.0
            else:
                parameters[key] = argument
        if value:
            items.append((value.lower(), parameters, weight))
    return items


def prefers_protobuf(accept: str) -> bool:
    """Whether ``Accept`` prefers the protobuf exposition to the text one.

    The media range with the highest weight among those Lookout can answer wins, the first
    listed among equal weights (as Prometheus' Go client negotiates): the delimited
    ``MetricFamily`` protobuf, or text (``text/plain``, ``text/*``, ``*/*``). Anything else, an
    empty header included, gets the text format, as before protobuf was offered.
    """
    best = 0.0
    protobuf = False
    for media, parameters, weight in _weighted(accept):
        if media == PROTOBUF_TYPE and all(
            parameters.get(key) == value for key, value in PROTOBUF_PARAMETERS.items()
        ):
            offered = True
        elif media in ("text/plain", "text/*", "*/*"):
            offered = False
        else:
            continue  # a format Lookout does not write (OpenMetrics, other protobuf forms)
        if weight > best:
            best, protobuf = weight, offered
    return protobuf


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: listed (or ``*``) with a weight above 0."""
    weights = {coding: weight for coding, _, weight in _weighted(accept_encoding)}
    return weights.get("gzip", weights.get("*", 0.0)) > 0


async def metrics(request: web.Request) -> web.StreamResponse:
    """Text, or protobuf when ``Accept`` prefers it. A small exposition goes out in one
    response; a large one is sent piece by piece while it is rendered, so the whole body never
    sits in memory."""
    runtime = request.app[RUNTIME]
    wants_gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    protobuf = prefers_protobuf(request.headers.get("Accept", ""))
    headers = {"Content-Type": protobuf_format.CONTENT_TYPE if protobuf else CONTENT_TYPE}
    headers["Vary"] = "Accept, Accept-Encoding"
    try:
        return await _respond(request, runtime, headers, protobuf, wants_gzip)
    finally:
        malloc_trim.trim()  # the scrape's buffers, freed, back to the system


async def _respond(
    request: web.Request,
    runtime: Runtime,
    headers: dict[str, str],
    protobuf: bool,
    wants_gzip: bool,
) -> web.StreamResponse:
    async with contextlib.aclosing(runtime.render_pieces(protobuf)) as pieces:
        first = await anext(pieces)
        piece = await anext(pieces, None)
        if piece is None:  # the whole exposition
            response = web.Response(body=first, headers=headers)
            if wants_gzip and len(first) >= GZIP_MIN_BYTES:
                response.body = gzip_stream.compress(first)
                response.headers["Content-Encoding"] = "gzip"
            return response
        stream = web.StreamResponse(headers=headers)
        # A piece at a time: about a quarter of a millisecond each.
        compressor = gzip_stream.compressor() if wants_gzip else None
        if compressor is not None:
            stream.headers["Content-Encoding"] = "gzip"
        await stream.prepare(request)
        await stream.write(first if compressor is None else compressor.compress(first))
        while piece is not None:
            await stream.write(piece if compressor is None else compressor.compress(piece))
            piece = await anext(pieces, None)
        if compressor is not None:
            await stream.write(compressor.flush())
        await stream.write_eof()
        return stream


async def healthy(_request: web.Request) -> web.Response:
    return web.Response(text="Lookout is healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if not request.app[RUNTIME].heartbeats.ready:
        return web.Response(status=503, text="Lookout is not ready: heartbeat store down.\n")
    return web.Response(text="Lookout is ready.\n")


def authorized(request: web.Request) -> bool:
    """Whether the request may use the administrative endpoints: always when the config sets
    no ``web.admin_token_file``, else when it carries the token as ``Authorization: Bearer``
    (compared in constant time)."""
    token = request.app[RUNTIME].config.web.admin_token
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def wants_json(request: web.Request) -> bool:
    """``?format=json``, or an ``Accept`` that names JSON before any text."""
    if request.query.get("format") == "json":
        return True
    for media, _parameters, weight in _weighted(request.headers.get("Accept", "")):
        if weight > 0 and media in ("application/json", "text/plain", "text/*", "*/*"):
            return media == "application/json"
    return False


async def reload(request: web.Request) -> web.Response:
    """Reload the config file: 200 when applied, 500 with every problem when the old config
    is kept (text, or JSON when asked), 401 without the admin token when one is configured.
    ``?allow_empty=true`` lets a config without targets and heartbeats replace one with some."""
    if not authorized(request):
        return web.Response(
            status=401,
            text="this endpoint needs the admin token (Authorization: Bearer TOKEN)\n",
            headers={"WWW-Authenticate": 'Bearer realm="lookout"'},
        )
    allow_empty = request.query.get("allow_empty", "").lower() in ("1", "true", "yes")
    outcome = await request.app[RUNTIME].reload(allow_empty=allow_empty)
    status = 200 if outcome.successful else 500
    if wants_json(request):
        return web.json_response(outcome.json(), status=status)
    return web.Response(status=status, text=outcome.text())


def create_app(options: Options, config: Config, clock: Clock | None = None) -> web.Application:
    runtime = Runtime(options, config, clock or SystemClock())
    app = web.Application(
        middlewares=[read_body_within(options.server.read_timeout, runtime.server)]
    )
    app[RUNTIME] = runtime
    app[HEARTBEATS] = runtime.heartbeats

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await runtime.open_store(runtime.config)
        runtime.start()
        await runtime.heartbeats.declare()
        settle_heap()
        yield
        await runtime.close()

    async def host_metrics(_app: web.Application) -> AsyncIterator[None]:
        async with runtime.host.running():
            yield

    async def connectivity(_app: web.Application) -> AsyncIterator[None]:
        async with runtime.connectivity.running():
            yield

    app.cleanup_ctx.append(lifetime)
    app.cleanup_ctx.append(host_metrics)
    app.cleanup_ctx.append(connectivity)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    add_routes(app)
    add_status_routes(app)
    return app
