"""The JSON API answers with what docs/openapi.yaml promises, for real probes of loopback servers,
and the views behind it compute the recent window, failures and certificate days exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from exporter import config
from exporter.app import create_app
from exporter.probes import http
from exporter.probes.http import HttpSpec
from exporter.reasons import Reason
from exporter.results import Certificate, ProbeResult, TlsSeen
from exporter.runtime import RUNTIME, Options
from exporter.stats import ProbeStats
from exporter.status import views
from exporter.targets import Target
from tests.clock import FakeClock
from tests.status_support import (
    HOSTILE,
    empty_config,
    service_app,
    wait_probed,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
OPENAPI: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text("utf-8"))
OPENAPI_URI = "urn:lookout:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    OPENAPI_URI, Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
)


def schema_validator(component: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"{OPENAPI_URI}#/components/schemas/{component}"}
    return jsonschema.Draft202012Validator(schema, registry=REGISTRY)


def documented(path: str, status: int) -> jsonschema.Draft202012Validator:
    """The validator docs/openapi.yaml gives for a GET of ``path`` answering ``status``."""
    response = OPENAPI["paths"][path]["get"]["responses"][str(status)]
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return schema_validator(ref.rsplit("/", 1)[1])


async def get_json(client: TestClient[Any, Any], url: str, status: int, path: str) -> Any:
    response = await client.get(url)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    documented(path, status).validate(body)
    return body


@pytest.fixture
async def probed(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> TestClient[Any, Any]:
    service = await aiohttp_server(service_app())
    path = write_config(tmp_path, str(service.make_url("")).rstrip("/"))
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await wait_probed(app, probes=2)
    return client


def test_every_openapi_schema_is_valid_json_schema() -> None:
    for name, schema in OPENAPI["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:  # pragma: no cover - the message names the schema
            pytest.fail(f"components.schemas.{name}: {exc.message}")


def test_every_v1_route_is_documented_and_every_documented_path_is_served() -> None:
    app = create_app(Options(), empty_config())
    served = {
        route.resource.canonical
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1/")
    }
    assert served == set(OPENAPI["paths"])


async def test_target_list_matches_the_schema_with_failing_targets_first(
    probed: TestClient[Any, Any],
) -> None:
    body = await get_json(probed, "/api/v1/targets", 200, "/api/v1/targets")
    targets = body["targets"]
    assert [t["name"] for t in targets] == ["m-hostile", "z-broken", "a-healthy"]
    healthy = targets[2]
    assert healthy["state"] == "up"
    assert healthy["labels"] == {"team": "web"}
    assert healthy["last_status_code"] == 200
    assert healthy["last_failure"] is None
    assert healthy["window"]["probes"] >= 2
    assert 0 < healthy["window"]["p50_seconds"] <= healthy["window"]["p95_seconds"]
    broken = targets[1]
    assert broken["state"] == "down"
    assert broken["last_failure"]["reason"] == "status"
    assert broken["last_failure"]["message"] == "status 500, expected 2xx"
    assert broken["last_failure"]["current"] is True
    assert broken["failures_total"]["status"] == broken["probes_total"]


async def test_state_filter_and_name_sort(probed: TestClient[Any, Any]) -> None:
    by_name = await get_json(probed, "/api/v1/targets?sort=name", 200, "/api/v1/targets")
    assert [t["name"] for t in by_name["targets"]] == ["a-healthy", "m-hostile", "z-broken"]
    up = await get_json(probed, "/api/v1/targets?state=up", 200, "/api/v1/targets")
    assert [t["name"] for t in up["targets"]] == ["a-healthy"]
    failing = await get_json(
        probed, "/api/v1/targets?state=failing&sort=name", 200, "/api/v1/targets"
    )
    assert [t["name"] for t in failing["targets"]] == ["m-hostile", "z-broken"]


async def test_an_invalid_filter_is_a_400_naming_the_parameter_and_its_values(
    probed: TestClient[Any, Any],
) -> None:
    body = await get_json(probed, "/api/v1/targets?state=sideways", 400, "/api/v1/targets")
    assert body["error"].startswith("invalid state='sideways': use one of all, failing, down")
    body = await get_json(probed, "/api/v1/targets?sort=age", 400, "/api/v1/targets")
    assert body["error"] == "invalid sort='age': use one of state, name"


async def test_target_detail_has_the_request_checks_and_history_newest_first(
    probed: TestClient[Any, Any],
) -> None:
    path = "/api/v1/targets/{name}"
    body = await get_json(probed, "/api/v1/targets/m-hostile", 200, path)
    assert body["request"]["method"] == "GET"
    assert body["endpoint"].endswith('/hostile?q="><script>window.pwned=3</script>')
    history = body["history"]
    assert len(history) >= 2
    finished = [r["finished_at"] for r in history]
    assert finished == sorted(finished, reverse=True)
    assert history[0]["reason"] == "header"
    assert [p["phase"] for p in history[0]["phases"]] == ["connect", "processing", "transfer"]
    latest = body["latest"]
    assert (latest["finished_at"], latest["reason"]) == (finished[0], "header")
    # The history keeps phases to the microsecond; the latest probe keeps them as measured.
    assert [p["phase"] for p in latest["phases"]] == [p["phase"] for p in history[0]["phases"]]
    assert [p["seconds"] for p in history[0]["phases"]] == pytest.approx(
        [p["seconds"] for p in latest["phases"]], abs=1e-6
    )
    checks = {c["name"]: c for c in latest["checks"]}
    assert checks["status"]["passed"] is True
    assert checks["header X-Evil"]["passed"] is False
    assert checks["body does not match '<script>.*?</script>'"]["detail"] == (
        "found '<script>window.pwned=1</script>'"
    )


async def test_an_unknown_target_is_a_404(probed: TestClient[Any, Any]) -> None:
    body = await get_json(probed, "/api/v1/targets/nope", 404, "/api/v1/targets/{name}")
    assert body == {"error": "no target named 'nope'"}


async def test_exporter_reports_version_uptime_and_a_failed_reload(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("location: lab\ntargets: []\n", encoding="utf-8")
    clock = FakeClock()
    app = create_app(Options(config_path=str(path)), config.load(str(path)), clock)
    client = await aiohttp_client(app)
    clock.advance(3725)
    body = await get_json(client, "/api/v1/exporter", 200, "/api/v1/exporter")
    assert body["uptime_seconds"] == 3725
    assert body["location"] == "lab"
    assert body["config"] == str(path)
    assert body["reload"] == {
        "successful": True,
        "last_success_at": clock.now - 3725,
        "last_error": "",
    }
    path.write_text("targets:\n  - {name: x, kind: carrier-pigeon}\n", encoding="utf-8")
    assert (await client.post("/-/reload")).status == 500
    body = await get_json(client, "/api/v1/exporter", 200, "/api/v1/exporter")
    assert body["reload"]["successful"] is False
    assert body["reload"]["last_error"].startswith(f"{path}:2: targets[0].kind: ")
    assert body["location"] == "lab"


def _target(name: str = "t", url: str = "https://127.0.0.1:1/", **spec: Any) -> Target[HttpSpec]:
    return Target(name, http.KIND, 30.0, 10.0, (), None, HttpSpec(url=url, **spec))


def _result(duration: float, at: float, reason: Reason | None = None) -> ProbeResult:
    return ProbeResult(
        "t", reason is None, duration, at, reason, "" if reason is None else f"{reason} broke"
    )


def test_window_quantiles_are_exact_not_bucket_bounds() -> None:
    stats = ProbeStats(_target())
    for i in range(1, 21):
        stats.record(_result(i / 1000, 1000.0 + i))
    window = views.target_summary(stats, 2000.0, None)["window"]
    # Durations 1..20 ms: exactly 10.5 and 19.05 ms; the histogram's bounds would say 10 and 25.
    assert window["p50_seconds"] == pytest.approx(0.0105)
    assert window["p95_seconds"] == pytest.approx(0.01905)


def test_the_window_covers_only_the_kept_history() -> None:
    stats = ProbeStats(_target())
    stats.record(_result(9.0, 1.0))
    for i in range(20):
        stats.record(_result(0.002, 2.0 + i))
    summary = views.target_summary(stats, 100.0, None)
    assert summary["window"] == {
        "probes": 20,
        "failures": 0,
        "p50_seconds": 0.002,
        "p95_seconds": 0.002,
    }
    assert summary["probes_total"] == 21


def test_quantile_of_one_value_and_of_none() -> None:
    assert views.quantile([0.3], 0.95) == 0.3
    assert views.quantile([], 0.5) is None


def test_last_failure_is_the_newest_failed_probe_even_after_recovery() -> None:
    stats = ProbeStats(_target())
    assert views.target_summary(stats, 0.0, None)["state"] == "pending"
    stats.record(_result(0.1, 10.0, Reason.TIMEOUT))
    stats.record(_result(0.1, 20.0, Reason.STATUS))
    stats.record(_result(0.1, 30.0))
    summary = views.target_summary(stats, 40.0, None)
    assert summary["state"] == "up"
    assert summary["last_failure"] == {
        "at": 20.0,
        "reason": "status",
        "message": "status broke",
        "current": False,
    }
    assert summary["failures_total"] == {"status": 1, "timeout": 1}
    assert summary["window"]["failures"] == 2


def test_cert_days_left_count_from_the_earliest_not_after_of_the_chain() -> None:
    now = 1_800_000_000.0
    leaf = Certificate("CN=leaf", "CN=ca", "1", "0" * 64, now - 86400, now + 10 * 86400)
    ca = Certificate("CN=ca", "CN=ca", "2", "1" * 64, now - 86400, now + 2.5 * 86400)
    stats = ProbeStats(_target())
    stats.record(ProbeResult("t", True, 0.1, now, tls=TlsSeen((leaf, ca), None)))
    summary = views.target_summary(stats, now, None)
    assert summary["cert_days_left"] == 2.5
    assert summary["cert_expiry_timestamp_seconds"] == now + 2.5 * 86400
    later = views.target_summary(stats, now + 3 * 86400, None)
    assert later["cert_days_left"] == -0.5


def test_passwords_in_urls_and_secret_headers_are_redacted() -> None:
    target = _target(
        url="https://user:hunter2@[::1]:8443/x?y=1",
        headers=(("Authorization", "Bearer abc"), ("X-Api-Key", "k"), ("Accept", "text/plain")),
    )
    request = views.request_json(target)
    assert request["endpoint"] == "https://user:<redacted>@[::1]:8443/x?y=1"
    assert request["headers"] == [
        {"name": "Authorization", "value": "<redacted>"},
        {"name": "X-Api-Key", "value": "<redacted>"},
        {"name": "Accept", "value": "text/plain"},
    ]
    schema_validator("Request").validate(request)


async def test_an_empty_config_lists_no_targets(aiohttp_client: Any) -> None:
    app: web.Application = create_app(Options(), empty_config())
    client = await aiohttp_client(app)
    body = await get_json(client, "/api/v1/targets", 200, "/api/v1/targets")
    assert body == {"targets": []}
    assert app[RUNTIME].scheduler.stats == {}


def test_every_kind_describes_its_endpoint_and_settings_without_secrets() -> None:
    text = """
