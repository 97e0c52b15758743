"""The parts of flows on their own: config mistakes named with their key path, value
assertions and exports on a plain http target, and properties of templates and extraction."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from exporter import config
from exporter.config import ConfigError, Source
from exporter.probes.clients import SharedClients
from exporter.probes.http import HttpObservation
from exporter.probes.runner import run_probe
from exporter.probes.templating import SECRET, Value, parse, render_json
from exporter.probes.values import build_value_checks, check_values
from exporter.reasons import Reason
from exporter.results import ProbeResult, ProbeTrace
from tests.clock import FakeClock
from tests.conftest import config_from_text

NOW = 1_800_000_000.0
DOCS = (Path(__file__).resolve().parents[2] / "docs" / "probes.md").read_text(encoding="utf-8")


def _step(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "url": "http://127.0.0.1:1/x", **keys}


def _flow(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "flow", "flow": {"steps": list(steps)}}


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-variable": (
        _flow(_step("a", http={"headers": {"Authorization": "Bearer {{ token }}"}})),
        "targets[0].flow.steps[0].http.headers.Authorization: {{ token }}: no earlier step "
        "extracts 'token' (variables here: none)",
    ),
    "variable-from-a-later-step": (
        _flow(
            _step("a", url="http://127.0.0.1:1/{{ id }}"),
            _step("b", extract={"id": {"json": "$.id"}}),
        ),
        "targets[0].flow.steps[0].url: {{ id }}: no earlier step extracts 'id'",
    ),
    "stray-braces": (
        _flow(_step("a", extract={"id": {"json": "$.id"}}), _step("b", json={"q": "{{ id"})),
        "targets[0].flow.steps[1].json.q: '{{ id': '{{' and '}}' are only allowed around a "
        "variable name",
    ),
    "bad-json-path": (
        _flow(_step("a", extract={"id": {"json": "$.items[?"}})),
        "targets[0].flow.steps[0].extract.id.json: invalid JSONPath '$.items[?'",
    ),
    "path-without-dollar": (
        _flow(_step("a", extract={"id": {"json": "items"}})),
        "targets[0].flow.steps[0].extract.id.json: 'items' is not a JSONPath (RFC 9535) starting "
        "with $",
    ),
    "extraction-without-source": (
        _flow(_step("a", extract={"id": {"secret": True}})),
        "targets[0].flow.steps[0].extract.id: names no source (json, header or regex)",
    ),
    "json-with-header": (
        _flow(_step("a", extract={"id": {"json": "$.id", "header": "X-Id"}})),
        "targets[0].flow.steps[0].extract.id: json cannot be combined with header or regex",
    ),
    "duplicate-step": (
        _flow(_step("a"), _step("a")),
        "targets[0].flow.steps[1].name: step name 'a' is used twice",
    ),
    "duplicate-export": (
        _flow(
            _step("a", export={"depth": {"json": "$.a"}}),
            _step("b", export={"depth": {"json": "$.b"}}),
        ),
        "targets[0].flow.steps[1].export.depth: 'depth' is exported twice",
    ),
    "json-and-body": (
        _flow(_step("a", json={"a": 1}, http={"body": "x"})),
        "targets[0].flow.steps[0].json: json and http.body cannot be used together",
    ),
    "value-without-condition": (
        {"kind": "http", "url": "http://h/", "expect": {"values": [{"json": "$.a"}]}},
        "targets[0].expect.values[0]: {'json': '$.a'} does not have enough properties",
    ),
    "min-above-max": (
        {
            "kind": "http",
            "url": "http://h/",
            "expect": {"values": [{"json": "$.a", "min_items": 3, "max_items": 1}]},
        },
        "targets[0].expect.values[0].min_items: min_items is above max_items",
    ),
    "bad-freshness": (
        {
            "kind": "http",
            "url": "http://h/",
            "expect": {"values": [{"json": "$.a", "newer_than": "soon"}]},
        },
        "targets[0].expect.values[0].newer_than:",
    ),
    "no-steps": (_flow(), "targets[0].flow.steps: [] should be non-empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_flow_mistake_is_named_with_its_key_path(case: str, tmp_path: Path) -> None:
    target, expected = CASES[case]
    text = yaml.safe_dump({"targets": [{"name": "t", **target}]})
    with pytest.raises(ConfigError) as caught:
        config.load_text(text, Source("lookout.yml", tmp_path), {})
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith("lookout.yml:"), problems
    assert expected in problems[0]


async def queue(_request: web.Request) -> web.Response:
    return web.json_response(
        {
            "name": "orders",
            "state": "running",
            "consumers": 0,
            "messages_ready": 1250,
            "version": "3.13.7",
            "updated": int((NOW - 30) * 1000),  # epoch milliseconds
            "flags": [],
        }
    )


async def probe_http(port: int, expect: dict[str, Any], export: dict[str, Any]) -> ProbeResult:
    document = {
        "targets": [
            {
                "name": "orders-queue",
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/api/queues/orders",
                "expect": expect,
                "export": export,
            }
        ]
    }
    target = config_from_text(json.dumps(document), Path.cwd()).targets[0]
    clients = SharedClients()
    try:
        return await run_probe(target, clients, FakeClock(NOW))
    finally:
        await clients.close()


async def test_an_http_target_asserts_values_and_exports_numbers(
    aiohttp_server: AiohttpServer,
) -> None:
    app = web.Application()
    app.router.add_get("/api/queues/orders", queue)
    server = await aiohttp_server(app)
    assert server.port is not None
    export = {"ready": {"json": "$.messages_ready"}, "consumers": {"json": "$.consumers"}}
    passing = [
        {"json": "$.state", "equals": "running"},
        {"json": "$.messages_ready", "at_most": 5000, "at_least": 1},
        {"json": "$.version", "matches": "^3\\.13\\."},
        {"json": "$.updated", "newer_than": "1m"},
        {"json": "$.flags", "max_items": 0},
    ]
    result = await probe_http(server.port, {"values": passing}, export)
    assert result.success, result.message
    assert isinstance(result.observation, HttpObservation)
    assert result.observation.values == (("ready", 1250.0), ("consumers", 0.0))
    assert [c.name for c in result.checks if c.name.startswith("value")] == [
        "value $.state equals",
        "value $.messages_ready at_least",
        "value $.messages_ready at_most",
        "value $.version matches",
        "value $.updated newer_than",
        "value $.flags max_items",
    ]
    failing = [{"json": "$.consumers", "at_least": 1}, {"json": "$.updated", "newer_than": "10s"}]
    result = await probe_http(server.port, {"values": failing}, {})
    assert result.reason is Reason.VALUE
    assert result.message == "$.consumers: 0, expected at least 1"
    assert [c.detail for c in result.checks if not c.passed] == [
        "$.consumers: 0, expected at least 1",
        "$.updated: 1799999970000 is 30s old, expected newer than 10s",
    ]
    result = await probe_http(server.port, {}, {"missing": {"json": "$.nope"}})
    assert result.reason is Reason.EXTRACT
    assert result.message == "export missing: $.nope: no value in the body"


def _judge(rule: dict[str, Any], document: Any) -> tuple[bool, str]:
    trace = ProbeTrace(FakeClock(NOW))
    failures = check_values(build_value_checks([rule], ()), document, NOW, trace)
    return not failures, trace.checks[-1].detail


@pytest.mark.parametrize(
    ("rule", "document", "passed", "detail"),
    [
        pytest.param(
            {"json": "$.ok", "equals": True},
            {"ok": 1},
            False,
            "$.ok: 1, expected equals true",
            id="true-is-not-1",
        ),
        pytest.param(
            {"json": "$.n", "at_least": 2},
            {"n": "3"},
            True,
            '$.n: "3", expected at least 2',
            id="numeric-string",
        ),
        pytest.param(
            {"json": "$.n", "at_most": 2},
            {"n": "many"},
            False,
            '$.n: "many" is not a number, expected at most 2',
            id="not-a-number",
        ),
        pytest.param(
            {"json": "$.a[*]", "min_items": 2},
            {"a": [1, 2]},
            True,
            "$.a[*]: 2 items, expected min items 2",
            id="wildcard-count",
        ),
        pytest.param(
            {"json": "$.a", "min_items": 1},
            {},
            False,
            "$.a: 0 items, expected min items 1",
            id="missing-counts-zero",
        ),
        pytest.param(
            {"json": "$.a", "equals": 1},
            {},
            False,
            "$.a: no value, expected equals 1",
            id="missing-value",
        ),
        pytest.param(
            {"json": "$.t", "newer_than": "1h"},
            {"t": "2027-01-15T07:30:00"},
            True,
            '$.t: "2027-01-15T07:30:00" is 30m old, expected newer than 1h',
            id="naive-iso-is-utc",
        ),
        pytest.param(
            {"json": "$.t", "newer_than": "1h"},
            {"t": "yesterday"},
            False,
            '$.t: "yesterday" is not a timestamp, expected newer than 1h',
            id="not-a-timestamp",
        ),
        pytest.param(
            {"json": "$.t", "newer_than": "15m"},
            {"t": NOW - 900},
            True,
            "$.t: 1799999100.0 is 15m old, expected newer than 15m",
            id="epoch-seconds-at-the-limit",
        ),
    ],
)
def test_value_conditions(rule: dict[str, Any], document: Any, passed: bool, detail: str) -> None:
    assert _judge(rule, document) == (passed, detail)


NAMES = st.text(string.ascii_letters + "_", min_size=1, max_size=8)
TEXTS = st.text(st.characters(blacklist_characters="{}"), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(deadline=None, max_examples=50)  # timing is not the property
@given(st.lists(st.tuples(TEXTS, NAMES), max_size=4), TEXTS, st.data())
def test_a_template_renders_its_text_with_each_value_in_place(
    pieces: list[tuple[str, str]], tail: str, data: st.DataObject
) -> None:
    names = {name for _, name in pieces}
    values = {name: data.draw(st.text(max_size=12)) for name in names}
    text = "".join(f"{literal}{{{{ {name} }}}}" for literal, name in pieces) + tail
    template = parse(text, ("t",), names)
    variables = {name: Value(value) for name, value in values.items()}
    assert (
        template.render(variables)
        == "".join(literal + values[name] for literal, name in pieces) + tail
    )
    secret = {name: Value(value, secret=True) for name, value in values.items()}
    shown = template.render(secret, shown=True)
    assert shown == "".join(literal + SECRET for literal, _ in pieces) + tail


@settings(deadline=None, max_examples=50)  # timing is not the property
@given(JSON_VALUES)
def test_a_whole_reference_in_a_json_body_keeps_the_value_and_its_type(value: Any) -> None:
    body = {"a": "{{ v }}", "b": ["x{{ v }}"]}
    rendered = render_json(body, {"v": Value(value)})
    assert rendered["a"] == value
    assert rendered["b"] == ["x" + (value if isinstance(value, str) else json.dumps(value))]
    assert json.loads(json.dumps(rendered)) == rendered


@settings(deadline=None, max_examples=50)  # timing is not the property
@given(JSON_VALUES, st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=4), max_size=3))
def test_a_json_path_reads_back_the_value_put_at_it(value: Any, keys: list[str]) -> None:
    document: Any = value
    for key in reversed(keys):
        document = {key: document}
    path = "$" + "".join(f"['{key}']" for key in keys)
    rule = {"json": path, "equals": value}
    assert _judge(rule, document)[0]


def _keys(node: Any, prefix: str) -> list[str]:
    """Dotted key paths of a schema section, list items' keys under ``[]``."""
    if not isinstance(node, dict):
        return []
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append(f"{prefix}{name}")
        found += _keys(sub, f"{prefix}{name}.")
        found += _keys(sub.get("items", {}), f"{prefix}{name}[].")
    return found


def test_the_probe_docs_name_every_flow_key_condition_and_reason() -> None:
    defs = config.schema()["$defs"]
    keys = _keys(defs["flow_target"], "")
    keys += _keys(defs["flow_step"], "flow.steps[].")
    keys += [f"{name}:" for name in defs["value_check"]["properties"] if name != "json"]
    keys += [
        f"{name}:"
        for name in defs["flow_step"]["properties"]["extract"]["additionalProperties"]["properties"]
    ]
    assert [key for key in keys if f"`{key}" not in DOCS] == []
    assert "## `kind: flow`" in DOCS
    assert [r for r in ("value", "extract") if f"`{r}`" not in DOCS] == []
