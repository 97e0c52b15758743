"""The typed ``host:`` config section: what to report about the host and how long to wait for it.

The builder turns the schema-validated mapping into frozen dataclasses with compiled regexes,
so a reload can compare old and new settings with ``==`` and the collector never parses text.
The default filters are node_exporter's, so a deployment that replaces it reports the same
filesystems, disks and interfaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath, given
from exporter.units import format_duration, parse_duration

__all__ = [
    "DEFAULT_DISK_DEVICES_EXCLUDE",
    "DEFAULT_FS_TYPES_EXCLUDE",
    "DEFAULT_MOUNT_POINTS_EXCLUDE",
    "HostSettings",
    "NameFilter",
    "build_host",
]

# node_exporter 1.5's defaults for --collector.filesystem.mount-points-exclude,
# --collector.filesystem.fs-types-exclude and --collector.diskstats.device-exclude.
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs"
    r"|sysfs|tracefs)$"
)
DEFAULT_DISK_DEVICES_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


@dataclass(frozen=True, slots=True)
class NameFilter:
    """Keeps a name that ``include`` matches (when set) and ``exclude`` does not (when set).

    Both are searched anywhere in the name (``re.search``), as node_exporter does, so anchor
    them with ``^`` and ``$`` to match whole names.
    """

    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None

    def allows(self, name: str) -> bool:
        if self.include is not None and self.include.search(name) is None:
            return False
        return self.exclude is None or self.exclude.search(name) is None


@dataclass(frozen=True, slots=True)
class HostSettings:
    enabled: bool = True
    max_age: float = 1.0
    refresh_timeout: float = 5.0
    filesystem_timeout: float = 2.0
    mount_points: NameFilter = field(
        default_factory=lambda: NameFilter(exclude=re.compile(DEFAULT_MOUNT_POINTS_EXCLUDE))
    )
    fs_types: NameFilter = field(
        default_factory=lambda: NameFilter(exclude=re.compile(DEFAULT_FS_TYPES_EXCLUDE))
    )
    disk_devices: NameFilter = field(
        default_factory=lambda: NameFilter(exclude=re.compile(DEFAULT_DISK_DEVICES_EXCLUDE))
    )
    network_devices: NameFilter = field(default_factory=NameFilter)


def build_host(raw: Mapping[str, Any], at: KeyPath = ("host",)) -> HostSettings:
    """``HostSettings`` from the schema-validated ``host:`` mapping; raises ``ConfigProblem``."""
    defaults = HostSettings()
    filesystem = raw.get("filesystem", {})
    max_age = _duration(raw, "max_age", at, defaults.max_age)
    refresh_timeout = _duration(raw, "refresh_timeout", at, defaults.refresh_timeout)
    fs_at: KeyPath = (*at, "filesystem")
    fs_timeout = _duration(filesystem, "timeout", fs_at, defaults.filesystem_timeout)
    if fs_timeout <= 0:
        raise ConfigProblem((*fs_at, "timeout"), "must be more than 0s")
    if refresh_timeout <= fs_timeout:
        raise ConfigProblem(
            (*at, "refresh_timeout"),
            f"{format_duration(refresh_timeout)} must be longer than host.filesystem.timeout "
            f"({format_duration(fs_timeout)}), so that a hung mount is reported within it",
        )
    return HostSettings(
        max_age=max_age,
        refresh_timeout=refresh_timeout,
        filesystem_timeout=fs_timeout,
        mount_points=_filter(filesystem, "mount_points", fs_at, defaults.mount_points),
        fs_types=_filter(filesystem, "fs_types", fs_at, defaults.fs_types),
        disk_devices=_filter(raw.get("disk", {}), "devices", (*at, "disk"), defaults.disk_devices),
        network_devices=_filter(
            raw.get("network", {}), "devices", (*at, "network"), defaults.network_devices
        ),
        **given(raw, "enabled"),
    )


def _duration(raw: Mapping[str, Any], key: str, at: KeyPath, default: float) -> float:
    if key not in raw:
        return default
    try:
        return parse_duration(raw[key])
    except ValueError as exc:
        raise ConfigProblem((*at, key), str(exc)) from None


def _filter(raw: Mapping[str, Any], key: str, at: KeyPath, default: NameFilter) -> NameFilter:
    """The filter at ``raw[key]``; the default applies only when neither key is given there.

    Giving ``include`` alone drops the default ``exclude`` (node_exporter treats them as
    alternatives too); giving both applies both.
    """
    if key not in raw:
        return default
    spec = raw[key]
    return NameFilter(
        include=_regex(spec, "include", (*at, key)),
        exclude=_regex(spec, "exclude", (*at, key)),
    )


def _regex(raw: Mapping[str, Any], key: str, at: KeyPath) -> re.Pattern[str] | None:
    if key not in raw:
        return None
    try:
        return re.compile(raw[key])
    except re.error as exc:
        raise ConfigProblem((*at, key), f"invalid regular expression: {exc}") from None
