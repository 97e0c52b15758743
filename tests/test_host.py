"""Host reading and rendering: exact values from a fake psutil, filters, hung mounts, a real-host
smoke test."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import catalog
from exporter.collectors.host import FAMILIES, HostCollector, render
from exporter.host.reading import HostReader
from exporter.host.settings import HostSettings, NameFilter
from exporter.host.snapshot import HostSnapshot
from tests.metrics import assert_promtool_accepts


class CpuTimes(NamedTuple):
    user: float
    nice: float
    system: float
    idle: float
    iowait: float
    irq: float
    softirq: float
    steal: float
    guest: float
    guest_nice: float


class CpuStats(NamedTuple):
    ctx_switches: int
    interrupts: int
    soft_interrupts: int
    syscalls: int


class VirtualMemory(NamedTuple):
    total: int
    available: int
    percent: float
    used: int
    free: int


class Swap(NamedTuple):
    total: int
    used: int
    free: int
    percent: float
    sin: int
    sout: int


class Partition(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    opts: str


class DiskIO(NamedTuple):
    read_count: int
    write_count: int
    read_bytes: int
    write_bytes: int
    read_time: int
    write_time: int
    read_merged_count: int
    write_merged_count: int
    busy_time: int


class NetIO(NamedTuple):
    bytes_sent: int
    bytes_recv: int
    packets_sent: int
    packets_recv: int
    errin: int
    errout: int
    dropin: int
    dropout: int


ROOT = Partition("/dev/vda1", "/", "ext4", "rw,relatime")
ROOT_LABELS = {"device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/"}
DEFAULT_PARTITIONS = [
    Partition("proc", "/proc", "proc", "rw,nosuid"),
    Partition("sysfs", "/sys", "sysfs", "rw"),
    Partition("tmpfs", "/dev/shm", "tmpfs", "rw"),
    Partition("cgroup2", "/sys/fs/cgroup", "cgroup2", "rw"),
    Partition("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay", "rw"),
    Partition("overlay", "/srv/container", "overlay", "rw"),
    ROOT,
    Partition("/dev/vdb", "/data", "xfs", "ro,noatime"),
]


class FakePsutil:
    """Known host numbers in psutil's shapes; ``calls`` counts reads per function."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.partitions = list(DEFAULT_PARTITIONS)
        self.disks = {
            "vda": DiskIO(100, 200, 4096, 8192, 7, 9, 0, 0, 1500),
            "vda1": DiskIO(90, 190, 4000, 8000, 6, 8, 0, 0, 1400),
            "loop0": DiskIO(1, 0, 512, 0, 0, 0, 0, 0, 0),
            "nvme0n1": DiskIO(5, 6, 7, 8, 0, 0, 0, 0, 250),
        }
        self.nics = {
            "eth0": NetIO(1000, 2000, 10, 20, 1, 2, 3, 4),
            "lo": NetIO(50, 50, 5, 5, 0, 0, 0, 0),
            "veth12ab": NetIO(7, 8, 1, 1, 0, 0, 0, 0),
        }
        self.broken: dict[str, Exception] = {}
        self.boot_time_gate: threading.Event | None = None

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.broken:
            raise self.broken[name]

    def cpu_times(self, percpu: bool = False) -> CpuTimes:
        self._call("cpu_times")
        return CpuTimes(100.5, 2.0, 30.25, 1000.0, 4.0, 0.5, 1.5, 0.25, 9.0, 1.0)

    def cpu_count(self, logical: bool = True) -> int | None:
        self._call("cpu_count")
        return 4

    def cpu_stats(self) -> CpuStats:
        self._call("cpu_stats")
        return CpuStats(123456, 1, 2, 0)

    def getloadavg(self) -> tuple[float, float, float]:
        self._call("getloadavg")
        return (0.5, 0.25, 0.125)

    def virtual_memory(self) -> VirtualMemory:
        self._call("virtual_memory")
        return VirtualMemory(8_000_000_000, 6_000_000_000, 25.0, 2_000_000_000, 5_000_000_000)

    def swap_memory(self) -> Swap:
        self._call("swap_memory")
        return Swap(1_000_000, 250_000, 750_000, 25.0, 0, 0)

    def disk_partitions(self, all: bool = False) -> list[Partition]:
        self._call("disk_partitions")
        return self.partitions

    def disk_io_counters(self, perdisk: bool, nowrap: bool = True) -> Mapping[str, DiskIO]:
        self._call("disk_io_counters")
        return self.disks

    def net_io_counters(self, pernic: bool, nowrap: bool = True) -> Mapping[str, NetIO]:
        self._call("net_io_counters")
        return self.nics

    def boot_time(self) -> float:
        self._call("boot_time")
        if self.boot_time_gate is not None:
            self.boot_time_gate.wait(10)
        return 1_700_000_000.0


