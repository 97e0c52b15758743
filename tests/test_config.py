"""Config loading: the typed result of a valid file, secrets, and one file per mistake with its
exact error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from exporter import config
from exporter.config import ConfigError
from exporter.probes.http import HttpSpec
from tests.processes import run

TESTDATA = Path(__file__).parent / "testdata"

INVALID = {
    "invalid-body-and-body-file.yml": [
        "5: targets[0].http: keys 'body' and 'body_file' cannot be used together"
    ],
    "invalid-duplicate-key.yml": ["5: targets[0]: duplicate key 'url'"],
    "invalid-duplicate-name.yml": [
        "3: targets[1].name: duplicate target name 'api' (first at targets[0])"
    ],
    "invalid-duration.yml": [
        "2: defaults.interval: '30 seconds' is not a duration such as 500ms, 30s, 5m or 1h30m"
    ],
    "invalid-json-schema.yml": [
        "6: targets[0].expect.json_schema: not a valid JSON Schema: 12 is not one of "
        "['array', 'boolean', 'integer', 'null', 'number', 'object', 'string']"
    ],
    "invalid-kind.yml": [
        "2: targets[0].kind: 'gopher' is not one of ['http', 'tcp', 'tls', 'dns', 'smtp']"
    ],
    "invalid-missing-env.yml": [
        "6: targets[0].http.bearer_token: environment variable LOOKOUT_TEST_UNSET_TOKEN is not set"
    ],
    "invalid-missing-file.yml": [
        "6: targets[0].http.bearer_token_file: cannot read file '/nonexistent/lookout/token': "
        "No such file or directory"
    ],
    "invalid-missing-url.yml": ["2: targets[0]: 'url' is a required property"],
    "invalid-regex.yml": [
        "6: targets[0].expect.body_matches[1]: invalid regular expression '(unclosed': "
        "missing ), unterminated subpattern at position 0"
    ],
    "invalid-reserved-label.yml": ["5: targets[0].labels.instance: label 'instance' is reserved"],
    "invalid-slo.yml": [
        "5: targets[0].slo.availability: 100 is greater than or equal to the maximum of 100",
        "5: targets[0].slo.latency: 'objective' is a required property",
    ],
    "invalid-status.yml": [
        "5: targets[0].expect.status[1]: 600 is greater than the maximum of 599"
    ],
    "invalid-timeout-exceeds-interval.yml": [
        "6: targets[0].timeout: timeout (15s) exceeds the interval"
    ],
    "invalid-top-level.yml": ["1: the config must be a mapping of keys at the top level"],
    "invalid-unknown-key.yml": [
        "5: targets[0].expect: unknown key: Additional properties are not allowed "
        "('stauts' was unexpected)"
    ],
    "invalid-yaml.yml": ["4: invalid YAML: did not find expected '-' indicator"],
}


def test_every_invalid_file_has_an_expected_error() -> None:
    assert sorted(INVALID) == sorted(p.name for p in TESTDATA.glob("invalid-*.yml"))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_config_names_file_line_and_key(name: str) -> None:
    path = TESTDATA / name
    with pytest.raises(ConfigError) as caught:
        config.load(str(path), environ={})
    assert caught.value.problems == [f"{path}:{line}" for line in INVALID[name]]


def test_a_full_config_becomes_typed_targets(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "orders.json").write_text(json.dumps({"type": "object"}))
    (tmp_path / "api-key").write_text("k3y\n")
    (tmp_path / "config.yml").write_text(
        """
location: eu-west-1
defaults: {interval: 1m, timeout: 5s}
scheduler: {max_in_flight: 64}
targets:
  - name: orders-api-v2
    kind: http
    url: https://127.0.0.1:8443/v2/orders?limit=1
    interval: 15s
    labels: {service: orders, api_version: v2}
    http:
      method: GET
      headers: {Accept: application/json}
      header_files: {X-Api-Key: api-key}
    expect: {status: [2xx, 304], json_schema: schemas/orders.json, max_size: 256KiB}
    slo: {availability: 99.9, latency: {threshold: 300ms, objective: 99}}
  - {name: plain, kind: http, url: "http://127.0.0.1:8080/"}
"""
    )
    loaded = config.load(str(tmp_path / "config.yml"), environ={})
    assert loaded.location == "eu-west-1"
    assert loaded.max_in_flight == 64
    first, second = loaded.targets
    assert (first.interval, first.timeout) == (15, 5)
    assert (second.interval, second.timeout) == (60, 5)
    assert first.labels == (("api_version", "v2"), ("service", "orders"))
    assert first.slo is not None
    assert (first.slo.availability, first.slo.latency_objective) == (0.999, 0.99)
    assert first.slo.latency_threshold == 0.3
    spec = first.spec
    assert isinstance(spec, HttpSpec)
    assert dict(spec.headers) == {"Accept": "application/json", "X-Api-Key": "k3y"}
    assert [p.text for p in spec.expect.status] == ["2xx", "304"]
    assert spec.expect.max_size == 256 * 1024
    assert spec.expect.json_schema == {"type": "object"}


def test_environment_variables_expand_and_double_dollar_escapes(tmp_path: Path) -> None:
    loaded = config.load_text(
        """
