"""The flow kind against a real loopback API: login → token → refresh → orders → logout, each
step failing in turn, cleanup after a failure, a timeout naming its step, exported values, the
per-step series, and secrets that never show."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.clock import Clock, SystemClock
from exporter.collectors.probes import ProbeCollector
from exporter.probe_command import build_report, render_text
from exporter.probes.clients import SharedClients
from exporter.probes.flow import FlowObservation
from exporter.probes.runner import run_probe
from exporter.protobuf import metrics_pb2
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runtime import Options
from exporter.stats import ProbeStats
from exporter.status import views
from exporter.targets import Target
from tests.clock import FakeClock
from tests.conftest import config_from_text
from tests.status_support import wait_probed
from tests.test_api import documented

PASSWORD = "correct-horse-battery"
FIRST_TOKEN = "tok-first-5f1d2c9a"
SECOND_TOKEN = "tok-second-8e7b6a3f"
NOW = 1_800_000_000.0


@dataclass
class Api:
    """The loopback API's behaviour, changed by tests, and what it saw."""

    port: int = 0
    login_status: int = 200
    login_body: dict[str, Any] | None = None
    orders: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": 7, "created_at": _iso(NOW - 300)}]
    )
    orders_delay: float = 0.0
    refresh_schema_break: bool = False
    logouts: list[str] = field(default_factory=list)
    seen_bodies: list[Any] = field(default_factory=list)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _app(api: Api) -> web.Application:
    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        api.seen_bodies.append(body)
        if body.get("password") != PASSWORD:
            return web.json_response({"error": "bad credentials"}, status=401)
        if api.login_status != 200:
            return web.json_response({"error": "down"}, status=api.login_status)
        reply = api.login_body or {"access_token": FIRST_TOKEN, "user": {"id": 42}}
        return web.json_response(reply, headers={"X-Session": "sess-77"})

    async def refresh(request: web.Request) -> web.Response:
        if _bearer(request) != FIRST_TOKEN:
            return web.json_response({"error": "unauthorized"}, status=401)
        if api.refresh_schema_break:
            return web.json_response({"token": SECOND_TOKEN})
        return web.json_response({"access_token": SECOND_TOKEN})

    async def orders(request: web.Request) -> web.Response:
        if _bearer(request) != SECOND_TOKEN or request.match_info["user"] != "42":
            return web.json_response({"error": "unauthorized"}, status=401)
        if api.orders_delay:
            await asyncio.sleep(api.orders_delay)
        return web.json_response(
            {
                "items": api.orders,
                "total": len(api.orders),
                "queue": {"ready": 17},
                "caller": _bearer(request),
            }
        )

    async def logout(request: web.Request) -> web.Response:
        api.logouts.append(_bearer(request))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/refresh", refresh)
    app.router.add_get("/users/{user}/orders", orders)
    app.router.add_post("/auth/logout", logout)
    return app


@pytest.fixture
async def api(aiohttp_server: AiohttpServer) -> Api:
    state = Api()
    server = await aiohttp_server(_app(state))
    assert server.port is not None
    state.port = server.port
    return state


TOKEN_SCHEMA = {"type": "object", "required": ["access_token"]}


