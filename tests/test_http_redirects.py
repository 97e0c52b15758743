"""Redirects stay on the target's host unless allowed, carry no configured header to another
host, and failure messages quote no response content unless ``http.response_excerpts``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.reasons import Reason
from tests.conftest import ProbeOnce

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-INTERNAL"


class Other:
    """The server on 127.0.0.2: records the headers of every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.port = 0

    async def echo(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        return web.json_response({"key": SECRET})


@pytest.fixture
async def other() -> AsyncIterator[Other]:
    seen = Other()
    app = web.Application()
    app.router.add_get("/echo", seen.echo)
    server = TestServer(app, host="127.0.0.2")
    await server.start_server()
    seen.port = server.port or 0
    yield seen
    await server.close()


@pytest.fixture
async def first(other: Other) -> AsyncIterator[str]:
    async def away(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{other.port}/echo")

    async def here(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"headers": dict(request.headers)})

    async def token_location(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/token-location?token={SECRET}")

    async def secret(_request: web.Request) -> web.Response:
        return web.json_response({"key": SECRET}, headers={"X-Secret": SECRET})

    app = web.Application()
    app.router.add_get("/away", away)
    app.router.add_get("/here", here)
    app.router.add_get("/echo", echo)
    app.router.add_get("/token-location", token_location)
    app.router.add_get("/secret", secret)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


def target(url: str, http: str = "{}", expect: str = "{}") -> str:
    headers = "{X-Api-Key: k-123, X-Auth: a-456}"
    return f"""
targets:
  - name: api
    kind: http
    url: "{url}"
    timeout: 2s
    http: {{headers: {headers}, bearer_token: t-789, {http[1:-1]}}}
    expect: {expect}
"""


async def test_a_redirect_to_another_host_is_not_followed_by_default(
    first: str, other: Other, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{first}/away"))
    assert result.reason is Reason.REDIRECT
    assert "another host than 127.0.0.1" in result.message
    assert "http.cross_host_redirects" in result.message
    assert other.requests == []


async def test_a_cross_host_hop_carries_no_configured_header(
    first: str, other: Other, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{first}/away", "{cross_host_redirects: true}"))
    assert result.success, result.message
    (headers,) = other.requests
    assert headers["User-Agent"].startswith("Lookout/")
    for name in ("X-Api-Key", "X-Auth", "Authorization"):
        assert name not in headers


async def test_a_same_host_redirect_keeps_the_headers(first: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(
        target(
            f"{first}/here",
            expect="{body_matches: ['\"X-Api-Key\": \"k-123\"', 'Bearer t-789']}",
        )
    )
    assert result.success, result.message


def everything_said(result: Any) -> str:
    return " ".join([result.message, *(c.detail for c in result.checks)])


@pytest.mark.parametrize(
    ("path", "expect", "reason"),
    [
        pytest.param(
            "/secret",
            "{json_schema: {properties: {key: {type: integer}}}}",
            Reason.JSON_SCHEMA,
            id="json_schema",
        ),
        pytest.param(
            "/secret", "{headers: [{name: X-Secret, matches: '^x$'}]}", Reason.HEADER, id="header"
        ),
        pytest.param(
            "/secret", "{headers: [{name: X-Secret, absent: true}]}", Reason.HEADER, id="absent"
        ),
        pytest.param("/secret", "{body_not_matches: ['K7MDENG.*']}", Reason.BODY, id="body"),
    ],
)
async def test_failure_messages_quote_no_response_content_by_default(
    first: str, probe_once: ProbeOnce, path: str, expect: str, reason: Reason
) -> None:
    result = await probe_once(target(f"{first}{path}", expect=expect))
    assert result.reason is reason
    said = everything_said(result)
    assert "wJalr" not in said
    assert "INTERNAL" not in said
    quoted = await probe_once(target(f"{first}{path}", "{response_excerpts: true}", expect))
    said = everything_said(quoted)
    assert "K7MDENG" in said
    assert SECRET not in said, "an excerpt is at most 40 characters"


async def test_the_json_schema_message_names_the_path_and_the_expected_type(
    first: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(
        target(f"{first}/secret", expect="{json_schema: {properties: {key: {type: integer}}}}")
    )
    assert result.message == "JSON Schema: $.key: is a string, not of type 'integer'"


async def test_a_redirect_loop_message_quotes_no_location_by_default(
    first: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{first}/token-location", "{max_redirects: 2}"))
    assert result.reason is Reason.REDIRECT
    assert result.message == "too many redirects (2)"