def statvfs_result(
    blocks: int, bfree: int, bavail: int, files: int, ffree: int
) -> os.statvfs_result:
    return os.statvfs_result((4096, 1024, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


class FakeStatvfs:
    """statvfs with fixed numbers per mount point; mounts in ``errors`` fail, in ``gates`` block."""

    def __init__(self) -> None:
        self.results = {
            "/": statvfs_result(1000, 400, 300, 500, 100),
            "/data": statvfs_result(2000, 1500, 1500, 50, 49),
            "/srv/container": statvfs_result(10, 5, 5, 10, 5),
            "/dev/shm": statvfs_result(10, 10, 10, 10, 10),
        }
        self.errors: dict[str, OSError] = {}
        self.gates: dict[str, threading.Event] = {}
        self.calls: list[str] = []

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls.append(path)
        gate = self.gates.get(path)
        if gate is not None:
            gate.wait(10)
        if path in self.errors:
            raise self.errors[path]
        return self.results[path]


def write_procfs(root: Path, pressure: bool = True) -> Path:
    (root / "sys" / "fs").mkdir(parents=True)
    (root / "sys" / "fs" / "file-nr").write_text("1536\t0\t9223372036854775807\n")
    if pressure:
        (root / "pressure").mkdir()
        (root / "pressure" / "cpu").write_text(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=3500000\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        )
        (root / "pressure" / "memory").write_text(
            "some avg10=0.10 avg60=0.00 avg300=0.00 total=2000001\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n"
        )
        (root / "pressure" / "io").write_text(
            "some avg10=1.62 avg60=0.49 avg300=0.25 total=2082902\n"
            "full avg10=1.59 avg60=0.46 avg300=0.24 total=1989155\n"
        )
    return root


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels) and family types by family name, via prometheus_client's parser."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for metric in text_string_to_metric_families(text):
        types[metric.name] = metric.type
        for sample in metric.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample_name, labels in samples if sample_name == name}


@pytest.fixture
def fake() -> FakePsutil:
    return FakePsutil()


@pytest.fixture
def statvfs() -> FakeStatvfs:
    return FakeStatvfs()


class Host(NamedTuple):
    """A reader and the settings it reads with, as the refresher holds them."""

    reader: HostReader
    settings: HostSettings

    def read(self) -> HostSnapshot:
        return self.reader.read(self.settings)


@pytest.fixture
def make(fake: FakePsutil, statvfs: FakeStatvfs, tmp_path: Path) -> Callable[..., Host]:
    procfs = write_procfs(tmp_path / "proc")

    def make(**settings: Any) -> Host:
        reader = HostReader(psutil=fake, procfs=procfs, statvfs=statvfs)
        return Host(reader, HostSettings(**settings))

    return make


def scrape(host: Host) -> Samples:
    return parse(render(host.read()))[0]


def test_cpu_seconds_by_mode_leave_out_guest_time_already_counted_in_user(
    make: Callable[..., Host],
) -> None:
    samples = scrape(make())
    modes = {
        "user": 100.5,
        "nice": 2.0,
        "system": 30.25,
        "idle": 1000.0,
        "iowait": 4.0,
        "irq": 0.5,
        "softirq": 1.5,
        "steal": 0.25,
    }
    for mode, seconds in modes.items():
        assert value(samples, "lookout_host_cpu_seconds_total", mode=mode) == seconds
    assert series(samples, "lookout_host_cpu_seconds_total", "mode") == set(modes)