def flow_config(port: int, timeout: str = "3s") -> str:
    base = f"http://127.0.0.1:{port}"
    target = {
        "name": "checkout-flow",
        "kind": "flow",
        "interval": "1m",
        "timeout": timeout,
        "flow": {
            "steps": [
                {
                    "name": "login",
                    "url": f"{base}/auth/login",
                    "http": {"method": "POST"},
                    "json": {"user": "monitor", "password": "${MONITOR_PASSWORD}"},
                    "expect": {"status": ["200"], "json_schema": TOKEN_SCHEMA},
                    "extract": {
                        "token": {"json": "$.access_token", "secret": True},
                        "user_id": {"json": "$.user.id"},
                        "session": {"header": "X-Session", "regex": "sess-(\\d+)"},
                    },
                },
                {
                    "name": "refresh",
                    "url": f"{base}/auth/refresh",
                    "http": {"method": "POST", "headers": {"Authorization": "Bearer {{ token }}"}},
                    "expect": {"json_schema": TOKEN_SCHEMA},
                    "extract": {"token": {"json": "$.access_token", "secret": True}},
                },
                {
                    "name": "orders",
                    "url": f"{base}/users/{{{{ user_id }}}}/orders?limit=5",
                    "http": {"headers": {"Authorization": "Bearer {{ token }}"}},
                    "expect": {
                        "status": ["200"],
                        "values": [
                            {"json": "$.items", "min_items": 1},
                            {"json": "$.items[0].created_at", "newer_than": "15m"},
                            {"json": "$.total", "at_least": 1},
                        ],
                    },
                    "export": {"queue_depth": {"json": "$.queue.ready"}},
                },
                {
                    "name": "logout",
                    "always": True,
                    "url": f"{base}/auth/logout",
                    "http": {"method": "POST", "headers": {"Authorization": "Bearer {{ token }}"}},
                    "expect": {"status": ["204"]},
                },
            ]
        },
    }
    return json.dumps({"targets": [target]})


async def probe(
    api: Api,
    tmp_path: Path,
    *,
    within: str = "3s",
    clock: Clock | None = None,
    text: str | None = None,
) -> tuple[Target[Any], ProbeResult]:
    config = config_from_text(
        text or flow_config(api.port, within), tmp_path, {"MONITOR_PASSWORD": PASSWORD}
    )
    target = config.targets[0]
    clients = SharedClients()
    try:
        result = await run_probe(target, clients, clock or FakeClock(NOW))
    finally:
        await clients.close()
    return target, result


def steps(result: ProbeResult) -> dict[str, str]:
    assert isinstance(result.observation, FlowObservation)
    return {step.name: step.json()["state"] for step in result.observation.steps}


def metrics(target: Target[Any], *results: ProbeResult) -> str:
    stats = ProbeStats(target)
    for result in results:
        stats.record(result)
    return "".join(ProbeCollector(lambda: [stats], lambda: None).expose())


async def test_a_passing_flow_carries_the_token_from_step_to_step(api: Api, tmp_path: Path) -> None:
    _, result = await probe(api, tmp_path)
    assert result.success, result.message
    assert steps(result) == dict.fromkeys(("login", "refresh", "orders", "logout"), "passed")
    assert api.seen_bodies == [{"user": "monitor", "password": PASSWORD}]
    assert api.logouts == [SECOND_TOKEN]
    assert isinstance(result.observation, FlowObservation)
    assert result.observation.values == (("queue_depth", 17.0),)
    assert result.observation.steps[0].extracted == ("token", "user_id", "session")
    assert result.status_code == 204
    names = [check.name for check in result.checks]
    assert "orders: value $.items[0].created_at newer_than" in names
    assert "login: extract session" in names


async def test_the_per_step_series_and_the_exported_value(api: Api, tmp_path: Path) -> None:
    target, passed = await probe(api, tmp_path)
    api.orders = []
    _, failed = await probe(api, tmp_path)
    text = metrics(target, passed, failed)
    base = 'target="checkout-flow",kind="flow"'
    assert f'lookout_flow_step_success{{{base},step="login"}} 1\n' in text
    assert f'lookout_flow_step_success{{{base},step="orders"}} 0\n' in text
    assert f'lookout_flow_step_duration_seconds_count{{{base},step="orders"}} 2\n' in text
    assert f'lookout_flow_step_duration_seconds_count{{{base},step="logout"}} 2\n' in text
    assert f'lookout_flow_step_failures_total{{{base},step="orders",reason="value"}} 1\n' in text
    assert 'step="login",reason=' not in text
    assert f'lookout_probe_failures_total{{{base},reason="value"}} 1\n' in text
    # The failed probe exported nothing: its value series is gone until a probe reads it again.
    assert "lookout_probe_value" not in text
    assert f'lookout_probe_value{{{base},name="queue_depth"}} 17\n' in metrics(target, passed)


