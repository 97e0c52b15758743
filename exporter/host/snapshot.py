"""What one read of the host found, as frozen values: the ``HostSnapshot``.

The reader (``host.reading``) fills it in a worker thread and the host collector renders it, so
the numbers and the text format meet only here. A section that could not be read is None and
its families are left out of that scrape; the other sections are still reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.host.mounts import FilesystemUsage
from exporter.host.procfs import FileHandles, PressureStalls

__all__ = ["Cpu", "Disk", "Filesystem", "HostSnapshot", "Interface", "Memory"]


@dataclass(frozen=True, slots=True)
class Cpu:
    # (mode, seconds summed over all CPUs), guest modes left out (see host.reading).
    mode_seconds: tuple[tuple[str, float], ...]
    count: int | None  # logical CPUs; None where the platform cannot tell
    load1: float
    load5: float
    load15: float
    context_switches: int


@dataclass(frozen=True, slots=True)
class Memory:
    total: int
    available: int
    used: int
    swap_total: int
    swap_free: int


@dataclass(frozen=True, slots=True)
class Filesystem:
    """One reported mount; ``usage`` is None where statvfs failed or missed its deadline."""

    device: str
    fstype: str
    mountpoint: str
    readonly: bool
    usage: FilesystemUsage | None


@dataclass(frozen=True, slots=True)
class Disk:
    device: str
    read_bytes: int
    written_bytes: int
    reads_completed: int
    writes_completed: int
    io_time_seconds: float


@dataclass(frozen=True, slots=True)
class Interface:
    device: str
    receive_bytes: int
    receive_packets: int
    receive_errs: int
    receive_drop: int
    transmit_bytes: int
    transmit_packets: int
    transmit_errs: int
    transmit_drop: int


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Every section of one read; filesystems sorted by mount point, devices by name."""

    cpu: Cpu | None
    memory: Memory | None
    pressure: PressureStalls | None
    filesystems: tuple[Filesystem, ...] | None
    disks: tuple[Disk, ...] | None
    interfaces: tuple[Interface, ...] | None
    boot_time: float | None
    file_handles: FileHandles | None  # also None where procfs has no sys/fs/file-nr