def test_cpu_count_load_averages_and_context_switches(make: Callable[..., Host]) -> None:
    samples = scrape(make())
    assert value(samples, "lookout_host_cpus") == 4
    assert value(samples, "lookout_host_load1") == 0.5
    assert value(samples, "lookout_host_load5") == 0.25
    assert value(samples, "lookout_host_load15") == 0.125
    assert value(samples, "lookout_host_context_switches_total") == 123456


def test_memory_and_swap_in_bytes(make: Callable[..., Host]) -> None:
    samples = scrape(make())
    assert value(samples, "lookout_host_memory_total_bytes") == 8_000_000_000
    assert value(samples, "lookout_host_memory_available_bytes") == 6_000_000_000
    assert value(samples, "lookout_host_memory_used_bytes") == 2_000_000_000
    assert value(samples, "lookout_host_swap_total_bytes") == 1_000_000
    assert value(samples, "lookout_host_swap_free_bytes") == 750_000


def test_pressure_totals_are_converted_from_microseconds_to_seconds(
    make: Callable[..., Host],
) -> None:
    samples = scrape(make())
    assert value(samples, "lookout_host_pressure_cpu_waiting_seconds_total") == 3.5
    assert value(samples, "lookout_host_pressure_memory_waiting_seconds_total") == 2.000001
    assert value(samples, "lookout_host_pressure_memory_stalled_seconds_total") == 1.5
    assert value(samples, "lookout_host_pressure_io_waiting_seconds_total") == 2.082902
    assert value(samples, "lookout_host_pressure_io_stalled_seconds_total") == 1.989155
    assert not any(name == "lookout_host_pressure_cpu_stalled_seconds_total" for name, _ in samples)


def test_kernel_without_pressure_files_gives_no_pressure_families(
    fake: FakePsutil, statvfs: FakeStatvfs, tmp_path: Path
) -> None:
    reader = HostReader(psutil=fake, procfs=write_procfs(tmp_path, pressure=False), statvfs=statvfs)
    samples = scrape(Host(reader, HostSettings()))
    assert not [name for name, _ in samples if name.startswith("lookout_host_pressure_")]
    assert value(samples, "lookout_host_memory_total_bytes") == 8_000_000_000


def test_boot_time_and_file_handles(make: Callable[..., Host]) -> None:
    samples = scrape(make())
    assert value(samples, "lookout_host_boot_time_seconds") == 1_700_000_000
    assert value(samples, "lookout_host_filefd_allocated") == 1536
    assert value(samples, "lookout_host_filefd_maximum") == 9223372036854775807


def test_filesystem_bytes_use_fragment_size_and_inodes_are_counted(
    make: Callable[..., Host],
) -> None:
    samples = scrape(make())
    root = ROOT_LABELS
    assert value(samples, "lookout_host_filesystem_size_bytes", **root) == 1000 * 1024
    assert value(samples, "lookout_host_filesystem_free_bytes", **root) == 400 * 1024
    assert value(samples, "lookout_host_filesystem_avail_bytes", **root) == 300 * 1024
    assert value(samples, "lookout_host_filesystem_files", **root) == 500
    assert value(samples, "lookout_host_filesystem_files_free", **root) == 100
    assert value(samples, "lookout_host_filesystem_readonly", **root) == 0
    assert value(samples, "lookout_host_filesystem_device_error", **root) == 0
    data = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": "/data"}
    assert value(samples, "lookout_host_filesystem_readonly", **data) == 1


def test_pseudo_and_container_overlay_filesystems_are_excluded_by_default(
    make: Callable[..., Host], statvfs: FakeStatvfs
) -> None:
    samples = scrape(make())
    assert series(samples, "lookout_host_filesystem_size_bytes", "mountpoint") == {"/", "/data"}
    assert sorted(statvfs.calls) == ["/", "/data"]


def test_mount_point_and_fstype_filters_replace_the_defaults(
    make: Callable[..., Host],
) -> None:
    host = make(
        mount_points=NameFilter(include=re.compile(r"^/(dev/shm|srv/.*|data)$")),
        fs_types=NameFilter(exclude=re.compile("^xfs$")),
    )
    samples = scrape(host)
    mounts = series(samples, "lookout_host_filesystem_size_bytes", "mountpoint")
    assert mounts == {"/dev/shm", "/srv/container"}


