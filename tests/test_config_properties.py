"""Mutated valid configs: the loader either loads them or reports problems (none of them an
internal error), and the fast schema check reports exactly what jsonschema alone reports."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import config
from exporter.config import ConfigError
from exporter.config_schema import schema_check
from exporter.config_source import ConfigProblem, format_path

VALID: dict[str, Any] = yaml.safe_load(
    """
location: eu-west-1
defaults: {interval: 30s, timeout: 10s}
scheduler: {max_in_flight: 64}
targets:
  - name: orders
    kind: http
    url: http://127.0.0.1:8080/orders
    interval: 15s
    interval_when_failing: 5s
    confirm: {failures: 3, successes: 2}
    sla: {availability: 99.5}
    labels: {service: orders}
    http:
      method: POST
      headers: {Accept: application/json}
      body: "{}"
      tls: {insecure_skip_verify: true, min_version: TLS1.2}
    expect:
      status: [2xx, 304, 400-404]
      headers: [{name: Content-Type, matches: json}]
      body_matches: [ok]
      max_size: 256KiB
      max_duration: 2s
    slo: {availability: 99.9, latency: {threshold: 300ms, objective: 99}}
  - name: redis
    kind: tcp
    address: 127.0.0.1:6379
    tcp: {dialog: [{send: PING}, {expect: "^\\\\+PONG"}]}
  - {name: cert, kind: tls, address: 127.0.0.1:443, tls: {starttls: smtp}, expect: {valid_for: 14d}}
  - name: dns
    kind: dns
    query: example.com
    record: MX
    dns: {nameserver: "127.0.0.1:53", transport: tcp}
    expect: {rcode: [NOERROR], min_answers: 1, any_answer_matches: [mail]}
  - {name: mail, kind: smtp, address: 127.0.0.1:25, smtp: {starttls: required, ehlo_name: probe}}
heartbeats:
  - {name: nightly, cron: "0 2 * * *", timezone: Europe/Berlin, grace: 30m, token: t0k3n}
  - {name: consumer, period: 1m, grace: 2m, instances: 3, labels: {team: orders}}
connectivity:
  interval: 1m
  canaries: [{name: edge, kind: http, url: "http://127.0.0.1:8081/", expect: {status: [200]}}]
maintenance:
  - {name: patching, cron: "0 3 * * 0", timezone: Europe/Berlin, duration: 2h, targets: [redis]}
  - {name: move, start: "2026-12-05T22:00:00Z", end: "2026-12-06T02:00:00Z"}
host:
  max_age: 2s
  filesystem: {timeout: 1s, mount_points: {exclude: "^/boot"}}
  network: {devices: {include: "^eth"}}
"""
)

# Values that are wrong in interesting ways somewhere: bad units, bounds, regexes, types.
TRICKY: st.SearchStrategy[object] = st.sampled_from(
    [
        "15s", "0.001ms", "400d", "9" * 400 + "s", "2xx", "299-200", "600", "512KiB", "9999999GiB",
        "(", "a{99999999999}", "[z-a]", "${UNSET}", "$$", "", " ", "http://a\x1cb/", "http://a/\n",
        "Europe/Atlantis", "61 * * * *", "h:70000", "0 2 * * *", "udp", "A", "GET", "TLS1.2",
        0, 1, -1, 0.999, 99.9, 100, 2**63, True, False, None, [], {},
    ]
)  # fmt: skip
KEYS = st.sampled_from(
    ["name", "kind", "url", "interval", "timeout", "labels", "expect", "status", "http", "slo",
     "period", "perod", "grace", "cron", "timezone", "address", "tls", "query", "record",
     "intervall", "on", "__x"]
)  # fmt: skip
VALUES = st.recursive(
    TRICKY
    | st.text(max_size=12)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside ``value``, ``()`` included."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths(item, (*at, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(paths(item, (*at, index)))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.sampled_from(paths(document)))
        parent: Any = document
        for part in at[:-1]:
            parent = parent[part]
        operation = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
        if not at or operation == "add":
            target = parent[at[-1]] if at else document
            if isinstance(target, dict):
                target[draw(KEYS)] = draw(VALUES)
            elif isinstance(target, list):
                target.append(draw(VALUES))
        elif operation == "replace":
            parent[at[-1]] = draw(VALUES)
        elif operation == "delete":
            del parent[at[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(at[-1])
    return document


def ordered(problems: list[ConfigProblem]) -> list[tuple[str, str]]:
    return sorted((format_path(p.at or ()), p.message) for p in problems)


def internal_errors(text: str) -> list[str]:
    """The internal errors among the problems of loading ``text`` (none if it loads)."""
    try:
        config.load_text(text, config.Source("mutated.yml", Path(__file__).parent), {})
    except ConfigError as exc:
        if not exc.problems:
            return ["a ConfigError without problems"]
        return [str(p) for p in exc.problems if "internal error" in p.message]
    return []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_a_mutated_config_is_loaded_or_refused_with_problems(document: dict[str, Any]) -> None:
    assert internal_errors(yaml.safe_dump(document, allow_unicode=True)) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_the_fast_schema_check_reports_what_jsonschema_reports(document: dict[str, Any]) -> None:
    check = schema_check()
    assert ordered(check.problems(document)) == ordered(check.problems_fully(document))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_cut_or_garbled_file_is_loaded_or_refused_with_problems(data: st.DataObject) -> None:
    text = yaml.safe_dump(VALID)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    insert = data.draw(st.sampled_from(["", ":", "- ", "&a ", "*a", "{", "[", "\t", "'", "\n  "]))
    end = cut + data.draw(st.integers(min_value=0, max_value=40))
    assert internal_errors(text[:cut] + insert + text[cut:end]) == []