async def test_step_durations_are_native_histograms_in_the_protobuf_exposition(
    api: Api, tmp_path: Path
) -> None:
    target, result = await probe(api, tmp_path, clock=SystemClock())
    stats = ProbeStats(target)
    stats.record(result)
    payload = b"".join(ProbeCollector(lambda: [stats], lambda: None).expose_protobuf())
    families = {}
    position = 0
    while position < len(payload):
        size, shift = 0, 0
        while True:
            byte = payload[position]
            position += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        family = metrics_pb2.MetricFamily()
        family.ParseFromString(payload[position : position + size])
        position += size
        families[family.name] = family
    steps_family = families["lookout_flow_step_duration_seconds"]
    assert [
        {label.name: label.value for label in m.label}["step"] for m in steps_family.metric
    ] == ["login", "refresh", "orders", "logout"]
    for metric in steps_family.metric:
        assert metric.histogram.sample_count == 1
        assert metric.histogram.schema == 3
        assert sum(span.length for span in metric.histogram.positive_span) >= 1
        assert len(metric.histogram.bucket) > 0  # classic buckets too


@pytest.mark.parametrize(
    ("change", "step", "reason", "words", "cleaned"),
    [
        pytest.param(
            {"login_status": 503}, "login", Reason.STATUS, "status 503", False, id="status"
        ),
        pytest.param(
            {"refresh_schema_break": True},
            "refresh",
            Reason.JSON_SCHEMA,
            "'access_token' is a required property",
            True,
            id="schema",
        ),
        pytest.param(
            {"login_body": {"access_token": FIRST_TOKEN, "user": {}}},
            "login",
            Reason.EXTRACT,
            "extract user_id: $.user.id: no value in the body",
            True,  # the token was extracted before the missing value
            id="missing-extracted-value",
        ),
        pytest.param(
            {"orders": [{"id": 1, "created_at": _iso(NOW - 3600)}]},
            "orders",
            Reason.VALUE,
            '$.items[0].created_at: "' + _iso(NOW - 3600) + '" is 1h old, expected newer than 15m',
            True,
            id="stale-timestamp",
        ),
        pytest.param(
            {"orders": []},
            "orders",
            Reason.VALUE,
            "$.items: 0 items, expected min items 1",
            True,
            id="too-few-items",
        ),
    ],
)
async def test_each_step_failing_in_turn_names_the_step_and_cleans_up(
    api: Api,
    tmp_path: Path,
    change: Mapping[str, Any],
    step: str,
    reason: Reason,
    words: str,
    cleaned: bool,
) -> None:
    for key, value in change.items():
        setattr(api, key, value)
    _, result = await probe(api, tmp_path)
    assert result.reason is reason
    assert result.message.startswith(f"step {step}: ")
    assert words in result.message
    states = steps(result)
    assert states[step] == "failed"
    order = list(states)
    assert all(states[s] == "passed" for s in order[: order.index(step)])
    assert all(states[s] == "skipped" for s in order[order.index(step) + 1 : -1])
    # The cleanup step ran with the latest token the flow had, unless it never had one.
    assert states["logout"] == ("passed" if cleaned else "skipped")
    assert len(api.logouts) == int(cleaned)


async def test_a_cleanup_step_whose_variables_were_never_set_is_skipped(
    api: Api, tmp_path: Path
) -> None:
    text = flow_config(api.port).replace(PASSWORD, "x")
    api.login_status = 500
    _, result = await probe(api, tmp_path, text=text)
    assert result.reason is Reason.STATUS
    assert steps(result)["logout"] == "skipped"
    assert isinstance(result.observation, FlowObservation)
    assert result.observation.steps[-1].message == "not run: token not set"
    assert api.logouts == []


async def test_a_timeout_in_the_middle_step_names_that_step(api: Api, tmp_path: Path) -> None:
    api.orders_delay = 2.0
    target, result = await probe(api, tmp_path, within="500ms", clock=SystemClock())
    assert result.reason is Reason.TIMEOUT
    assert "during step orders" in result.message
    assert steps(result) == {
        "login": "passed",
        "refresh": "passed",
        "orders": "failed",
        "logout": "skipped",
    }
    text = metrics(target, result)
    assert 'step="orders",reason="timeout"} 1\n' in text


