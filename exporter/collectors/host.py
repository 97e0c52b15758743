"""Renders the host's CPU, memory, pressure, filesystems, disks and network as ``lookout_host_*``.

A small deployment then needs no node_exporter beside Lookout. Reading the host takes system
calls, and ``statvfs`` on a hung network mount can block for minutes, so none of it happens in
``expose()``: ``refresh()`` reads every number and renders the whole exposition text in a worker
thread (``host.refresher.HostRefresher`` runs it when a scrape needs fresh numbers), and
``expose()`` on the event loop only hands out the latest text.

Sample of the exposition (abridged)::

    # HELP lookout_host_cpu_seconds_total Seconds the CPUs spent in each mode, summed over all CPUs.
    # TYPE lookout_host_cpu_seconds_total counter
    lookout_host_cpu_seconds_total{mode="user"} 5113.52
    lookout_host_cpu_seconds_total{mode="idle"} 80412.9
    # TYPE lookout_host_load1 gauge
    lookout_host_load1 0.42
    # TYPE lookout_host_memory_available_bytes gauge
    lookout_host_memory_available_bytes 21474836480
    # TYPE lookout_host_pressure_io_waiting_seconds_total counter
    lookout_host_pressure_io_waiting_seconds_total 2.082902
    # TYPE lookout_host_filesystem_avail_bytes gauge
    lookout_host_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 84819861504
    # TYPE lookout_host_filesystem_device_error gauge
    lookout_host_filesystem_device_error{device="srv:/export",fstype="nfs4",mountpoint="/mnt"} 1
    # TYPE lookout_host_disk_read_bytes_total counter
    lookout_host_disk_read_bytes_total{device="vda"} 1008600064
    # TYPE lookout_host_network_receive_bytes_total counter
    lookout_host_network_receive_bytes_total{device="eth0"} 181366972
    # TYPE lookout_host_boot_time_seconds gauge
    lookout_host_boot_time_seconds 1763711111
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil as system_psutil

from exporter.exposition import header, label_pairs, sample
from exporter.families import Family, FamilyType
from exporter.host.mounts import FilesystemStats, FilesystemUsage, StatVFS
from exporter.host.procfs import read_file_handles, read_pressure
from exporter.host.settings import HostSettings

__all__ = ["HostCollector", "Psutil"]

log = logging.getLogger(__name__)

# Linux counts guest time inside user and nice already; exporting it as modes would make the
# sum over modes exceed the CPU time (node_exporter moves it to node_cpu_guest_seconds_total).
GUEST_MODES = frozenset({"guest", "guest_nice"})

# A sample is (label pairs, value); a family is rendered only when it has samples.
Sample = tuple[Sequence[tuple[str, str]], float]


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
    """The part of the psutil module the collector calls; the psutil module itself fits."""

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


_DECLARED: dict[str, Family] = {}


def family(name: str, kind: FamilyType, help_text: str, samples: Iterable[Sample]) -> str:
    """One whole family as text, or "" when there are no samples."""
    declared = _DECLARED.get(name)
    if declared is None:
        declared = _DECLARED[name] = Family(name, kind, help_text)
    lines = [sample(declared, label_pairs(labels), value) for labels, value in samples]
    return header(declared) + "".join(lines) if lines else ""


def single(name: str, kind: FamilyType, help_text: str, value: float) -> str:
    return family(name, kind, help_text, [((), value)])


class HostCollector:
    """Text collector of host metrics; ``refresh()`` reads the host, ``expose()`` reads memory.

    ``psutil``, ``procfs`` (for ``pressure/*`` and ``sys/fs/file-nr``) and ``statvfs`` are the
    seams to the host; tests pass fakes with known numbers.
    """

    def __init__(
        self,
        psutil: Psutil = system_psutil,
        procfs: Path = Path("/proc"),
        settings: HostSettings | None = None,
        statvfs: StatVFS = os.statvfs,
    ) -> None:
        self._psutil = psutil
        self._procfs = procfs
        self._settings = settings or HostSettings()
        self._filesystems = FilesystemStats(statvfs)
        self._text = ""
        self._publish = threading.Lock()  # a refresh in flight never undoes a disabling
        self._errors: dict[str, str] = {}
        self._sections: tuple[tuple[str, Callable[[HostSettings], str]], ...] = (
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("pressure", self._pressure),
            ("filesystem", self._filesystem),
            ("disk", self._disk),
            ("network", self._network),
            ("boot time", self._boot_time),
            ("file handles", self._file_handles),
        )

    @property
    def settings(self) -> HostSettings:
        return self._settings

    def configure(self, settings: HostSettings) -> None:
        """Use ``settings`` from the next refresh on; disabling clears the exposition at once."""
        with self._publish:
            self._settings = settings
            if not settings.enabled:
                self._text = ""

    def expose(self) -> Iterable[str]:
        if self._text:
            yield self._text

    def refresh(self) -> None:
        """Read every host number and render the exposition; blocks, so run it in a thread.

        A part that fails (a file psutil cannot read, say) is left out and logged once, until
        it works again; the other parts are still reported.
        """
        settings = self._settings
        if not settings.enabled:
            return
        chunks = []
        for section, render in self._sections:
            try:
                chunks.append(render(settings))
            except Exception as exc:  # one unreadable part must not hide the others
                message = f"{type(exc).__name__}: {exc}"
                if self._errors.get(section) != message:
                    log.warning("cannot read host %s metrics: %s", section, message)
                self._errors[section] = message
            else:
                if self._errors.pop(section, None) is not None:
                    log.info("host %s metrics are readable again", section)
        with self._publish:
            if self._settings is settings:
                self._text = "".join(chunks)

    def _cpu(self, settings: HostSettings) -> str:
        ps = self._psutil
        modes = [
            ([("mode", mode)], float(seconds))
            for mode, seconds in ps.cpu_times()._asdict().items()
            if mode not in GUEST_MODES
        ]
        count = ps.cpu_count()
        load1, load5, load15 = ps.getloadavg()
        return "".join(
            (
                family(
                    "lookout_host_cpu_seconds_total",
                    "counter",
                    "Seconds the CPUs spent in each mode, summed over all CPUs.",
                    modes,
                ),
                family(
                    "lookout_host_cpus",
                    "gauge",
                    "Number of logical CPUs.",
                    [] if count is None else [((), count)],
                ),
                single("lookout_host_load1", "gauge", "1-minute load average.", load1),
                single("lookout_host_load5", "gauge", "5-minute load average.", load5),
                single("lookout_host_load15", "gauge", "15-minute load average.", load15),
                single(
                    "lookout_host_context_switches_total",
                    "counter",
                    "Context switches since boot.",
                    ps.cpu_stats().ctx_switches,
                ),
            )
        )

    def _memory(self, settings: HostSettings) -> str:
        memory = self._psutil.virtual_memory()
        swap = self._psutil.swap_memory()
        return "".join(
            (
                single(
                    "lookout_host_memory_total_bytes", "gauge", "Physical memory.", memory.total
                ),
                single(
                    "lookout_host_memory_available_bytes",
                    "gauge",
                    "Memory available to new work without swapping (MemAvailable).",
                    memory.available,
                ),
                single(
                    "lookout_host_memory_used_bytes",
                    "gauge",
                    "Memory in use: total minus available.",
                    memory.used,
                ),
                single("lookout_host_swap_total_bytes", "gauge", "Swap space.", swap.total),
                single("lookout_host_swap_free_bytes", "gauge", "Unused swap space.", swap.free),
            )
        )

    def _pressure(self, settings: HostSettings) -> str:
        pressure = read_pressure(self._procfs)
        chunks = []
        for resource in ("cpu", "memory", "io"):
            if resource not in pressure:
                continue
            chunks.append(
                single(
                    f"lookout_host_pressure_{resource}_waiting_seconds_total",
                    "counter",
                    f"Seconds at least one task waited for {resource} (PSI 'some' total).",
                    pressure[resource].some,
                )
            )
            full = pressure[resource].full
            if resource != "cpu" and full is not None:
                chunks.append(
                    single(
                        f"lookout_host_pressure_{resource}_stalled_seconds_total",
                        "counter",
                        f"Seconds all non-idle tasks stalled on {resource} (PSI 'full' total).",
                        full,
                    )
                )
        return "".join(chunks)

    def _filesystem(self, settings: HostSettings) -> str:
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
        usage = self._filesystems.usage([p.mountpoint for p in chosen], settings.filesystem_timeout)
        labelled = [
            (
                (("device", p.device), ("fstype", p.fstype), ("mountpoint", p.mountpoint)),
                p,
                usage[p.mountpoint],
            )
            for p in sorted(chosen, key=lambda p: p.mountpoint)
        ]
        ok = [(labels, u) for labels, _, u in labelled if u is not None]

        def sizes(name: str, help_text: str, value: Callable[[FilesystemUsage], int]) -> str:
            return family(name, "gauge", help_text, [(labels, value(u)) for labels, u in ok])

        return "".join(
            (
                sizes("lookout_host_filesystem_size_bytes", "Filesystem size.", lambda u: u.size),
                sizes("lookout_host_filesystem_free_bytes", "Free bytes.", lambda u: u.free),
                sizes(
                    "lookout_host_filesystem_avail_bytes",
                    "Bytes available to unprivileged users.",
                    lambda u: u.avail,
                ),
                sizes("lookout_host_filesystem_files", "Inodes.", lambda u: u.files),
                sizes("lookout_host_filesystem_files_free", "Free inodes.", lambda u: u.files_free),
                family(
                    "lookout_host_filesystem_readonly",
                    "gauge",
                    "1 if the filesystem is mounted read-only.",
                    [(labels, "ro" in p.opts.split(",")) for labels, p, _ in labelled],
                ),
                family(
                    "lookout_host_filesystem_device_error",
                    "gauge",
                    "1 if statvfs failed or did not answer within host.filesystem.timeout.",
                    [(labels, u is None) for labels, _, u in labelled],
                ),
            )
        )

    def _disk(self, settings: HostSettings) -> str:
        allows = settings.disk_devices.allows
        counters = self._psutil.disk_io_counters(perdisk=True)
        disks = [(name, counters[name]) for name in sorted(counters) if allows(name)]

        def counter(name: str, help_text: str, value: Callable[[_DiskIO], float]) -> str:
            return family(
                name, "counter", help_text, [([("device", d)], value(io)) for d, io in disks]
            )

        return "".join(
            (
                counter(
                    "lookout_host_disk_read_bytes_total", "Bytes read.", lambda io: io.read_bytes
                ),
                counter(
                    "lookout_host_disk_written_bytes_total",
                    "Bytes written.",
                    lambda io: io.write_bytes,
                ),
                counter(
                    "lookout_host_disk_reads_completed_total",
                    "Reads completed.",
                    lambda io: io.read_count,
                ),
                counter(
                    "lookout_host_disk_writes_completed_total",
                    "Writes completed.",
                    lambda io: io.write_count,
                ),
                counter(
                    "lookout_host_disk_io_time_seconds_total",
                    "Seconds the device was busy with I/O.",
                    lambda io: io.busy_time / 1000,
                ),
            )
        )

    def _network(self, settings: HostSettings) -> str:
        allows = settings.network_devices.allows
        counters = self._psutil.net_io_counters(pernic=True)
        nics = [(name, counters[name]) for name in sorted(counters) if allows(name)]
        fields: tuple[tuple[str, str, Callable[[_NetIO], int]], ...] = (
            ("receive_bytes", "Bytes received.", lambda io: io.bytes_recv),
            ("receive_packets", "Packets received.", lambda io: io.packets_recv),
            ("receive_errs", "Receive errors.", lambda io: io.errin),
            ("receive_drop", "Received packets dropped.", lambda io: io.dropin),
            ("transmit_bytes", "Bytes sent.", lambda io: io.bytes_sent),
            ("transmit_packets", "Packets sent.", lambda io: io.packets_sent),
            ("transmit_errs", "Transmit errors.", lambda io: io.errout),
            ("transmit_drop", "Outgoing packets dropped.", lambda io: io.dropout),
        )
        return "".join(
            family(
                f"lookout_host_network_{field}_total",
                "counter",
                help_text,
                [([("device", nic)], value(io)) for nic, io in nics],
            )
            for field, help_text, value in fields
        )

    def _boot_time(self, settings: HostSettings) -> str:
        return single(
            "lookout_host_boot_time_seconds",
            "gauge",
            "When the host booted, in seconds since the epoch.",
            self._psutil.boot_time(),
        )

    def _file_handles(self, settings: HostSettings) -> str:
        handles = read_file_handles(self._procfs)
        if handles is None:
            return ""
        return single(
            "lookout_host_filefd_allocated", "gauge", "Allocated file handles.", handles.allocated
        ) + single("lookout_host_filefd_maximum", "gauge", "Maximum file handles.", handles.maximum)