targets:
  - {name: cache, kind: tcp, address: '[::1]:6379',
     tcp: {dialog: [{send: AUTH hunter2}, {expect: '^\\+OK'}]}}
  - {name: cert, kind: tls, address: 127.0.0.1:443, tls: {server_name: api.test},
     expect: {valid_for: 14d}}
  - {name: zone, kind: dns, query: api.example.test, record: AAAA,
     dns: {nameserver: '127.0.0.1:5353', transport: tcp}}
  - {name: mx, kind: smtp, address: 127.0.0.1:587,
     smtp: {ehlo_name: probe.test, auth: {username: ops, password: hunter2}}}
"""
    loaded = config.load_text(text, config.Source("test", ROOT), {})
    requests = {t.name: views.request_json(t) for t in loaded.targets}
    for request in requests.values():
        schema_validator("Request").validate(request)
    assert "hunter2" not in repr(requests)
    assert requests["cache"]["endpoint"] == "[::1]:6379"
    assert requests["cache"]["options"]["dialog"] == "send 14 bytes, expect '^\\\\+OK'"
    assert requests["cert"]["options"]["valid for at least"] == "14d"
    assert requests["cert"]["options"]["tls server name"] == "api.test"
    assert requests["zone"]["endpoint"] == "api.example.test AAAA @ 127.0.0.1:5353 (tcp)"
    assert requests["mx"]["options"]["auth user"] == "ops"
    assert requests["mx"]["options"]["ehlo name"] == "probe.test"


async def test_heartbeat_list_matches_the_schema_with_failing_heartbeats_first(
    beating: TestClient[Any, Any],
) -> None:
    body = await get_json(beating, "/api/v1/heartbeats", 200, "/api/v1/heartbeats")
    states = [(h["name"], h["status"]) for h in body["heartbeats"]]
    assert states == [
        ("c-broken", "failed"),
        ("e-down", "down"),
        ("g-secret", "failed"),
        ("d-late", "late"),
        ("b-new", "new"),
        ("a-fine", "up"),
        ("f-workers", "up"),
    ]
    by_name = {h["name"]: h for h in body["heartbeats"]}
    broken = by_name["c-broken"]
    assert broken["last_exit_code"] == 3
    assert broken["last_failure"]["exit_code"] == 3
    assert broken["last_failure"]["body"].endswith(f"{HOSTILE}\nboom")
    assert broken["pings"] == {"success": 1, "start": 0, "fail": 1}
    assert by_name["g-secret"]["last_failure"]["body"] is None
    workers = by_name["f-workers"]
    assert workers["instances"] == {"expected": 2, "alive": 1}
    assert workers["last_duration_seconds"] == 42
    assert workers["last_failure"] is None
    late = by_name["d-late"]
    assert (late["schedule"], late["grace_seconds"], late["age_seconds"]) == ("every 1m", 600, 222)
    assert late["deadline"] == late["last_success"] + 60 + 600
    # The list looks for failures of failed heartbeats only; the detail has the earlier one.
    assert by_name["a-fine"]["last_failure"] is None
    assert by_name["a-fine"]["pings"]["fail"] == 1
    detail = await get_json(beating, "/api/v1/heartbeats/a-fine", 200, "/api/v1/heartbeats/{name}")
    assert detail["last_failure"]["exit_code"] == 1
    assert detail["last_failure"]["body"] == "an old failure"
    # Never pinged: its first deadline is one period and grace after the store first saw it
    # declared, at the fixture clock's start.
    assert by_name["b-new"]["deadline"] == FakeClock().now + 3600 + 3600


async def test_heartbeat_filters_sorts_and_rejects_bad_values(
    beating: TestClient[Any, Any],
) -> None:
    path = "/api/v1/heartbeats"
    failing = await get_json(beating, f"{path}?state=failing&sort=name", 200, path)
    assert [h["name"] for h in failing["heartbeats"]] == [
        "c-broken",
        "d-late",
        "e-down",
        "g-secret",
    ]
    late = await get_json(beating, f"{path}?state=late", 200, path)
    assert [h["name"] for h in late["heartbeats"]] == ["d-late"]
    bad = await get_json(beating, f"{path}?state=pending&sort=size", 400, path)
    assert bad["error"] == "invalid sort='size': use one of state, name"


async def test_heartbeat_detail_lists_kept_pings_newest_first(
    beating: TestClient[Any, Any],
) -> None:
    path = "/api/v1/heartbeats/{name}"
    body = await get_json(beating, "/api/v1/heartbeats/c-broken", 200, path)
    assert [(p["seq"], p["signal"], p["exit_code"]) for p in body["recent"]] == [
        (2, "fail", 3),
        (1, "success", None),
    ]
    assert body["recent"][1]["body"] == "first run fine"
    assert body["last_failure"] == body["recent"][0]
    one = await get_json(beating, "/api/v1/heartbeats/c-broken?limit=1", 200, path)
    assert [p["seq"] for p in one["recent"]] == [2]
    assert one["last_failure"]["seq"] == 2
    missing = await get_json(beating, "/api/v1/heartbeats/nope", 404, path)
    assert missing["error"] == "no heartbeat named 'nope'"


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        pytest.param("0", "'0'", id="zero"),
        pytest.param("101", "'101'", id="above-the-kept-pings"),
        pytest.param("x", "'x'", id="not-a-number"),
        pytest.param("-1", "'-1'", id="negative"),
        pytest.param("%C2%B2", "'\u00b2'", id="unicode-digit"),
        pytest.param("", "''", id="empty"),
    ],
)
async def test_a_limit_that_is_not_a_number_from_1_to_100_is_a_400(
    beating: TestClient[Any, Any], query: str, shown: str
) -> None:
    url = f"/api/v1/heartbeats/c-broken?limit={query}"
    bad = await get_json(beating, url, 400, "/api/v1/heartbeats/{name}")
    assert bad["error"] == f"invalid limit={shown}: use a number from 1 to 100"


async def test_the_largest_limit_shows_every_kept_ping(beating: TestClient[Any, Any]) -> None:
    path = "/api/v1/heartbeats/{name}"
    body = await get_json(beating, "/api/v1/heartbeats/c-broken?limit=100", 200, path)
    assert [p["seq"] for p in body["recent"]] == [2, 1]


async def test_bodies_of_a_heartbeat_with_a_token_need_the_token(
    beating: TestClient[Any, Any],
) -> None:
    path = "/api/v1/heartbeats/{name}"
    anonymous = await get_json(beating, "/api/v1/heartbeats/g-secret", 200, path)
    assert anonymous["status"] == "failed"
    assert [p["body"] for p in anonymous["recent"]] == [None]
    wrong = await get_json(beating, "/api/v1/heartbeats/g-secret?token=guess", 200, path)
    assert wrong["last_failure"]["body"] is None
    by_query = await get_json(beating, "/api/v1/heartbeats/g-secret?token=s3cret", 200, path)
    assert by_query["last_failure"]["body"] == "password=hunter2"
    response = await beating.get(
        "/api/v1/heartbeats/g-secret", headers={"Authorization": "Bearer s3cret"}
    )
    assert (await response.json())["recent"][0]["body"] == "password=hunter2"


async def test_exporter_counts_declared_heartbeats(beating: TestClient[Any, Any]) -> None:
    body = await get_json(beating, "/api/v1/exporter", 200, "/api/v1/exporter")
    assert (body["targets"], body["heartbeats"]) == (0, 7)