targets:
  - name: api
    kind: http
    url: "http://${HOST}:8080/"
    http: {headers: {X-Price: "$$5", X-Token: "${TOKEN}"}}
""",
        config.Source("inline.yml", tmp_path),
        {"HOST": "127.0.0.1", "TOKEN": "t0k"},
    )
    spec = loaded.targets[0].spec
    assert spec.url == "http://127.0.0.1:8080/"
    assert dict(spec.headers) == {"X-Price": "$5", "X-Token": "t0k"}


def test_secrets_do_not_appear_in_a_targets_repr(tmp_path: Path) -> None:
    loaded = config.load_text(
        "targets: [{name: a, kind: http, url: 'http://127.0.0.1/', http: {bearer_token: hush}}]",
        config.Source("inline.yml", tmp_path),
        {},
    )
    assert "hush" not in repr(loaded.targets[0])


def test_anchors_aliases_and_merge_keys_work_across_targets(tmp_path: Path) -> None:
    loaded = config.load_text(
        """
targets:
  - &base
    name: first
    kind: http
    url: http://127.0.0.1:8080/a
    labels: &team {team: payments}
    expect: {status: [200]}
  - <<: *base
    name: second
    url: http://127.0.0.1:8080/b
  - {name: third, kind: http, url: "http://127.0.0.1:8080/c", labels: *team}
<<: {location: merged, targets: []}
""",
        config.Source("inline.yml", tmp_path),
        {},
    )
    assert loaded.location == "merged"
    assert [(t.name, t.spec.url, t.labels) for t in loaded.targets] == [
        ("first", "http://127.0.0.1:8080/a", (("team", "payments"),)),
        ("second", "http://127.0.0.1:8080/b", (("team", "payments"),)),
        ("third", "http://127.0.0.1:8080/c", (("team", "payments"),)),
    ]
    assert [p.text for p in loaded.targets[1].spec.expect.status] == ["200"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "targets: []\n---\ntargets: []\n",
            "inline.yml:2: invalid YAML: expected one document, found another",
            id="two-documents",
        ),
        pytest.param(
            "location: a\ntargets: []\nlocation: b\n",
            "inline.yml:3: (top level): duplicate key 'location'",
            id="duplicate-top-level-key",
        ),
        pytest.param(
            "targets:\n"
            + "".join(
                f"  - {{name: t{i}, kind: http, url: 'http://127.0.0.1/'}}\n" for i in range(5)
            )
            + "  - {name: t5, kind: http, url: 'http://127.0.0.1/', url: 'http://127.0.0.1/'}\n",
            "inline.yml:7: targets[5]: duplicate key 'url'",
            id="duplicate-key-in-a-later-target",
        ),
        pytest.param(
            "targets:\n"
            + "".join(
                f"  - {{name: t{i}, kind: http, url: 'http://127.0.0.1/'}}\n" for i in range(5)
            )
            + "  - {name: t5, kind: http, url: 'http://127.0.0.1/', interval: soon}\n",
            "inline.yml:7: targets[5].interval: 'soon' is not a duration such as 500ms, 30s, 5m "
            "or 1h30m",
            id="schema-error-in-a-later-target",
        ),
        pytest.param(
            "targets: []\n<<: [{location: x}, 5]\n",
            "inline.yml:2: invalid YAML: << merges only mappings",
            id="merge-of-a-number",
        ),
        pytest.param(
            "targets:\n  - {name: a, kind: http, url: *nowhere}\n",
            "inline.yml:2: invalid YAML: found undefined alias 'nowhere'",
            id="undefined-alias",
        ),
    ],
)
def test_yaml_mistakes_name_their_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_text(text, config.Source("inline.yml", tmp_path), {})
    assert caught.value.problems == [problem]


def test_an_empty_file_is_a_config_without_targets(tmp_path: Path) -> None:
    assert config.load_text("", config.Source("inline.yml", tmp_path), {}).targets == ()


def test_the_embedded_default_config_is_valid() -> None:
    loaded = config.load(None, environ={"LOOKOUT_SELF_ADDRESS": "127.0.0.1:9471"})
    assert [t.name for t in loaded.targets] == ["lookout-self"]
    assert loaded.targets[0].spec.url == "http://127.0.0.1:9471/-/healthy"


@pytest.mark.parametrize(
    ("file", "code", "stream", "text"),
    [
        pytest.param("invalid-duration.yml", 1, "stderr", "is not a duration", id="invalid"),
        pytest.param("valid-minimal.yml", 0, "stdout", "valid, 1 targets", id="valid"),
    ],
)
def test_check_config_exits_0_or_1(file: str, code: int, stream: str, text: str) -> None:
    done = run([sys.executable, "-m", "exporter", "check-config", str(TESTDATA / file)])
    assert done.returncode == code
    assert text in getattr(done, stream)
