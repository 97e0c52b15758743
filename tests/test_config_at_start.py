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
