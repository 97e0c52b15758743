"""Renders the host's CPU, memory, pressure, filesystems, disks and network as ``lookout_host_*``.

A small deployment then needs no node_exporter beside Lookout. The numbers come as a frozen
``host.snapshot.HostSnapshot``; ``show()`` renders each new snapshot once into the whole
exposition text, called by ``host.refresher.HostRefresher`` in its worker thread right after the
read, so ``expose()`` on the event loop only hands out the latest text. Every family is declared
here, once, as a ``Family`` constant.

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

from collections.abc import Callable, Iterable

from exporter.exposition import header, label_pairs, sample
from exporter.families import Family
from exporter.host.mounts import FilesystemUsage
from exporter.host.procfs import FileHandles, PressureStalls
from exporter.host.snapshot import Cpu, Disk, Filesystem, HostSnapshot, Interface, Memory

__all__ = ["FAMILIES", "HostCollector", "render"]

# A sample is (label_pairs text, value); a family is written only when it has samples.
Sample = tuple[str, float]

CPU_SECONDS = Family(
    "lookout_host_cpu_seconds_total",
    "counter",
    "Seconds the CPUs spent in each mode, summed over all CPUs.",
)
CPUS = Family("lookout_host_cpus", "gauge", "Number of logical CPUs.")
LOAD1 = Family("lookout_host_load1", "gauge", "1-minute load average.")
LOAD5 = Family("lookout_host_load5", "gauge", "5-minute load average.")
LOAD15 = Family("lookout_host_load15", "gauge", "15-minute load average.")
CONTEXT_SWITCHES = Family(
    "lookout_host_context_switches_total", "counter", "Context switches since boot."
)

MEMORY_TOTAL = Family("lookout_host_memory_total_bytes", "gauge", "Physical memory.")
MEMORY_AVAILABLE = Family(
    "lookout_host_memory_available_bytes",
    "gauge",
    "Memory available to new work without swapping (MemAvailable).",
)
MEMORY_USED = Family(
    "lookout_host_memory_used_bytes", "gauge", "Memory in use: total minus available."
)
SWAP_TOTAL = Family("lookout_host_swap_total_bytes", "gauge", "Swap space.")
SWAP_FREE = Family("lookout_host_swap_free_bytes", "gauge", "Unused swap space.")

PRESSURE_CPU_WAITING = Family(
    "lookout_host_pressure_cpu_waiting_seconds_total",
    "counter",
    "Seconds at least one task waited for cpu (PSI 'some' total).",
)
PRESSURE_MEMORY_WAITING = Family(
    "lookout_host_pressure_memory_waiting_seconds_total",
    "counter",
    "Seconds at least one task waited for memory (PSI 'some' total).",
)
PRESSURE_MEMORY_STALLED = Family(
    "lookout_host_pressure_memory_stalled_seconds_total",
    "counter",
    "Seconds all non-idle tasks stalled on memory (PSI 'full' total).",
)
PRESSURE_IO_WAITING = Family(
    "lookout_host_pressure_io_waiting_seconds_total",
    "counter",
    "Seconds at least one task waited for io (PSI 'some' total).",
)
PRESSURE_IO_STALLED = Family(
    "lookout_host_pressure_io_stalled_seconds_total",
    "counter",
    "Seconds all non-idle tasks stalled on io (PSI 'full' total).",
)

FILESYSTEM_SIZE = Family("lookout_host_filesystem_size_bytes", "gauge", "Filesystem size.")
FILESYSTEM_FREE = Family("lookout_host_filesystem_free_bytes", "gauge", "Free bytes.")
FILESYSTEM_AVAIL = Family(
    "lookout_host_filesystem_avail_bytes", "gauge", "Bytes available to unprivileged users."
)
FILESYSTEM_FILES = Family("lookout_host_filesystem_files", "gauge", "Inodes.")
FILESYSTEM_FILES_FREE = Family("lookout_host_filesystem_files_free", "gauge", "Free inodes.")
FILESYSTEM_READONLY = Family(
    "lookout_host_filesystem_readonly", "gauge", "1 if the filesystem is mounted read-only."
)
FILESYSTEM_DEVICE_ERROR = Family(
    "lookout_host_filesystem_device_error",
    "gauge",
    "1 if statvfs failed or did not answer within host.filesystem.timeout.",
)

DISK_READ_BYTES = Family("lookout_host_disk_read_bytes_total", "counter", "Bytes read.")
DISK_WRITTEN_BYTES = Family("lookout_host_disk_written_bytes_total", "counter", "Bytes written.")
DISK_READS_COMPLETED = Family(
    "lookout_host_disk_reads_completed_total", "counter", "Reads completed."
)
DISK_WRITES_COMPLETED = Family(
    "lookout_host_disk_writes_completed_total", "counter", "Writes completed."
)
DISK_IO_TIME = Family(
    "lookout_host_disk_io_time_seconds_total", "counter", "Seconds the device was busy with I/O."
)

NETWORK_RECEIVE_BYTES = Family(
    "lookout_host_network_receive_bytes_total", "counter", "Bytes received."
)
NETWORK_RECEIVE_PACKETS = Family(
    "lookout_host_network_receive_packets_total", "counter", "Packets received."
)
NETWORK_RECEIVE_ERRS = Family(
    "lookout_host_network_receive_errs_total", "counter", "Receive errors."
)
NETWORK_RECEIVE_DROP = Family(
    "lookout_host_network_receive_drop_total", "counter", "Received packets dropped."
)
NETWORK_TRANSMIT_BYTES = Family(
    "lookout_host_network_transmit_bytes_total", "counter", "Bytes sent."
)
NETWORK_TRANSMIT_PACKETS = Family(
    "lookout_host_network_transmit_packets_total", "counter", "Packets sent."
)
NETWORK_TRANSMIT_ERRS = Family(
    "lookout_host_network_transmit_errs_total", "counter", "Transmit errors."
)
NETWORK_TRANSMIT_DROP = Family(
    "lookout_host_network_transmit_drop_total", "counter", "Outgoing packets dropped."
)

BOOT_TIME = Family(
    "lookout_host_boot_time_seconds", "gauge", "When the host booted, in seconds since the epoch."
)
FILEFD_ALLOCATED = Family("lookout_host_filefd_allocated", "gauge", "Allocated file handles.")
FILEFD_MAXIMUM = Family("lookout_host_filefd_maximum", "gauge", "Maximum file handles.")

FAMILIES = (
    CPU_SECONDS,
    CPUS,
    LOAD1,
    LOAD5,
    LOAD15,
    CONTEXT_SWITCHES,
    MEMORY_TOTAL,
    MEMORY_AVAILABLE,
    MEMORY_USED,
    SWAP_TOTAL,
    SWAP_FREE,
    PRESSURE_CPU_WAITING,
    PRESSURE_MEMORY_WAITING,
    PRESSURE_MEMORY_STALLED,
    PRESSURE_IO_WAITING,
    PRESSURE_IO_STALLED,
    FILESYSTEM_SIZE,
    FILESYSTEM_FREE,
    FILESYSTEM_AVAIL,
    FILESYSTEM_FILES,
    FILESYSTEM_FILES_FREE,
    FILESYSTEM_READONLY,
    FILESYSTEM_DEVICE_ERROR,
    DISK_READ_BYTES,
    DISK_WRITTEN_BYTES,
    DISK_READS_COMPLETED,
    DISK_WRITES_COMPLETED,
    DISK_IO_TIME,
    NETWORK_RECEIVE_BYTES,
    NETWORK_RECEIVE_PACKETS,
    NETWORK_RECEIVE_ERRS,
    NETWORK_RECEIVE_DROP,
    NETWORK_TRANSMIT_BYTES,
    NETWORK_TRANSMIT_PACKETS,
    NETWORK_TRANSMIT_ERRS,
    NETWORK_TRANSMIT_DROP,
    BOOT_TIME,
    FILEFD_ALLOCATED,
    FILEFD_MAXIMUM,
)

# The per-mount, per-disk and per-interface families with the field each one reports.
FILESYSTEM_USAGE: tuple[tuple[Family, Callable[[FilesystemUsage], int]], ...] = (
    (FILESYSTEM_SIZE, lambda u: u.size),
    (FILESYSTEM_FREE, lambda u: u.free),
    (FILESYSTEM_AVAIL, lambda u: u.avail),
    (FILESYSTEM_FILES, lambda u: u.files),
    (FILESYSTEM_FILES_FREE, lambda u: u.files_free),
)
DISK_COUNTERS: tuple[tuple[Family, Callable[[Disk], float]], ...] = (
    (DISK_READ_BYTES, lambda d: d.read_bytes),
    (DISK_WRITTEN_BYTES, lambda d: d.written_bytes),
    (DISK_READS_COMPLETED, lambda d: d.reads_completed),
    (DISK_WRITES_COMPLETED, lambda d: d.writes_completed),
    (DISK_IO_TIME, lambda d: d.io_time_seconds),
)
INTERFACE_COUNTERS: tuple[tuple[Family, Callable[[Interface], int]], ...] = (
    (NETWORK_RECEIVE_BYTES, lambda i: i.receive_bytes),
    (NETWORK_RECEIVE_PACKETS, lambda i: i.receive_packets),
    (NETWORK_RECEIVE_ERRS, lambda i: i.receive_errs),
    (NETWORK_RECEIVE_DROP, lambda i: i.receive_drop),
    (NETWORK_TRANSMIT_BYTES, lambda i: i.transmit_bytes),
    (NETWORK_TRANSMIT_PACKETS, lambda i: i.transmit_packets),
    (NETWORK_TRANSMIT_ERRS, lambda i: i.transmit_errs),
    (NETWORK_TRANSMIT_DROP, lambda i: i.transmit_drop),
)


class HostCollector:
    """Text collector of the latest host snapshot, rendered once when it is shown."""

    def __init__(self) -> None:
        self._text = ""

    def show(self, snapshot: HostSnapshot | None) -> None:
        """Expose ``snapshot`` from now on (None: nothing); renders it in the calling thread."""
        self._text = "" if snapshot is None else render(snapshot)

    def expose(self) -> Iterable[str]:
        if self._text:
            yield self._text


def render(snapshot: HostSnapshot) -> str:
    """Every family of ``snapshot`` as exposition text; sections that are None are left out."""
    s = snapshot
    return "".join(
        (
            "" if s.cpu is None else _cpu(s.cpu),
            "" if s.memory is None else _memory(s.memory),
            "" if s.pressure is None else _pressure(s.pressure),
            _filesystems(s.filesystems or ()),
            _disks(s.disks or ()),
            _interfaces(s.interfaces or ()),
            "" if s.boot_time is None else _single(BOOT_TIME, s.boot_time),
            "" if s.file_handles is None else _file_handles(s.file_handles),
        )
    )


def _family(family: Family, samples: Iterable[Sample]) -> str:
    """One whole family as text, or "" when there are no samples."""
    lines = [sample(family, labels, value) for labels, value in samples]
    return header(family) + "".join(lines) if lines else ""


def _single(family: Family, value: float) -> str:
    return header(family) + sample(family, "", value)


def _cpu(cpu: Cpu) -> str:
    modes = [(label_pairs([("mode", mode)]), seconds) for mode, seconds in cpu.mode_seconds]
    return "".join(
        (
            _family(CPU_SECONDS, modes),
            "" if cpu.count is None else _single(CPUS, cpu.count),
            _single(LOAD1, cpu.load1),
            _single(LOAD5, cpu.load5),
            _single(LOAD15, cpu.load15),
            _single(CONTEXT_SWITCHES, cpu.context_switches),
        )
    )


def _memory(memory: Memory) -> str:
    return "".join(
        (
            _single(MEMORY_TOTAL, memory.total),
            _single(MEMORY_AVAILABLE, memory.available),
            _single(MEMORY_USED, memory.used),
            _single(SWAP_TOTAL, memory.swap_total),
            _single(SWAP_FREE, memory.swap_free),
        )
    )


def _pressure(pressure: PressureStalls) -> str:
    chunks = []
    for stall, waiting, stalled in (
        (pressure.cpu, PRESSURE_CPU_WAITING, None),  # cpu 'full' is always 0 host-wide
        (pressure.memory, PRESSURE_MEMORY_WAITING, PRESSURE_MEMORY_STALLED),
        (pressure.io, PRESSURE_IO_WAITING, PRESSURE_IO_STALLED),
    ):
        if stall is None:
            continue
        chunks.append(_single(waiting, stall.some))
        if stalled is not None and stall.full is not None:
            chunks.append(_single(stalled, stall.full))
    return "".join(chunks)


def _filesystems(filesystems: Iterable[Filesystem]) -> str:
    labelled = [
        (
            label_pairs((("device", f.device), ("fstype", f.fstype), ("mountpoint", f.mountpoint))),
            f,
        )
        for f in filesystems
    ]
    read = [(labels, f.usage) for labels, f in labelled if f.usage is not None]
    return "".join(
        (
            *(
                _family(family, [(labels, value(usage)) for labels, usage in read])
                for family, value in FILESYSTEM_USAGE
            ),
            _family(FILESYSTEM_READONLY, [(labels, f.readonly) for labels, f in labelled]),
            _family(FILESYSTEM_DEVICE_ERROR, [(labels, f.usage is None) for labels, f in labelled]),
        )
    )


def _disks(disks: Iterable[Disk]) -> str:
    labelled = [(label_pairs([("device", d.device)]), d) for d in disks]
    return "".join(
        _family(family, [(labels, value(d)) for labels, d in labelled])
        for family, value in DISK_COUNTERS
    )


def _interfaces(interfaces: Iterable[Interface]) -> str:
    labelled = [(label_pairs([("device", i.device)]), i) for i in interfaces]
    return "".join(
        _family(family, [(labels, value(i)) for labels, i in labelled])
        for family, value in INTERFACE_COUNTERS
    )


def _file_handles(handles: FileHandles) -> str:
    return _single(FILEFD_ALLOCATED, handles.allocated) + _single(FILEFD_MAXIMUM, handles.maximum)