def test_a_mount_point_mounted_over_reports_the_visible_last_mount(
    make: Callable[..., Host], fake: FakePsutil
) -> None:
    fake.partitions = [Partition("/dev/old", "/data", "ext4", "rw"), *DEFAULT_PARTITIONS]
    samples = scrape(make())
    assert series(samples, "lookout_host_filesystem_size_bytes", "device") == {
        "/dev/vda1",
        "/dev/vdb",
    }


def test_a_failing_statvfs_sets_device_error_and_drops_that_mounts_sizes(
    make: Callable[..., Host], statvfs: FakeStatvfs
) -> None:
    statvfs.errors["/data"] = PermissionError(13, "Permission denied")
    samples = scrape(make())
    data = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": "/data"}
    assert value(samples, "lookout_host_filesystem_device_error", **data) == 1
    assert value(samples, "lookout_host_filesystem_readonly", **data) == 1
    assert ("lookout_host_filesystem_size_bytes", frozenset(data.items())) not in samples
    assert series(samples, "lookout_host_filesystem_size_bytes", "mountpoint") == {"/"}


def test_a_hung_mount_is_reported_and_not_called_again_until_its_call_returns(
    make: Callable[..., Host], statvfs: FakeStatvfs, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    statvfs.gates["/data"] = gate
    host = make(filesystem_timeout=0.3)
    data = {"device": "/dev/vdb", "fstype": "xfs", "mountpoint": "/data"}
    try:
        with caplog.at_level(logging.WARNING):
            first = scrape(host)
        assert value(first, "lookout_host_filesystem_device_error", **data) == 1
        assert value(first, "lookout_host_filesystem_size_bytes", **ROOT_LABELS) == 1000 * 1024
        assert "'/data' did not answer statvfs within" in caplog.text
        second = scrape(host)
        assert value(second, "lookout_host_filesystem_device_error", **data) == 1
        assert statvfs.calls.count("/data") == 1
        assert statvfs.calls.count("/") == 2
    finally:
        gate.set()
    for _ in range(200):  # the stuck call's thread finishes right after the gate opens
        third = scrape(host)
        if statvfs.calls.count("/data") == 2:
            break
        threading.Event().wait(0.01)
    assert statvfs.calls.count("/data") == 2
    assert value(third, "lookout_host_filesystem_device_error", **data) == 0
    assert value(third, "lookout_host_filesystem_size_bytes", **data) == 2000 * 1024


def test_disk_partitions_and_loop_devices_are_excluded_by_default(
    make: Callable[..., Host],
) -> None:
    samples = scrape(make())
    assert series(samples, "lookout_host_disk_read_bytes_total", "device") == {"vda", "nvme0n1"}
    assert value(samples, "lookout_host_disk_read_bytes_total", device="vda") == 4096
    assert value(samples, "lookout_host_disk_written_bytes_total", device="vda") == 8192
    assert value(samples, "lookout_host_disk_reads_completed_total", device="vda") == 100
    assert value(samples, "lookout_host_disk_writes_completed_total", device="vda") == 200
    assert value(samples, "lookout_host_disk_io_time_seconds_total", device="vda") == 1.5
    assert value(samples, "lookout_host_disk_io_time_seconds_total", device="nvme0n1") == 0.25


def test_disk_device_include_filter(make: Callable[..., Host]) -> None:
    samples = scrape(make(disk_devices=NameFilter(include=re.compile("^vda"))))
    assert series(samples, "lookout_host_disk_read_bytes_total", "device") == {"vda", "vda1"}


def test_network_counters_per_interface(make: Callable[..., Host]) -> None:
    samples = scrape(make())
    expected = {
        "receive_bytes": 2000,
        "transmit_bytes": 1000,
        "receive_packets": 20,
        "transmit_packets": 10,
        "receive_errs": 1,
        "transmit_errs": 2,
        "receive_drop": 3,
        "transmit_drop": 4,
    }
    for field, count in expected.items():
        assert value(samples, f"lookout_host_network_{field}_total", device="eth0") == count
    assert series(samples, "lookout_host_network_receive_bytes_total", "device") == {
        "eth0",
        "lo",
        "veth12ab",
    }


def test_network_interface_filter(make: Callable[..., Host]) -> None:
    host = make(network_devices=NameFilter(exclude=re.compile("^(lo|veth.*)$")))
    samples = scrape(host)
    assert series(samples, "lookout_host_network_transmit_drop_total", "device") == {"eth0"}


def test_counters_end_in_total_and_every_family_has_its_type(
    make: Callable[..., Host],
) -> None:
    text = render(make().read())
    _, types = parse(text)
    for name, kind in types.items():
        assert name.startswith("lookout_host_")
        if kind == "counter":
            assert f"# TYPE {name}_total counter" in text
        else:
            assert kind == "gauge"
            assert not name.endswith("_total")


def test_an_unreadable_part_is_left_out_logged_once_and_the_rest_reported(
    make: Callable[..., Host], fake: FakePsutil, caplog: pytest.LogCaptureFixture
) -> None:
    host = make()
    fake.broken["net_io_counters"] = OSError(2, "No such file or directory")
    with caplog.at_level(logging.WARNING):
        samples = scrape(host)
        scrape(host)
    assert not [name for name, _ in samples if name.startswith("lookout_host_network_")]
    assert value(samples, "lookout_host_load1") == 0.5
    assert caplog.text.count("cannot read host network metrics") == 1
    del fake.broken["net_io_counters"]
    assert value(scrape(host), "lookout_host_network_receive_bytes_total", device="lo") == 50


def test_an_unreadable_part_is_none_in_the_snapshot(
    make: Callable[..., Host], fake: FakePsutil
) -> None:
    fake.broken["disk_io_counters"] = OSError(5, "Input/output error")
    snapshot = make().read()
    assert snapshot.disks is None
    assert snapshot.interfaces is not None
    assert snapshot.cpu is not None
    assert snapshot.cpu.load1 == 0.5


def test_every_family_written_is_declared_once_and_listed_in_the_catalog(
    make: Callable[..., Host],
) -> None:
    _, types = parse(render(make().read()))
    declared = {
        f.name.removesuffix("_total") if f.type == "counter" else f.name: f.type for f in FAMILIES
    }
    assert types == declared
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    assert set(FAMILIES) <= set(catalog.ALL_FAMILIES)


def test_the_collector_exposes_the_latest_snapshot_shown_and_nothing_after_none(
    make: Callable[..., Host],
) -> None:
    collector = HostCollector()
    snapshot = make().read()
    collector.show(snapshot)
    assert list(collector.expose()) == [render(snapshot)]
    collector.show(None)
    assert list(collector.expose()) == []


def test_expose_before_the_first_snapshot_is_empty() -> None:
    assert list(HostCollector().expose()) == []


def test_real_host_exposition_passes_promtool_check_metrics() -> None:
    """Smoke test: this machine through the real psutil and /proc, linted by promtool."""
    text = render(HostReader().read(HostSettings()))
    samples, _ = parse(text)
    assert value(samples, "lookout_host_cpus") == os.cpu_count()
    assert value(samples, "lookout_host_memory_total_bytes") > 0
    assert value(samples, "lookout_host_boot_time_seconds") > 0
    assert value(samples, "lookout_host_filesystem_device_error", **root_labels(samples)) == 0
    assert_promtool_accepts(text)


def root_labels(samples: Samples) -> dict[str, str]:
    for name, labels in samples:
        if name == "lookout_host_filesystem_size_bytes" and dict(labels)["mountpoint"] == "/":
            return dict(labels)
    raise AssertionError("the root filesystem is not reported")


def test_mount_points_with_quotes_backslashes_and_spaces_are_escaped(
    make: Callable[..., Host], fake: FakePsutil, statvfs: FakeStatvfs
) -> None:
    odd = 'C:\\share "q" 1'
    fake.partitions = [ROOT, Partition("//srv/share", f"/mnt/{odd}", "cifs", "rw")]
    statvfs.results[f"/mnt/{odd}"] = statvfs.results["/"]
    samples = scrape(make())
    assert series(samples, "lookout_host_filesystem_size_bytes", "mountpoint") == {
        "/",
        f"/mnt/{odd}",
    }
