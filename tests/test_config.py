"""Config loading: the typed result of a valid file, secrets, YAML details, and the problem value.

The bad-config corpus (one file per mistake) is in ``test_config_corpus.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from exporter import config
from exporter.config import ConfigError, ConfigProblem
from exporter.config_schema import schema_check
from exporter.probes.http import HttpSpec
from tests.processes import run

TESTDATA = Path(__file__).parent / "testdata"


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
    assert [str(p) for p in caught.value.problems] == [problem]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "targets:\n  - {name: a, kind: http, url: 'http://['}\n",
            "inline.yml:2: targets[0].url: not a valid URL: Invalid IPv6 URL",
            id="http",
        ),
        pytest.param(
            "targets:\n  - {name: a, kind: websocket, url: 'ws://127.0.0.1:99999/'}\n",
            "inline.yml:2: targets[0].url: not a valid URL: Port out of range 0-65535",
            id="websocket-port",
        ),
        pytest.param(
            "targets: []\nconnectivity:\n  canaries:\n"
            "    - {name: edge, kind: http, url: 'http://['}\n",
            "inline.yml:4: connectivity.canaries[0].url: not a valid URL: Invalid IPv6 URL",
            id="canary",
        ),
    ],
)
def test_a_url_that_cannot_be_split_is_a_problem_at_its_key(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_text(text, config.Source("inline.yml", tmp_path), {})
    assert [str(p) for p in caught.value.problems] == [problem]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "location: eu-west-1\n"])
def test_a_config_without_targets_or_heartbeats_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_text(text, config.Source("inline.yml", tmp_path), {})
    assert [str(p) for p in caught.value.problems] == [
        "inline.yml: the config has no targets and no heartbeats, as an empty or cut-off file "
        "would; write `targets: []` to run without any"
    ]


@pytest.mark.parametrize("text", ["targets: []\n", "heartbeats: []\n", "host: {}\ntargets: []\n"])
def test_an_explicit_empty_list_allows_a_config_without_targets(tmp_path: Path, text: str) -> None:
    loaded = config.load_text(text, config.Source("inline.yml", tmp_path), {})
    assert (loaded.targets, loaded.heartbeats) == ((), ())


def test_a_problem_is_one_value_formatted_in_one_place() -> None:
    problem = ConfigProblem(("targets", 3, "expect", "status"), "200 is not a list")
    assert str(problem) == "targets[3].expect.status: 200 is not a list"
    located = problem.located("lookout.yml", 14)
    assert (located.file, located.line, located.at) == ("lookout.yml", 14, problem.at)
    assert str(located) == "lookout.yml:14: targets[3].expect.status: 200 is not a list"
    assert (
        str(ConfigProblem(None, "cannot read config", file="x.yml")) == "x.yml: cannot read config"
    )
    error = ConfigError([located])
    assert error.problems == (located,)
    assert str(error) == str(located)


def test_the_published_schema_in_docs_is_the_packaged_one() -> None:
    docs = Path(__file__).parent.parent / "docs" / "config.schema.json"
    assert json.loads(docs.read_text("utf-8")) == config.schema()


def test_a_url_with_a_separator_that_python_counts_as_space_is_refused_like_jsonschema_does(
    tmp_path: Path,
) -> None:
    """Rust's ``\\s`` leaves out U+001C..U+001F, Python's does not: the fast path uses Python's."""
    document = {"targets": [{"name": "a", "kind": "http", "url": "http://a\x1cb/"}]}
    check = schema_check()
    assert check.problems(document) == check.problems_fully(document) != []


def test_a_url_with_a_trailing_newline_is_accepted_like_jsonschema_does(tmp_path: Path) -> None:
    """Python's ``$`` matches before a final newline, Rust's does not: acceptance follows Python."""
    document = {"targets": [{"name": "a", "kind": "http", "url": "http://a/\n"}]}
    check = schema_check()
    assert check.problems(document) == check.problems_fully(document) == []


def test_the_whole_document_is_checked_fast_when_it_is_valid() -> None:
    """The example from the configuration reference passes both checks."""
    document = yaml.safe_load(EXAMPLE)
    check = schema_check()
    assert check.problems(document) == check.problems_fully(document) == []


def test_dates_stay_text_and_yaml_1_1_scalars_keep_their_types(tmp_path: Path) -> None:
    loaded = config.load_text(
        """
targets:
  - name: api
    kind: http
    url: http://127.0.0.1:8080/
    labels: {since: 2024-01-01, on_call: "yes"}
    http: {max_redirects: 0x0A, follow_redirects: yes}
""",
        config.Source("inline.yml", tmp_path),
        {},
    )
    (target,) = loaded.targets
    assert target.labels == (("on_call", "yes"), ("since", "2024-01-01"))
    assert isinstance(target.spec, HttpSpec)
    assert (target.spec.max_redirects, target.spec.follow_redirects) == (10, True)


def test_an_expanded_secret_never_appears_in_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load_text(
            "targets:\n  - {name: api, kind: http, url: 'http://u:${PASSWORD}@h/', interval: x}\n",
            config.Source("inline.yml", tmp_path),
            {"PASSWORD": "pass word"},
        )
    text = str(caught.value)
    assert "pass word" not in text
    assert "${PASSWORD}" in text


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


EXAMPLE = """
location: eu-west-1
defaults: {interval: 30s, timeout: 10s}
targets:
  - name: orders-api-v2
    kind: http
    url: https://api.example.com/v2/orders?limit=1
    interval: 15s
    labels: {service: orders, api_version: v2}
    http: {method: GET, headers: {Accept: application/json}, bearer_token_file: /run/secrets/t}
    expect: {status: [2xx], json_schema: schemas/orders.json, max_size: 256KiB}
    slo: {availability: 99.9, latency: {threshold: 300ms, objective: 99}}
  - {name: redis, kind: tcp, address: 10.0.0.5:6379}
  - {name: smtp-provider, kind: smtp, address: smtp.example.com:587}
  - {name: api-dns, kind: dns, query: api.example.com, record: A}
  - {name: api-cert, kind: tls, address: api.example.com:443}
heartbeats:
  - {name: nightly-billing, cron: "0 2 * * *", timezone: Europe/Berlin, grace: 30m, token: x}
  - {name: orders-consumer, period: 1m, grace: 2m, instances: 3}
host: {enabled: true}
"""
