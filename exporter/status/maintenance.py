"""The maintenance API: ``GET /api/v1/maintenance`` lists every window (the config's and those
created at run time), ``POST /api/v1/maintenance`` creates a one-off window and
``DELETE /api/v1/maintenance/{id}`` ends one early; ``GET /api/v1/maintenance/{id}`` shows one.

Creating and ending need the admin token (``web.admin_token_file``) as
``Authorization: Bearer TOKEN``, compared in constant time; without that setting they are off.
Run-time windows are kept in the heartbeat store before the answer, so a restart keeps them.
Errors are RFC 9457 problem details (``application/problem+json``) that also carry the API's
usual ``error`` member, naming the field that is wrong.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import secrets
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from exporter.heartbeats.store import StoreError
from exporter.maintenance import OneOff, RequestProblem, Scheduled, Window, parse_request
from exporter.runtime import RUNTIME, Runtime

__all__ = ["PROBLEM_TYPE", "add_routes", "problem", "window_json"]

PROBLEM_TYPE = "application/problem+json"
# Characters that make a name a glob (as fnmatch reads it).
_GLOB = frozenset("*?[")


def problem(status: int, detail: str, field: str | None = None, **headers: str) -> web.Response:
    """An RFC 9457 problem details answer; ``field`` names the request field at fault."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "error": detail,
    }
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE, headers=headers)


def window_json(
    runtime: Runtime, window: Window, scheduled: Scheduled | None, now: float
) -> dict[str, Any]:
    """One window as the API lists it: where it comes from, its state, what it covers now."""
    when = window.when
    if isinstance(when, OneOff):
        state = "ended" if now >= when.end else "active" if now >= when.start else "scheduled"
        start: float | None = when.start
        end: float | None = when.end
    else:
        state = "active" if window.active(now) else "waiting"
        start = end = None
    if scheduled is not None:
        state = scheduled.state(now)
        end = scheduled.end
    return {
        "id": window.name,
        "source": "config" if scheduled is None else "api",
        "state": state,
        "active": state == "active",
        "schedule": window.describe(),
        "start": start,
        "end": end,
        "ended_at": None if scheduled is None else scheduled.ended_at,
        "created_at": None if scheduled is None else scheduled.created_at,
        "author": None if scheduled is None else scheduled.author,
        "reason": window.reason,
        "targets": None if window.targets is None else list(window.targets),
        "heartbeats": None if window.heartbeats is None else list(window.heartbeats),
        "labels": dict(window.labels),
        "covers": {
            "targets": [
                t.name for t in runtime.config.targets if window.covers_target(t.name, t.labels)
            ],
            "heartbeats": [
                h.name
                for h in runtime.config.heartbeats
                if window.covers_heartbeat(h.name, h.labels)
            ],
        },
    }


def _all_json(runtime: Runtime, now: float) -> list[dict[str, Any]]:
    items = [window_json(runtime, w, None, now) for w in runtime.config.maintenance]
    items.extend(window_json(runtime, s.window(), s, now) for s in runtime.scheduled())
    return items


def _denied(request: web.Request) -> web.Response | None:
    """The answer to a request without the admin token, or None when it has it."""
    token = request.app[RUNTIME].config.web.admin_token
    if token is None:
        return problem(
            403, "the maintenance API is off: set web.admin_token_file in the config to enable it"
        )
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return problem(
            401,
            "this needs the admin token as 'Authorization: Bearer TOKEN'",
            **{"WWW-Authenticate": 'Bearer realm="lookout"'},
        )
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        return problem(403, "the admin token is wrong")
    return None


def _unknown(patterns: Iterable[str], names: list[str]) -> tuple[int, str] | None:
    """The first pattern that names nothing in ``names``, with its index."""
    for index, pattern in enumerate(patterns):
        if _GLOB.isdisjoint(pattern):
            if pattern not in names:
                return index, pattern
        elif not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return index, pattern
    return None


