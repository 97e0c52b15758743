"""What an API announces, against a real loopback API: Sunset and Deprecation headers exported
and expected, 429 and 503 answers with and without Retry-After, and error answers checked
against RFC 9457 problem details or a schema of the user's, each failing with its own reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter.config import ConfigError
from exporter.probes.api_signals import NO_SIGNALS
from exporter.probes.http import HttpObservation
from exporter.reasons import Reason
from tests.conftest import ProbeOnce, config_from_text

SUNSET = datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)
DEPRECATED_AT = 1767225600  # 2026-01-01T00:00:00Z
PROBLEM = {
    "type": "https://api.example.com/problems/not-found",
    "title": "Not Found",
    "status": 404,
    "detail": "no order 42",
}


async def v1(_request: web.Request) -> web.Response:
    return web.json_response(
        {"version": "v1"},
        headers={
            "Sunset": format_datetime(SUNSET, usegmt=True),
            "Deprecation": f"@{DEPRECATED_AT}",
        },
    )


async def v2(_request: web.Request) -> web.Response:
    return web.json_response({"version": "v2"})


async def draft_deprecation(_request: web.Request) -> web.Response:
    return web.json_response({"version": "v0"}, headers={"Deprecation": "true"})


async def limited(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "429"))
    headers = {}
    if "retry" in request.query:
        headers["Retry-After"] = request.query["retry"]
        headers["Date"] = "Thu, 03 Dec 2026 06:00:00 GMT"
    return web.json_response({"title": "slow down"}, status=status, headers=headers)


async def problem(request: web.Request) -> web.Response:
    body = dict(PROBLEM) | json.loads(request.query.get("patch", "{}"))
    content_type = request.query.get("type", "application/problem+json")
    return web.Response(status=404, text=json.dumps(body), content_type=content_type)


async def html_error(_request: web.Request) -> web.Response:
    return web.Response(
        status=502, text="<html><h1>Bad Gateway</h1></html>", content_type="text/html"
    )


async def vendor_error(request: web.Request) -> web.Response:
    code = request.query.get("code", "E42")
    return web.Response(
        status=400,
        text=json.dumps({"code": code}),
        content_type="application/vnd.example.error+json",
    )


@pytest.fixture
async def api(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/v1/orders", v1)
    app.router.add_get("/v2/orders", v2)
    app.router.add_get("/v0/orders", draft_deprecation)
    app.router.add_get("/limited", limited)
    app.router.add_get("/problem", problem)
    app.router.add_get("/html-error", html_error)
    app.router.add_get("/vendor-error", vendor_error)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def target(url: str, expect: str = "{}", excerpts: bool = True) -> str:
    """One target; its failure messages quote the response (``http.response_excerpts``)
    unless ``excerpts`` is false."""
    return f"""
targets:
  - name: api
    kind: http
    url: '{url}'
    timeout: 2s
    http: {{response_excerpts: {str(excerpts).lower()}}}
    expect: {expect}
