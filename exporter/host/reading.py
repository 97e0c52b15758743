"""Reads the host's CPU, memory, pressure, filesystems, disks and network into a ``HostSnapshot``.

The reads are system calls, and ``statvfs`` on a hung network mount can block for minutes, so
``HostReader.read`` blocks and runs in the refresher's worker thread, never on the event loop.
``psutil``, ``procfs`` (for ``pressure/*`` and ``sys/fs/file-nr``) and ``statvfs`` are the seams
to the host; tests pass fakes with known numbers.

A section that fails (a file psutil cannot read, say) is None in the snapshot and logged once,
until it works again; the other sections are still read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import psutil as system_psutil

from exporter.host.mounts import FilesystemStats, StatVFS
from exporter.host.procfs import read_file_handles, read_pressure
from exporter.host.settings import HostSettings
from exporter.host.snapshot import Cpu, Disk, Filesystem, HostSnapshot, Interface, Memory

__all__ = ["HostReader", "Psutil"]

log = logging.getLogger(__name__)

# Linux counts guest time inside user and nice already; exporting it as modes would make the
# sum over modes exceed the CPU time (node_exporter moves it to node_cpu_guest_seconds_total).
GUEST_MODES = frozenset({"guest", "guest_nice"})

T = TypeVar("T")


class _CpuTimes(Protocol):
    def _asdict(self) -> dict[str, Any]: ...


class _CpuStats(Protocol):
    @property
    def ctx_switches(self) -> int: ...


class _VirtualMemory(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def available(self) -> int: ...
    @property
    def used(self) -> int: ...


class _Swap(Protocol):
    @property
    def total(self) -> int: ...
    @property
    def free(self) -> int: ...


class _Partition(Protocol):
    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...
    @property
    def opts(self) -> str: ...


class _DiskIO(Protocol):
    @property
    def read_bytes(self) -> int: ...
    @property
    def write_bytes(self) -> int: ...
    @property
    def read_count(self) -> int: ...
    @property
    def write_count(self) -> int: ...
    @property
    def busy_time(self) -> int: ...


class _NetIO(Protocol):
    @property
    def bytes_recv(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def packets_recv(self) -> int: ...
    @property
    def packets_sent(self) -> int: ...
    @property
    def errin(self) -> int: ...
    @property
    def errout(self) -> int: ...
    @property
    def dropin(self) -> int: ...
    @property
    def dropout(self) -> int: ...


class Psutil(Protocol):
    """The part of the psutil module the reader calls; the psutil module itself fits."""

    def cpu_times(self, percpu: Literal[False] = False) -> _CpuTimes: ...
    def cpu_count(self, logical: bool = True) -> int | None: ...
    def cpu_stats(self) -> _CpuStats: ...
    def getloadavg(self) -> tuple[float, float, float]: ...
    def virtual_memory(self) -> _VirtualMemory: ...
    def swap_memory(self) -> _Swap: ...
    def disk_partitions(self, all: bool = False) -> Sequence[_Partition]: ...
    def disk_io_counters(
        self, perdisk: Literal[True], nowrap: bool = True
    ) -> Mapping[str, _DiskIO]: ...
    def net_io_counters(
        self, pernic: Literal[True], nowrap: bool = True
    ) -> Mapping[str, _NetIO]: ...
    def boot_time(self) -> float: ...


class HostReader:
    """Reads the host through its seams; one read at a time (the refresher's worker thread)."""

    def __init__(
        self,
        psutil: Psutil = system_psutil,
        procfs: Path = Path("/proc"),
        statvfs: StatVFS = os.statvfs,
    ) -> None:
        self._psutil = psutil
        self._procfs = procfs
        self._filesystem_stats = FilesystemStats(statvfs)
        self._errors: dict[str, str] = {}

    def read(self, settings: HostSettings) -> HostSnapshot:
        """Every section of the host that ``settings`` asks for; blocks, so run it in a thread."""
        procfs = self._procfs
        return HostSnapshot(
            cpu=self._section("cpu", self._cpu),
            memory=self._section("memory", self._memory),
            pressure=self._section("pressure", lambda: read_pressure(procfs)),
            filesystems=self._section("filesystem", lambda: self._filesystems(settings)),
            disks=self._section("disk", lambda: self._disks(settings)),
            interfaces=self._section("network", lambda: self._interfaces(settings)),
            boot_time=self._section("boot time", self._psutil.boot_time),
            file_handles=self._section("file handles", lambda: read_file_handles(procfs)),
        )

    def _section(self, section: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None when it fails: logged once per distinct error, until it works."""
        try:
            value = read()
        except Exception as exc:  # one unreadable part must not hide the others
            message = f"{type(exc).__name__}: {exc}"
            if self._errors.get(section) != message:
                log.warning("cannot read host %s metrics: %s", section, message)
            self._errors[section] = message
            return None
        if self._errors.pop(section, None) is not None:
            log.info("host %s metrics are readable again", section)
        return value

    def _cpu(self) -> Cpu:
        ps = self._psutil
        modes = tuple(
            (mode, float(seconds))
            for mode, seconds in ps.cpu_times()._asdict().items()
            if mode not in GUEST_MODES
        )
        count = ps.cpu_count()
        load1, load5, load15 = ps.getloadavg()
        return Cpu(modes, count, load1, load5, load15, ps.cpu_stats().ctx_switches)

    def _memory(self) -> Memory:
        memory = self._psutil.virtual_memory()
        swap = self._psutil.swap_memory()
        return Memory(memory.total, memory.available, memory.used, swap.total, swap.free)

    def _filesystems(self, settings: HostSettings) -> tuple[Filesystem, ...]:
        mounts: dict[str, _Partition] = {}
        for partition in self._psutil.disk_partitions(all=True):
            # The same mount point can be mounted over; the last entry is the visible one.
            mounts.pop(partition.mountpoint, None)
            mounts[partition.mountpoint] = partition
        chosen = [
            p
            for p in mounts.values()
            if settings.mount_points.allows(p.mountpoint) and settings.fs_types.allows(p.fstype)
        ]
        usage = self._filesystem_stats.usage(
            [p.mountpoint for p in chosen], settings.filesystem_timeout
        )
        return tuple(
            Filesystem(
                device=p.device,
                fstype=p.fstype,
                mountpoint=p.mountpoint,
                readonly="ro" in p.opts.split(","),
                usage=usage[p.mountpoint],
            )
            for p in sorted(chosen, key=lambda p: p.mountpoint)
        )

    def _disks(self, settings: HostSettings) -> tuple[Disk, ...]:
        allows = settings.disk_devices.allows
        counters = self._psutil.disk_io_counters(perdisk=True)
        return tuple(
            Disk(
                device=name,
                read_bytes=io.read_bytes,
                written_bytes=io.write_bytes,
                reads_completed=io.read_count,
                writes_completed=io.write_count,
                io_time_seconds=io.busy_time / 1000,
            )
            for name, io in sorted(counters.items())
            if allows(name)
        )

    def _interfaces(self, settings: HostSettings) -> tuple[Interface, ...]:
        allows = settings.network_devices.allows
        counters = self._psutil.net_io_counters(pernic=True)
        return tuple(
            Interface(
                device=name,
                receive_bytes=io.bytes_recv,
                receive_packets=io.packets_recv,
                receive_errs=io.errin,
                receive_drop=io.dropin,
                transmit_bytes=io.bytes_sent,
                transmit_packets=io.packets_sent,
                transmit_errs=io.errout,
                transmit_drop=io.dropout,
            )
            for name, io in sorted(counters.items())
            if allows(name)
        )
