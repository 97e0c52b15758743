"""Start-up's config load in a worker process: the same config as a load in this process, the
same problems, and a load here when no worker can be started."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from exporter import config_process
from exporter.config import ConfigError, load
from exporter.config_process import load_at_start

TEXT = """\
defaults: {interval: 30s, timeout: 5s}
targets:
  - {name: api, kind: http, url: 'http://127.0.0.1:1/health', labels: {team: a}}
  - {name: db, kind: tcp, address: '127.0.0.1:2'}
  - {name: ns, kind: dns, query: example.test, record: A}
"""


def test_a_config_loaded_in_the_worker_equals_one_loaded_here(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(TEXT)
    here = load(str(path), {})
    there = load_at_start(str(path), {})
    assert there == here
    assert [t.kind for t in there.targets] == [t.kind for t in here.targets]


def test_the_workers_problems_are_raised_here(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(TEXT.replace("interval: 30s", "interval: soon"))
    with pytest.raises(ConfigError) as here:
        load(str(path), {})
    with pytest.raises(ConfigError) as there:
        load_at_start(str(path), {})
    assert [str(p) for p in there.value.problems] == [str(p) for p in here.value.problems]


def test_without_a_worker_the_config_is_loaded_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoProcesses(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise PermissionError("no /dev/shm")

    monkeypatch.setattr(config_process, "ProcessPoolExecutor", NoProcesses)
    path = tmp_path / "lookout.yml"
    path.write_text(TEXT)
    assert load_at_start(str(path), {}) == load(str(path), {})
    assert "cannot start the config loader process" in caplog.text


SCHEMAS = """\
targets:
  - name: orders
    kind: http
    url: 'http://127.0.0.1:1/orders'
    expect:
      json_schema: {type: object, properties: {items: {$ref: item.json}}, required: [items]}
      error_format: problem+json
  - name: feed
    kind: websocket
    url: 'ws://127.0.0.1:1/feed'
    expect: {reply_json_schema: {type: object, required: [ok]}}
"""


def test_targets_with_json_schemas_come_from_the_worker_with_working_validators(
    tmp_path: Path,
) -> None:
    (tmp_path / "item.json").write_text('{"type": "array", "items": {"type": "integer"}}')
    path = tmp_path / "lookout.yml"
    path.write_text(SCHEMAS)
    orders, feed = load_at_start(str(path), {}).targets
    validator = orders.spec.expect.json_validator
    assert validator is not None
    assert [e.message for e in validator.iter_errors({"items": [1, 2]})] == []
    assert [e.message for e in validator.iter_errors({"items": ["x"]})] == [
        "'x' is not of type 'integer'"
    ]
    error_format = orders.spec.expect.error_format
    assert error_format is not None
    assert list(error_format.validator.iter_errors({"status": "bad"}))
    assert feed.spec.expect.reply_json_schema.check('{"ok": 1}') == (True, "satisfies the schema")
    assert feed.spec.expect.reply_json_schema.check("{}")[0] is False
