"""A load pauses the cyclic garbage collector (``config.load_text``): it must be running again
afterwards, whatever the load's outcome, and stay off where the caller had turned it off."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import config
from exporter.config import ConfigError, Source


@pytest.fixture
def collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def _load(text: str) -> config.Config:
    return config.load_text(text, Source("test.yml", Path.cwd()), {})


def test_enabled_again_after_a_valid_load(collector: None) -> None:
    gc.enable()
    loaded = _load("targets:\n  - {name: a, kind: tcp, address: '127.0.0.1:1'}\n")
    assert [t.name for t in loaded.targets] == ["a"]
    assert gc.isenabled()


def test_enabled_again_after_a_failed_load(collector: None) -> None:
    gc.enable()
    with pytest.raises(ConfigError):
        _load("targets:\n  - {name: a, kind: tcp}\n")
    with pytest.raises(ConfigError):
        _load("targets: [\n")
    assert gc.isenabled()


def test_left_off_when_the_caller_turned_it_off(collector: None) -> None:
    gc.disable()
    _load("targets: []\n")
    assert not gc.isenabled()
