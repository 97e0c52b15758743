"""The ``host:`` config section: defaults, filters, and an exact error for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_text
from exporter.config_source import Source
from exporter.host.settings import (
    DEFAULT_DISK_DEVICES_EXCLUDE,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    HostSettings,
)


def load(text: str) -> HostSettings:
    text = text if "targets:" in text else text + "targets: []\n"
    return load_text(text, Source("lookout.yml", Path(".")), {}).host


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


def test_host_metrics_are_on_with_node_exporter_filters_when_the_section_is_absent() -> None:
    settings = load("targets: []\n")
    assert settings == HostSettings()
    assert settings.enabled
    assert settings.max_age == 1.0
    assert settings.refresh_timeout == 5.0
    assert settings.filesystem_timeout == 2.0
    assert settings.mount_points.exclude is not None
    assert settings.mount_points.exclude.pattern == DEFAULT_MOUNT_POINTS_EXCLUDE
    assert settings.fs_types.exclude is not None
    assert settings.fs_types.exclude.pattern == DEFAULT_FS_TYPES_EXCLUDE
    assert settings.disk_devices.exclude is not None
    assert settings.disk_devices.exclude.pattern == DEFAULT_DISK_DEVICES_EXCLUDE
    assert settings.network_devices.include is None
    assert settings.network_devices.exclude is None


def test_every_key_is_read() -> None:
    settings = load(
        """
host:
  enabled: false
  max_age: 0s
  refresh_timeout: 8s
  filesystem:
    timeout: 500ms
    mount_points: {include: "^/(data|srv)($|/)"}
    fs_types: {exclude: "^tmpfs$"}
  disk:
    devices: {include: "^nvme", exclude: "p[0-9]+$"}
  network:
    devices: {exclude: "^(lo|veth.*)$"}
"""
    )
    assert not settings.enabled
    assert settings.max_age == 0
    assert settings.refresh_timeout == 8
    assert settings.filesystem_timeout == 0.5
    assert settings.mount_points.allows("/data")
    assert settings.mount_points.allows("/srv/x")
    assert not settings.mount_points.allows("/")
    assert settings.fs_types.allows("overlay")
    assert not settings.fs_types.allows("tmpfs")
    assert settings.disk_devices.allows("nvme0n1")
    assert not settings.disk_devices.allows("nvme0n1p1")
    assert not settings.disk_devices.allows("sda")
    assert settings.network_devices.allows("eth0")
    assert not settings.network_devices.allows("veth3f")


def test_include_alone_drops_the_default_exclude() -> None:
    settings = load('host: {filesystem: {mount_points: {include: "^/dev/shm$"}}}\n')
    assert settings.mount_points.exclude is None
    assert settings.mount_points.allows("/dev/shm")
    assert settings.fs_types == HostSettings().fs_types


def test_filters_search_like_node_exporter_so_unanchored_patterns_match_inside() -> None:
    settings = load('host: {network: {devices: {exclude: "veth"}}}\n')
    assert not settings.network_devices.allows("cni-veth0")


def test_settings_compare_equal_across_loads_so_a_reload_sees_no_change() -> None:
    text = 'host: {max_age: 10s, disk: {devices: {include: "^sd"}}}\n'
    assert load(text) == load(text)
    assert load(text) != load('host: {max_age: 10s, disk: {devices: {include: "^vd"}}}\n')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "host:\n  refresh_timeout: 2s\n",
            "lookout.yml:2: host.refresh_timeout: 2s must be longer than host.filesystem.timeout "
            "(2s), so that a hung mount is reported within it",
            id="refresh-timeout-not-above-filesystem-timeout",
        ),
        pytest.param(
            "host:\n  filesystem:\n    timeout: 10s\n",
            "lookout.yml:1: host.refresh_timeout: 5s must be longer than host.filesystem.timeout "
            "(10s), so that a hung mount is reported within it",
            id="filesystem-timeout-above-default-refresh-timeout",
        ),
        pytest.param(
            "host:\n  filesystem:\n    timeout: 0s\n",
            "lookout.yml:3: host.filesystem.timeout: must be more than 0s",
            id="zero-timeout",
        ),
        pytest.param(
            'host:\n  filesystem:\n    fs_types:\n      include: "(ext4"\n',
            "lookout.yml:4: host.filesystem.fs_types.include: invalid regular expression "
            "'(ext4': missing ), unterminated subpattern at position 0",
            id="bad-regex",
        ),
        pytest.param(
            "host:\n  network:\n    interfaces: {include: eth}\n",
            "lookout.yml:3: host.network.interfaces: unknown key, expected one of devices",
            id="unknown-key",
        ),
        pytest.param(
            "host:\n  disk:\n    devices: {}\n",
            "lookout.yml:3: host.disk.devices: {} should be non-empty",
            id="empty-filter",
        ),
        pytest.param(
            "host:\n  max_age: 5\n",
            "lookout.yml:2: host.max_age: 5 is not of type 'string'",
            id="duration-without-unit",
        ),
        pytest.param(
            "host:\n  enabled: sometimes\n",
            "lookout.yml:2: host.enabled: 'sometimes' is not of type 'boolean'",
            id="enabled-not-boolean",
        ),
    ],
)
def test_a_mistake_is_reported_with_file_line_and_key_path(text: str, expected: str) -> None:
    assert problems(text) == [expected]