async def test_secrets_never_show_in_results_api_probe_output_metrics_or_logs(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The token also turns up in a failure detail: the orders response echoes it, and the
    # step expects no token in the body.
    document = json.loads(flow_config(api.port))
    orders = document["targets"][0]["flow"]["steps"][2]
    orders["url"] = orders["url"].replace("limit=5", "limit=5&t={{ token }}")
    orders["expect"]["body_not_matches"] = ["tok-[a-z0-9-]+"]
    orders["http"]["response_excerpts"] = True  # failure messages quote the response
    caplog.set_level(logging.DEBUG)
    target, result = await probe(api, tmp_path, text=json.dumps(document))
    assert result.reason is Reason.BODY
    assert "found '<secret>'" in result.message
    report = build_report(target, None, result)
    seen = [
        json.dumps(report),
        render_text(report, NOW),
        json.dumps(views.result_json(result)),
        json.dumps(views.request_json(target)),
        metrics(target, result),
        # The exporter's own log lines (the test API's access log is the API's business).
        "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.")),
        result.message,
    ]
    for text in seen:
        for secret in (FIRST_TOKEN, SECOND_TOKEN, PASSWORD):
            assert secret not in text
    assert "t=<secret>" in render_text(report, NOW)
    assert "POST http://127.0.0.1" in render_text(report, NOW)


async def test_the_status_page_and_the_api_show_every_step_without_secrets(
    api: Api, tmp_path: Path, aiohttp_client: Any
) -> None:
    document = json.loads(flow_config(api.port))
    document["targets"][0] |= {"interval": "3s", "timeout": "3s"}
    orders = document["targets"][0]["flow"]["steps"][2]
    orders["url"] += "&t={{ token }}"
    path = tmp_path / "lookout.yml"
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = config.load(str(path), environ={"MONITOR_PASSWORD": PASSWORD})
    app = create_app(Options(config_path=str(path)), loaded)
    client = await aiohttp_client(app)
    await wait_probed(app, within=15)
    page = await (await client.get("/targets/checkout-flow")).text()
    answer = await client.get("/api/v1/targets/checkout-flow")
    body = await answer.text()
    for text in (page, body):
        for secret in (FIRST_TOKEN, SECOND_TOKEN, PASSWORD):
            assert secret not in text
    assert "<h3>Steps</h3>" in page
    assert "t=&lt;secret&gt;" in page
    documented("/api/v1/targets/{name}", 200).validate(json.loads(body))
    facts = json.loads(body)["latest"]["facts"]
    assert [step["name"] for step in facts["steps"]] == ["login", "refresh", "orders", "logout"]
    assert facts["steps"][0]["extracted"] == ["token", "user_id", "session"]
    assert facts["values"] == {"queue_depth": 17}
    request = json.loads(body)["request"]
    assert request["steps"][2]["url"].endswith("&t={{ token }}")


async def test_a_changed_flow_restarts_its_step_series_and_the_command_prints_every_step(
    api: Api, tmp_path: Path
) -> None:
    target, result = await probe(api, tmp_path)
    stats = ProbeStats(target)
    stats.record(result)
    text = render_text(build_report(target, None, result), NOW)
    steps_section = text.split("\nSteps\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[:2] for line in steps_section] == [
        ["PASS", "login"],
        ["PASS", "refresh"],
        ["PASS", "orders"],
        ["PASS", "logout"],
    ]
    assert "extracted token, user_id, session" in steps_section[0]
    assert f"GET http://127.0.0.1:{api.port}/users/42/orders?limit=5 · 200" in steps_section[2]
    renamed = flow_config(api.port).replace('"name": "orders"', '"name": "order-list"')
    changed, _ = await probe(api, tmp_path, text=renamed)
    stats.retarget(changed)
    assert stats.kept is None
    stats.record(result)
    reloaded, _ = await probe(api, tmp_path, text=renamed)  # the same config loaded again
    stats.retarget(reloaded)
    assert stats.kept is not None
    assert len(stats.kept.histograms) == 4