"""


def observed(result: object) -> HttpObservation:
    observation = getattr(result, "observation", None)
    assert isinstance(observation, HttpObservation)
    return observation


def samples(observation: HttpObservation) -> dict[str, float]:
    return {family.name: value for family, value, _ in observation.samples()}


async def test_sunset_and_deprecation_headers_are_exported_and_satisfy_deprecated(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/v1/orders", "{deprecated: true}"))
    assert result.success, result.message
    exported = samples(observed(result))
    assert exported["lookout_http_sunset_timestamp_seconds"] == SUNSET.timestamp()
    assert exported["lookout_http_deprecation_timestamp_seconds"] == DEPRECATED_AT
    assert "lookout_http_retry_after_seconds" not in exported
    facts = observed(result).json()
    assert facts["sunset_timestamp_seconds"] == SUNSET.timestamp()
    assert facts["deprecated"] is True


async def test_without_the_headers_the_gauges_are_absent_and_deprecated_true_fails(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/v2/orders", "{deprecated: true}"))
    assert result.reason is Reason.HEADER
    assert result.message == (
        "a Sunset or Deprecation header must announce the deprecation, neither is there"
    )
    exported = samples(observed(result))
    assert "lookout_http_sunset_timestamp_seconds" not in exported
    assert "lookout_http_deprecation_timestamp_seconds" not in exported


async def test_probes_with_the_same_answer_share_one_observation(
    api: str, probe_once: ProbeOnce
) -> None:
    """The latest result of every target keeps its observation: equal ones (most targets'
    answers) are one object, and an answer without announcements holds the shared empty
    signals."""
    first = observed(await probe_once(target(f"{api}/v2/orders")))
    second = observed(await probe_once(target(f"{api}/v2/orders")))
    assert first is second
    assert first.signals is NO_SIGNALS
    announced = observed(await probe_once(target(f"{api}/v1/orders")))
    assert announced is not first
    assert announced.signals is not NO_SIGNALS
    assert announced.signals.sunset == SUNSET.timestamp()


async def test_a_version_that_must_not_be_deprecated_fails_when_it_announces_it(
    api: str, probe_once: ProbeOnce
) -> None:
    assert (await probe_once(target(f"{api}/v2/orders", "{deprecated: false}"))).success
    result = await probe_once(target(f"{api}/v1/orders", "{deprecated: false}"))
    assert result.reason is Reason.HEADER
    assert "announces a deprecation" in (result.message or "")


async def test_an_undated_draft_deprecation_counts_but_exports_no_timestamp(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/v0/orders", "{deprecated: true}"))
    assert result.success
    assert "lookout_http_deprecation_timestamp_seconds" not in samples(observed(result))


async def test_a_429_is_rate_limited_not_status_and_exports_its_retry_after(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/limited?retry=120"))
    assert result.reason is Reason.RATE_LIMITED
    assert result.message == "status 429, expected 2xx"
    assert samples(observed(result))["lookout_http_retry_after_seconds"] == 120
    other = await probe_once(target(f"{api}/limited?status=500"))
    assert other.reason is Reason.STATUS


@pytest.mark.parametrize(
    ("query", "success", "retry_after", "message"),
    [
        pytest.param("retry=30", True, 30, None, id="seconds"),
        pytest.param(
            "retry=Thu,%2003%20Dec%202026%2006:05:00%20GMT", True, 300, None, id="http-date"
        ),
        pytest.param("", False, None, "a 429 answer must say when to retry", id="missing"),
        pytest.param(
            "retry=soon", False, None, "Retry-After 'soon' is neither seconds nor a date", id="bad"
        ),
        pytest.param("status=503", False, None, "a 503 answer must say when", id="503"),
        pytest.param("status=503&retry=5", True, 5, None, id="503-seconds"),
    ],
)
async def test_retry_after_required_on_429_and_503(
    api: str,
    probe_once: ProbeOnce,
    query: str,
    success: bool,
    retry_after: float | None,
    message: str | None,
) -> None:
    expect = "{status: [200, 429, 503], retry_after: required}"
    result = await probe_once(target(f"{api}/limited?{query}", expect))
    assert result.success is success, result.message
    assert samples(observed(result)).get("lookout_http_retry_after_seconds") == retry_after
    if message is not None:
        assert result.reason is Reason.HEADER
        assert message in (result.message or "")


async def test_retry_after_is_not_exported_for_other_statuses(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/limited?status=200&retry=60"))
    assert result.success
    assert "lookout_http_retry_after_seconds" not in samples(observed(result))


async def test_a_problem_json_error_passes(api: str, probe_once: ProbeOnce) -> None:
    result = await probe_once(
        target(f"{api}/problem", "{status: [404], error_format: problem+json}")
    )
    assert result.success, result.message
    assert [c.detail for c in result.checks if c.name == "error_format"] == [
        "the 404 answer follows problem+json"
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param(
            "/problem?type=application/json",
            "a 404 answer must be application/problem+json, its content type is 'application/json'",
            id="content-type",
        ),
        pytest.param(
            '/problem?patch={"status":"404"}',
            "the 404 answer does not follow problem+json: $.status: '404' is not of type 'integer'",
            id="member-type",
        ),
        pytest.param(
            '/problem?patch={"status":410}',
            "the problem details' status 410 is not the response's 404",
            id="status-member",
        ),
        pytest.param(
            "/html-error",
            "a 502 answer must be application/problem+json, its content type is 'text/html'",
            id="html",
        ),
    ],
)
async def test_an_error_answer_in_another_format_fails_as_error_format_before_status(
    api: str, probe_once: ProbeOnce, path: str, message: str
) -> None:
    result = await probe_once(target(f"{api}{path}", "{error_format: problem+json}"))
    assert result.reason is Reason.ERROR_FORMAT
    assert result.message == message
    assert any(c.name == "status" and not c.passed for c in result.checks)


async def test_a_successful_answer_is_not_held_to_the_error_format(
    api: str, probe_once: ProbeOnce
) -> None:
    result = await probe_once(target(f"{api}/v2/orders", "{error_format: problem+json}"))
    assert result.success
    assert not any(c.name == "error_format" for c in result.checks)


async def test_a_user_schema_checks_another_documented_error_format(
    api: str, probe_once: ProbeOnce, tmp_path: Path
) -> None:
    schema = {"type": "object", "required": ["code"], "properties": {"code": {"pattern": "^E"}}}
    (tmp_path / "error.json").write_text(json.dumps(schema), encoding="utf-8")
    expect = (
        "{status: [400], error_format: {json_schema: error.json, "
        "content_type: application/vnd.example.error+json}}"
    )
    assert (await probe_once(target(f"{api}/vendor-error", expect))).success
    result = await probe_once(target(f"{api}/vendor-error?code=X1", expect))
    assert result.reason is Reason.ERROR_FORMAT
    assert result.message == (
        "the 400 answer does not follow error.json: $.code: 'X1' does not match '^E'"
    )
    other = await probe_once(target(f"{api}/problem", expect.replace("[400]", "[404]")))
    assert other.reason is Reason.ERROR_FORMAT
    assert other.message == (
        "a 404 answer must be application/vnd.example.error+json, its content type is "
        "'application/problem+json'"
    )


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        pytest.param("{error_format: xml}", "expect.error_format", id="unknown-format"),
        pytest.param("{retry_after: sometimes}", "expect.retry_after", id="retry-after"),
        pytest.param(
            "{error_format: {json_schema: {type: 12}}}",
            "not a valid JSON Schema",
            id="bad-schema",
        ),
    ],
)
def test_a_wrong_expectation_is_a_config_error_naming_its_key(
    tmp_path: Path, expect: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_text(target("http://127.0.0.1:9/", expect), tmp_path)
    assert message in str(error.value)


async def by_header(request: web.Request) -> web.Response:
    """A gateway that answers every version from v2, saying so in a header and the body."""
    return web.json_response(
        {"meta": {"version": "v2"}, "orders": []}, headers={"X-Api-Version": "2.4"}
    )


@pytest.fixture
async def gateway(aiohttp_server: AiohttpServer) -> str:
    app = web.Application()
    app.router.add_get("/{version}/orders", by_header)
    app.router.add_get("/html", html_error)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("path", "version", "success", "message"),
    [
        pytest.param(
            "/v2/orders", "{header: X-Api-Version, matches: '^2\\.'}", True, None, id="header"
        ),
        pytest.param(
            "/v2/orders", "{json_pointer: /meta/version, equals: v2}", True, None, id="json"
        ),
        pytest.param(
            "/v1/orders",
            "{header: X-Api-Version, matches: '^1\\.'}",
            False,
            "another version answered: header X-Api-Version says '2.4', "
            "expected matching '^1\\\\.'",
            id="header-routed-to-v2",
        ),
        pytest.param(
            "/v1/orders",
            "{json_pointer: /meta/version, equals: v1}",
            False,
            "another version answered: /meta/version says 'v2', expected 'v1'",
            id="json-routed-to-v2",
        ),
        pytest.param(
            "/v1/orders",
            "{header: Api-Version, equals: v1}",
            False,
            "the response does not say which version answered (no Api-Version)",
            id="no-header",
        ),
        pytest.param(
            "/v1/orders",
            "{json_pointer: /version, equals: v1}",
            False,
            "the response does not say which version answered (no /version)",
            id="no-field",
        ),
    ],
)
async def test_the_version_that_answered_is_checked_with_its_own_reason(
    gateway: str,
    probe_once: ProbeOnce,
    path: str,
    version: str,
    success: bool,
    message: str | None,
) -> None:
    schema = "{properties: {meta: {properties: {version: {const: v1}}}}}"
    expect = (
        f"{{version: {version}, json_schema: {schema}}}"
        if not success
        else f"{{version: {version}}}"
    )
    result = await probe_once(target(f"{gateway}{path}", expect))
    assert result.success is success, result.message
    if message is not None:
        assert result.reason is Reason.VERSION
        assert result.message == message
        # The v2 body fails v1's schema too; the version is named as the cause.
        assert any(c.name == "json_schema" and not c.passed for c in result.checks)


def test_a_version_check_needs_one_place_and_one_expectation(tmp_path: Path) -> None:
    for expect in (
        "{version: {equals: v1}}",
        "{version: {header: X, json_pointer: /v, equals: v1}}",
        "{version: {header: X}}",
        "{version: {json_pointer: version, equals: v1}}",
    ):
        with pytest.raises(ConfigError) as error:
            config_from_text(target("http://127.0.0.1:9/", expect), tmp_path)
        assert "expect.version" in str(error.value), expect


async def test_without_response_excerpts_no_message_quotes_the_response(
    api: str, gateway: str, probe_once: ProbeOnce
) -> None:
    cases = [
        (f"{api}/limited?retry=soon", "{status: [429], retry_after: required}",
         "Retry-After is neither seconds nor a date"),
        (f"{api}/html-error", "{error_format: problem+json}",
         "a 502 answer must be application/problem+json, its content type is another"),
        (f'{api}/problem?patch={{"status":"four"}}', "{status: [404], error_format: problem+json}",
         "the 404 answer does not follow problem+json: $.status: is a string, not of type "
         "'integer'"),
        (f'{api}/problem?patch={{"status":410}}', "{status: [404], error_format: problem+json}",
         "the problem details' status is not the response's 404"),
        (f"{gateway}/v1/orders", "{version: {json_pointer: /meta/version, equals: v1}}",
         "another version answered: /meta/version says another version, expected 'v1'"),
    ]  # fmt: skip
    for url, expect, message in cases:
        result = await probe_once(target(url, expect, excerpts=False))
        assert result.message == message
