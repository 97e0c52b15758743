"""Reads the two host facts psutil does not offer: pressure stall totals and file handles.

Both are small text files under procfs (``/proc`` unless the reader is given another root,
as when a container mounts the host's at ``/host/proc``). A missing file means the kernel does
not offer the number: it is None, and the family is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileHandles", "Pressure", "PressureStalls", "read_file_handles", "read_pressure"]


@dataclass(frozen=True, slots=True)
class Pressure:
    """Cumulative stall seconds of one resource: ``some`` task waiting, ``full`` all stalled."""

    some: float
    full: float | None


@dataclass(frozen=True, slots=True)
class PressureStalls:
    """Stall totals of each resource; None where the kernel has no pressure file for it."""

    cpu: Pressure | None
    memory: Pressure | None
    io: Pressure | None


@dataclass(frozen=True, slots=True)
class FileHandles:
    allocated: int
    maximum: int


def read_pressure(procfs: Path) -> PressureStalls:
    """Pressure stall totals of ``cpu``, ``memory`` and ``io`` from ``procfs/pressure``.

    A line reads ``some avg10=0.00 avg60=0.00 avg300=0.00 total=3635908``, total in
    microseconds. Resources whose file is missing (kernels without PSI) are None.
    """
    return PressureStalls(
        cpu=_read_resource(procfs, "cpu"),
        memory=_read_resource(procfs, "memory"),
        io=_read_resource(procfs, "io"),
    )


def _read_resource(procfs: Path, resource: str) -> Pressure | None:
    try:
        text = (procfs / "pressure" / resource).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    totals: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, fields = line.partition(" ")
        for item in fields.split():
            key, _, value = item.partition("=")
            if key == "total":
                totals[kind] = int(value) / 1e6
    if "some" not in totals:
        raise ValueError(f"{procfs}/pressure/{resource}: no 'some ... total=' line")
    return Pressure(some=totals["some"], full=totals.get("full"))


def read_file_handles(procfs: Path) -> FileHandles | None:
    """Allocated and maximum file handles from ``procfs/sys/fs/file-nr`` (None when absent).

    The file holds three numbers: allocated, allocated but unused (always 0 since Linux 2.6),
    maximum.
    """
    try:
        text = (procfs / "sys" / "fs" / "file-nr").read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    fields = text.split()
    if len(fields) != 3:
        raise ValueError(f"{procfs}/sys/fs/file-nr: expected 3 numbers, got {text.strip()!r}")
    return FileHandles(allocated=int(fields[0]), maximum=int(fields[2]))