def _check_scope(runtime: Runtime, scheduled: Scheduled) -> None:
    """Raise ``RequestProblem`` for a name that is not in the config, or a window that would
    cover nothing."""
    targets = [t.name for t in runtime.config.targets]
    heartbeats = [h.name for h in runtime.config.heartbeats]
    for key, patterns, names in (
        ("targets", scheduled.targets, targets),
        ("heartbeats", scheduled.heartbeats, heartbeats),
    ):
        if patterns is None:
            continue
        found = _unknown(patterns, names)
        if found is not None:
            index, pattern = found
            noun = key[:-1]
            what = f"no {noun} named {pattern!r}"
            if not _GLOB.isdisjoint(pattern):
                what = f"{pattern!r} matches no {noun}"
            raise RequestProblem(f"{key}[{index}]", f"{what} in the config")
    window = scheduled.window()
    if window.everything:
        return
    covered = any(window.covers_target(t.name, t.labels) for t in runtime.config.targets) or any(
        window.covers_heartbeat(h.name, h.labels) for h in runtime.config.heartbeats
    )
    if not covered:
        raise RequestProblem("labels", "no target or heartbeat in the config has these labels")


def _new_id(runtime: Runtime) -> str:
    taken = {w.name for w in runtime.config.maintenance} | {w.id for w in runtime.scheduled()}
    while True:
        candidate = f"m-{secrets.token_hex(4)}"
        if candidate not in taken:
            return candidate


def add_routes(app: web.Application) -> None:
    async def listing(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        return web.json_response({"maintenance": _all_json(runtime, runtime.clock.time())})

    async def one(request: web.Request) -> web.Response:
        runtime = request.app[RUNTIME]
        window_id = request.match_info["id"]
        for item in _all_json(runtime, runtime.clock.time()):
            if item["id"] == window_id:
                return web.json_response(item)
        return problem(404, f"no maintenance window with id {window_id!r}")

    async def create(request: web.Request) -> web.Response:
        denied = _denied(request)
        if denied is not None:
            return denied
        runtime = request.app[RUNTIME]
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return problem(400, "the body is not UTF-8 text")
        except json.JSONDecodeError as exc:
            return problem(
                400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            )
        now = runtime.clock.time()
        try:
            scheduled = parse_request(body, _new_id(runtime), now)
            _check_scope(runtime, scheduled)
        except RequestProblem as exc:
            return problem(400, str(exc), exc.field or None)
        try:
            await runtime.heartbeats.save_maintenance(scheduled)
        except StoreError as exc:
            return problem(503, f"the window was not stored: {exc}")
        body = window_json(runtime, scheduled.window(), scheduled, now)
        location = f"{request.path.rstrip('/')}/{scheduled.id}"
        return web.json_response(body, status=201, headers={"Location": location})

    async def end(request: web.Request) -> web.Response:
        denied = _denied(request)
        if denied is not None:
            return denied
        runtime = request.app[RUNTIME]
        window_id = request.match_info["id"]
        if any(w.name == window_id for w in runtime.config.maintenance):
            return problem(
                409, f"window {window_id!r} comes from the config: change it there and reload"
            )
        found = next((w for w in runtime.scheduled() if w.id == window_id), None)
        if found is None:
            return problem(404, f"no maintenance window with id {window_id!r}")
        now = runtime.clock.time()
        ended = found.ended(now)
        if ended is not found:
            try:
                await runtime.heartbeats.save_maintenance(ended)
            except StoreError as exc:
                return problem(503, f"the window was not ended: {exc}")
        return web.json_response(window_json(runtime, ended.window(), ended, now))

    app.router.add_get("/api/v1/maintenance", listing)
    app.router.add_post("/api/v1/maintenance", create)
    app.router.add_get("/api/v1/maintenance/{id}", one)
    app.router.add_delete("/api/v1/maintenance/{id}", end)
