"""The bad-config corpus: one file per mistake (``tests/testdata/invalid-*.yml``), each with the
exact problems it is reported with, tried through the loader, ``check-config`` and ``run``.

Each expected problem is written without the file's path (``:LINE: key.path: message``);
``{testdata}`` stands for the absolute path of ``tests/testdata``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from exporter import config
from exporter.config import ConfigError
from exporter.config_schema import schema_check
from exporter.config_yaml import read_yaml
from tests.processes import run

TESTDATA = Path(__file__).parent / "testdata"
ENVIRON = {"LOOKOUT_TEST_PASSWORD": "hunter 2"}

CORPUS: dict[str, list[str]] = {
    "invalid-canary-status.yml": [
        (
            ":8: connectivity.canaries[0].expect.status[0]: status range '599-500' ends "
            "below its start (write 500-599)"
        ),
    ],
    "invalid-maintenance-duration.yml": [
        (":5: maintenance[0].duration: duration '400d' is longer than the maximum of 365d"),
    ],
    "invalid-interval-when-failing.yml": [
        (
            ":5: targets[0].interval_when_failing: interval 0.001ms is shorter than the "
            "minimum of 10ms"
        ),
    ],
    "invalid-sla-ratio.yml": [
        (
            ":5: targets[0].sla.availability: 0.995 looks like a ratio, but objectives are "
            "percentages: write `99.5` for 99.5 %"
        ),
    ],
    "invalid-alias-bomb.yml": [
        (
            ":6: aliases stand for more than 141,148 values, over 10 times the 59 the file "
            "writes out: refusing to expand them"
        ),
    ],
    "invalid-alias-recursive.yml": [
        ":6: invalid YAML: alias *loop is inside its own anchor",
    ],
    "invalid-alias-too-deep.yml": [
        ":4: the config nests deeper than 32 levels",
    ],
    "invalid-alias-undefined.yml": [
        ":5: invalid YAML: found undefined alias 'team'",
    ],
    "invalid-binary-tag.yml": [
        (
            ":7: targets[0].http.body: unsupported YAML tag !!binary: a config holds only "
            "text, numbers, true/false, null, lists and mappings"
        ),
    ],
    "invalid-body-and-body-file.yml": [
        ":5: targets[0].http: keys 'body' and 'body_file' cannot be used together",
    ],
    "invalid-boolean-key.yml": [
        (
            ":6: targets[0].labels: key on is read as true or false; quote it ('on'): keys "
            "must be text"
        ),
    ],
    "invalid-control-character.yml": [
        ":5: invalid YAML: control characters are not allowed (character #x0007)",
    ],
    "invalid-cron.yml": [
        ":4: heartbeats[0].cron: invalid cron expression '61 * * * *': Bad minute",
    ],
    "invalid-deep-nesting.yml": [
        ":1: the config nests deeper than 32 levels",
    ],
    "invalid-dialog-regex.yml": [
        (
            ":8: targets[0].tcp.dialog[1].expect: invalid regular expression '+PONG': "
            "nothing to repeat at position 0"
        ),
    ],
    "invalid-directory.yml": [
        ": cannot read config: Is a directory",
    ],
    "invalid-duplicate-heartbeat-name.yml": [
        (":6: heartbeats[1].name: duplicate heartbeat name 'nightly' (first at heartbeats[0])"),
    ],
    "invalid-duplicate-key.yml": [
        ":5: targets[0]: duplicate key 'url'",
    ],
    "invalid-duplicate-name.yml": [
        ":3: targets[1].name: duplicate target name 'api' (first at targets[0])",
    ],
    "invalid-duplicate-top-level-key.yml": [
        ":5: (top level): duplicate key 'targets'",
    ],
    "invalid-duration-huge.yml": [
        (
            ":5: targets[0].interval: duration '99999999999999999999...' (401 characters) "
            "is longer than the maximum of 365d"
        ),
    ],
    "invalid-duration-too-long.yml": [
        ":5: targets[0].interval: duration '400d' is longer than the maximum of 365d",
    ],
    "invalid-duration-without-unit.yml": [
        ":5: targets[0].timeout: 5 is not of type 'string'",
    ],
    "invalid-duration.yml": [
        (":2: defaults.interval: '30 seconds' is not a duration such as 500ms, 30s, 5m or 1h30m"),
    ],
    "invalid-empty.yml": [
        (
            ": the config has no targets and no heartbeats, as an empty or cut-off file "
            "would; write `targets: []` to run without any"
        ),
    ],
    "invalid-every-stage-at-once.yml": [
        (
            ":8: targets[0].http.bearer_token: environment variable "
            "LOOKOUT_TEST_UNSET_TOKEN is not set"
        ),
        ":12: targets[1].intervall: unknown key, did you mean `interval`?",
        (
            ":17: targets[2].expect.status[0]: status range '299-200' ends below its start "
            "(write 200-299)"
        ),
        (
            ":18: targets[2].expect.body_matches[0]: invalid regular expression "
            "'(unclosed': missing ), unterminated subpattern at position 0"
        ),
        (
            ":22: targets[3].slo.availability: 0.999 looks like a ratio, but objectives are "
            "percentages: write `99.9` for 99.9 %"
        ),
        ":26: heartbeats[0].timezone: unknown time zone 'Europe/Atlantis'",
    ],
    "invalid-header-regex.yml": [
        (
            ":7: targets[0].expect.headers[0].matches: invalid regular expression '[z-a]': "
            "bad character range z-a at position 1"
        ),
    ],
    "invalid-heartbeat-period-huge.yml": [
        (
            ":4: heartbeats[0].period: duration '99999999999999999999...' (401 characters) "
            "is longer than the maximum of 365d"
        ),
    ],
    "invalid-host-regex.yml": [
        (
            ":4: host.network.devices.include: invalid regular expression '(eth': missing "
            "), unterminated subpattern at position 0"
        ),
    ],
    "invalid-huge-float.yml": [
        (
            ":6: targets[0].slo.availability: number 1.0e+400 is out of range (numbers must "
            "be finite)"
        ),
    ],
    "invalid-huge-instances.yml": [
        (
            ":6: heartbeats[0].instances: number 99999999999999999999 is too large (at most "
            "2^63 - 1)"
        ),
    ],
    "invalid-huge-integer.yml": [
        (":2: scheduler.max_in_flight: number 99999999999999999999... (400 digits) is too large"),
    ],
    "invalid-interval-too-short.yml": [
        ":5: targets[0].interval: interval 0.001ms is shorter than the minimum of 10ms",
    ],
    "invalid-json-schema-missing-file.yml": [
        (
            ":6: targets[0].expect.json_schema: cannot read file "
            "'{testdata}/schemas/nowhere.json': No such file or directory"
        ),
    ],
    "invalid-json-schema-nested-too-deep.yml": [
        (":2: targets[0]: internal error while reading this key (the log has its traceback)"),
    ],
    "invalid-json-schema-not-json.yml": [
        (
            ":6: targets[0].expect.json_schema: schemas/not-json.json: invalid JSON at line "
            "1: Expecting property name enclosed in double quotes"
        ),
    ],
    "invalid-json-schema.yml": [
        (
            ":6: targets[0].expect.json_schema: not a valid JSON Schema: 12 is not one of "
            "['array', 'boolean', 'integer', 'null', 'number', 'object', 'string']"
        ),
    ],
    "invalid-kind-missing.yml": [
        ":2: targets[0]: 'kind' is a required property",
    ],
    "invalid-kind.yml": [
        (
            ":2: targets[0].kind: 'gopher' is not one of ['http', 'tcp', 'tls', 'dns', 'smtp', "
            "'websocket', 'grpc', 'domain', 'icmp', 'flow']"
        ),
    ],
    "invalid-label-name.yml": [
        ":5: targets[0].labels: 'team-name' does not match ^[a-zA-Z_][a-zA-Z0-9_]*$",
    ],
    "invalid-label-value.yml": [
        ":6: targets[0].labels.team: 5 is not of type 'string'",
    ],
    "invalid-max-in-flight.yml": [
        ":2: scheduler.max_in_flight: 0 is less than the minimum of 1",
    ],
    "invalid-merge-not-a-mapping.yml": [
        ":5: invalid YAML: << merges only mappings",
    ],
    "invalid-missing-env-in-url.yml": [
        ":4: targets[0].url: environment variable LOOKOUT_TEST_UNSET_HOST is not set",
    ],
    "invalid-missing-env.yml": [
        (
            ":6: targets[0].http.bearer_token: environment variable "
            "LOOKOUT_TEST_UNSET_TOKEN is not set"
        ),
    ],
    "invalid-missing-file.yml": [
        (
            ":6: targets[0].http.bearer_token_file: cannot read file "
            "'/nonexistent/lookout/token': No such file or directory"
        ),
    ],
    "invalid-missing-password-file.yml": [
        (
            ":8: targets[0].http.basic_auth.password_file: cannot read file "
            "'/nonexistent/lookout/password': No such file or directory"
        ),
    ],
    "invalid-missing-token-file.yml": [
        (
            ":6: heartbeats[0].token_file: cannot read file '/nonexistent/lookout/token': "
            "No such file or directory"
        ),
    ],
    "invalid-missing-url.yml": [
        ":2: targets[0]: 'url' is a required property",
    ],
    "invalid-nan.yml": [
        (":6: targets[0].slo.availability: number .nan is out of range (numbers must be finite)"),
    ],
    "invalid-no-targets.yml": [
        (
            ": the config has no targets and no heartbeats, as an empty or cut-off file "
            "would; write `targets: []` to run without any"
        ),
    ],
    "invalid-not-utf8.yml": [
        ":2: config is not UTF-8 text: byte 0xe9 at column 14",
    ],
    "invalid-regex-repetition.yml": [
        (
            ":6: targets[0].expect.body_matches[0]: invalid regular expression "
            "'a{99999999999}': the repetition number is too large"
        ),
    ],
    "invalid-regex.yml": [
        (
            ":6: targets[0].expect.body_matches[1]: invalid regular expression '(unclosed': "
            "missing ), unterminated subpattern at position 0"
        ),
    ],
    "invalid-reserved-label.yml": [
        ":5: targets[0].labels.instance: label 'instance' is reserved",
    ],
    "invalid-secret-not-echoed.yml": [
        (
            ":4: targets[0].url: 'http://monitor:${LOOKOUT_TEST_PASSWORD}@127.0.0.1:8080/' "
            "is not an http:// or https:// URL"
        ),
    ],
    "invalid-size-too-large.yml": [
        (":6: targets[0].expect.max_size: size '9999999GiB' is larger than the maximum of 1TiB"),
    ],
    "invalid-size.yml": [
        (
            ":6: targets[0].expect.max_size: '10 kilobytes' is not a size such as 512KiB, "
            "1MiB or 1000"
        ),
    ],
    "invalid-slo-objective-ratio.yml": [
        (
            ":6: targets[0].slo.latency.objective: 0.99 looks like a ratio, but objectives "
            "are percentages: write `99` for 99 %"
        ),
    ],
    "invalid-slo-ratio.yml": [
        (
            ":6: targets[0].slo.availability: 0.999 looks like a ratio, but objectives are "
            "percentages: write `99.9` for 99.9 %"
        ),
    ],
    "invalid-slo.yml": [
        (":5: targets[0].slo.availability: 100 is greater than or equal to the maximum of 100"),
        ":5: targets[0].slo.latency: 'objective' is a required property",
    ],
    "invalid-status-not-a-list.yml": [
        ":6: targets[0].expect.status: 200 is not a list; write `[200]`",
    ],
    "invalid-status-range-reversed.yml": [
        (
            ":6: targets[0].expect.status[0]: status range '299-200' ends below its start "
            "(write 200-299)"
        ),
    ],
    "invalid-status.yml": [
        ":5: targets[0].expect.status[1]: 600 is greater than the maximum of 599",
    ],
    "invalid-targets-not-a-list.yml": [
        ":1: targets: expected a list, not a mapping of keys",
    ],
    "invalid-targets-without-value.yml": [
        ":1: targets: no value given; expected a list",
    ],
    "invalid-timeout-exceeds-interval.yml": [
        ":6: targets[0].timeout: timeout (15s) exceeds the interval",
    ],
    "invalid-timezone.yml": [
        ":5: heartbeats[0].timezone: unknown time zone 'Europe/Atlantis'",
    ],
    "invalid-top-level.yml": [
        ":1: the config must be a mapping of keys at the top level",
    ],
    "invalid-two-documents.yml": [
        ":5: invalid YAML: expected one document, found another",
    ],
    "invalid-unhashable-key.yml": [
        ":1: (top level): a key must be text, not a list",
    ],
    "invalid-unknown-defaults-key.yml": [
        ":2: defaults.intervall: unknown key, did you mean `interval`?",
    ],
    "invalid-unknown-heartbeat-key.yml": [
        ":4: heartbeats[0].perod: unknown key, did you mean `period`?",
    ],
    "invalid-unknown-host-key.yml": [
        ":3: host.enable: unknown key, did you mean `enabled`?",
    ],
    "invalid-unknown-http-key.yml": [
        ":6: targets[0].http.methd: unknown key, did you mean `method`?",
    ],
    "invalid-unknown-key.yml": [
        ":7: targets[0].expect.stauts: unknown key, did you mean `status`?",
    ],
    "invalid-unknown-kind-key.yml": [
        (
            ":5: targets[0].url: unknown key, expected one of address, confirm, interval, "
            "interval_when_failing, kind, labels, name, sla, slo, tcp, timeout"
        ),
    ],
    "invalid-unknown-slo-key.yml": [
        ":6: targets[0].slo.availabilty: unknown key, did you mean `availability`?",
    ],
    "invalid-unknown-target-key.yml": [
        ":5: targets[0].intervall: unknown key, did you mean `interval`?",
    ],
    "invalid-unknown-top-level-key.yml": [
        ":1: defualts: unknown key, did you mean `defaults`?",
    ],
    "invalid-versions.yml": [
        ":6: targets[0].versions.v1.kind: unknown key, expected one of confirm, expect, export, "
        "http, interval, interval_when_failing, labels, sla, slo, timeout, url",
        ":11: targets[1].versions.v2.interval: '1 fortnight' is not a duration such as 500ms, "
        "30s, 5m or 1h30m",
        ":17: targets[2].versions.v3.expect.json_schema: cannot read file "
        "'{testdata}/missing-v3.json': No such file or directory",
        ":20: targets[3].url: {{ version }} is only replaced in a target with `versions:`",
    ],
    "invalid-yaml.yml": [
        ":4: invalid YAML: did not find expected '-' indicator",
    ],
}


def expected(name: str) -> list[str]:
    path = TESTDATA / name
    return [f"{path}{line}".replace("{testdata}", str(TESTDATA)) for line in CORPUS[name]]


def test_every_corpus_file_has_its_expected_problems() -> None:
    assert sorted(CORPUS) == sorted(p.name for p in TESTDATA.glob("invalid-*.yml"))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_corpus_file_is_refused_with_exactly_its_problems(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(str(TESTDATA / name), environ=ENVIRON)
    assert [str(p) for p in caught.value.problems] == expected(name)


def schema_documents() -> dict[str, dict[str, Any]]:
    """The corpus files that get as far as the schema check, as read from YAML."""
    documents = {}
    for name in sorted(CORPUS):
        try:
            document, _ = read_yaml((TESTDATA / name).read_text("utf-8"), name)
        except (ConfigError, OSError, UnicodeDecodeError):
            continue
        if isinstance(document, dict):
            documents[name] = document
    return documents


SCHEMA_DOCUMENTS = schema_documents()


@pytest.mark.parametrize("name", sorted(SCHEMA_DOCUMENTS))
def test_the_fast_schema_check_words_a_corpus_file_as_jsonschema_does(name: str) -> None:
    check = schema_check()
    document = SCHEMA_DOCUMENTS[name]
    assert check.problems(document) == check.problems_fully(document)


def test_an_unexpected_error_in_a_builder_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "invalid-json-schema-nested-too-deep.yml"
    with caplog.at_level(logging.ERROR), pytest.raises(ConfigError):
        config.load(str(TESTDATA / name), environ={})
    (record,) = caplog.records
    assert record.getMessage() == "internal error while reading the config"
    assert vars(record)["key"] == "targets[0]"
    assert "RecursionError" in vars(record)["traceback"]


def corpus_environ() -> dict[str, str]:
    return {**os.environ, **ENVIRON}


def run_every_corpus_file(arguments: list[str]) -> dict[str, tuple[int, str]]:
    """Each corpus file through ``lookout-exporter ARGUMENTS FILE``: exit code and stderr."""

    def one(name: str) -> tuple[str, tuple[int, str]]:
        done = run(
            [sys.executable, "-m", "exporter", *arguments, str(TESTDATA / name)],
            env=corpus_environ(),
        )
        return name, (done.returncode, done.stderr)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, sorted(CORPUS)))


def test_check_config_refuses_every_corpus_file_with_its_problems_and_no_traceback() -> None:
    wrong = {}
    for name, (code, stderr) in run_every_corpus_file(["check-config"]).items():
        lines = [line for line in stderr.splitlines() if not line.startswith("ts=")]
        if code != 1 or lines != expected(name):
            wrong[name] = (code, stderr)
    assert wrong == {}


def test_run_refuses_to_start_with_any_corpus_file(tmp_path: Path) -> None:
    arguments = ["run", "--web.listen-address", "127.0.0.1:0", "--storage.path", str(tmp_path)]
    wrong = {}
    for name, (code, stderr) in run_every_corpus_file(
        [*arguments, "--log.format", "json", "--config"]
    ).items():
        records = [json.loads(line) for line in stderr.splitlines()]
        logged = [r["problem"] for r in records if r["msg"] == "invalid config"]
        if code != 1 or logged != expected(name):
            wrong[name] = (code, stderr)
    assert wrong == {}
