"""Loopback peers for the kinds beyond HTTP, shared by the tests that need a target of every
kind: an RDAP domain document and a grpcio health server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web


async def rdap_domain(request: web.Request) -> web.Response:
    """An RDAP domain object (RFC 9083) expiring in 20 days, with its registrar; route it as
    ``/rdap/domain/{name}``."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 20 * 86400))
    document = {
        "objectClassName": "domain",
        "ldhName": request.match_info["name"],
        "status": ["active"],
        "events": [{"eventAction": "expiration", "eventDate": expires}],
        "entities": [
            {
                "objectClassName": "entity",
                "roles": ["registrar"],
                "vcardArray": ["vcard", [["fn", {}, "text", "Example Registrar"]]],
            }
        ],
    }
    return web.json_response(document, content_type="application/rdap+json")


@contextlib.asynccontextmanager
async def grpc_health_server(serving: bool) -> AsyncIterator[str]:
    """A grpcio server on loopback whose health service answers SERVING or NOT_SERVING for the
    whole server; yields its address."""
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio

    server = aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    status = health_pb2.HealthCheckResponse
    await health.set("", status.SERVING if serving else status.NOT_SERVING)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
