"""The read API: every heartbeat's state as JSON, and one heartbeat's latest pings with bodies.

``GET /api/heartbeats`` lists the declared heartbeats as the collector sees them (from memory).
``GET /api/heartbeats/{name}`` adds the latest pings, newest first, with their kept bodies, read
from the store in a worker thread (``?limit=``, default 20, at most ``KEEP_PINGS``). Bodies are
job output, so a heartbeat with a token requires it here as for its pings. Timestamps are
seconds since the epoch; absent values are ``null``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from exporter.heartbeats.auth import authorized
from exporter.heartbeats.service import HEARTBEATS
from exporter.heartbeats.state import Signal, View
from exporter.heartbeats.store import KEEP_PINGS, StoredPing

__all__ = ["DEFAULT_LIMIT", "describe", "list_heartbeats", "show_heartbeat"]

DEFAULT_LIMIT = 20


def describe(view: View) -> dict[str, Any]:
    """One heartbeat's configuration and state, as JSON-ready values."""
    spec, facts = view.spec, view.facts
    instances = None
    if spec.instances is not None:
        instances = {"expected": spec.instances, "alive": view.instances_alive}
    return {
        "name": spec.name,
        "status": str(view.status),
        "schedule": spec.schedule.describe(),
        "grace_seconds": spec.grace,
        "max_runtime_seconds": spec.max_runtime,
        "labels": dict(spec.labels),
        "last_success": facts.track.last_success_at,
        "last_start": facts.last_start_at,
        "deadline": view.deadline,
        "age_seconds": view.age,
        "last_duration_seconds": facts.last_duration,
        "last_exit_code": facts.last_exit_code,
        "pings": {str(signal): facts.counts.get(signal, 0) for signal in Signal},
        "instances": instances,
    }


async def list_heartbeats(request: web.Request) -> web.Response:
    views = request.app[HEARTBEATS].views()
    return web.json_response({"heartbeats": [describe(view) for view in views]})


async def show_heartbeat(request: web.Request) -> web.Response:
    heartbeats = request.app[HEARTBEATS]
    name = request.match_info["name"]
    spec = heartbeats.specs.get(name)
    if spec is None:
        return web.json_response({"error": f"unknown heartbeat {name!r}"}, status=404)
    if spec.token is not None and not authorized(request, spec.token):
        return web.json_response({"error": f"heartbeat {name!r} needs its token"}, status=401)
    text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= KEEP_PINGS):
        message = f"limit must be a number from 1 to {KEEP_PINGS}, not {text!r}"
        return web.json_response({"error": message}, status=400)
    store = heartbeats.store
    recent = await asyncio.to_thread(store.recent, name, int(text)) if store is not None else []
    return web.json_response({**describe(heartbeats.view(spec)), "recent": _pings(recent)})


def _pings(recent: list[StoredPing]) -> list[dict[str, Any]]:
    return [
        {
            "seq": ping.seq,
            "at": ping.at,
            "signal": str(ping.signal),
            "rid": ping.rid,
            "instance": ping.instance,
            "exit_code": ping.exit_code,
            "duration_seconds": ping.duration,
            "body": ping.body.decode("utf-8", errors="replace"),
        }
        for ping in recent
    ]
