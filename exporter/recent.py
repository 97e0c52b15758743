"""A target's recent probes, kept compactly for the status page's history and the API.

Keeping the last 20 ``ProbeResult`` objects of each of 10,000 targets took about 100 MiB, most of
it object headers around a few numbers. Only a target's latest result keeps everything (checks,
certificate chain, versions); its recent probes keep what the history table shows: when, pass
or fail with reason and message, duration, status code and the phases. The numbers of all of
them sit in two flat arrays per target, durations and phases as 32-bit floats (reported to the
microsecond); the rest is one shared tuple per probe, the same object as long as nothing but the
numbers changed.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.reasons import Reason
from exporter.results import ProbeResult

__all__ = ["MAX_PHASES", "RecentProbe", "RecentProbes"]

# Phases kept per probe; no prober records more (SMTP to a host name, with STARTTLS and AUTH:
# resolve, connect, banner, ehlo, starttls, tls, auth).
MAX_PHASES = 7
# Per probe in ``_numbers``: duration, status code (NaN without one), then the phases.
_STRIDE = 2 + MAX_PHASES

# What a probe's numbers do not say: reason, message and the names of its phases in order.
_Shape = tuple[Reason | None, str, tuple[str, ...]]
# The shape of a passing probe by its phase names: a handful for all targets together.
_PASSED: dict[tuple[str, ...], _Shape] = {}
# What a slot holds before its first probe.
_UNUSED: _Shape = (None, "", ())


@dataclass(frozen=True, slots=True)
class RecentProbe:
    """One kept probe, as the history table and ``/api/v1/targets/{name}`` show it."""

    finished_at: float
    success: bool
    duration: float
    reason: Reason | None
    message: str
    status_code: int | None
    phases: tuple[tuple[str, float], ...]


def _seconds(value: float) -> float:
    return round(value, 6)


class RecentProbes:
    """The latest ``capacity`` probes of one target in a ring, iterated oldest first."""

    __slots__ = ("_count", "_finished", "_next", "_numbers", "_shapes")

    def __init__(self, capacity: int) -> None:
        self._finished = array("d", [0.0]) * capacity
        self._numbers = array("f", [math.nan]) * (capacity * _STRIDE)
        self._shapes: list[_Shape] = [_UNUSED] * capacity
        self._next = 0  # the slot the next probe takes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, result: ProbeResult) -> None:
        kept = result.phases[:MAX_PHASES]
        names = tuple(name for name, _ in kept)
        shape: _Shape = (result.reason, result.message, names)
        if result.reason is None:  # passing probes of every target share a few shapes
            shape = _PASSED.setdefault(names, shape)
        elif self._shapes[self._slot(self._count - 1)] == shape:
            shape = self._shapes[self._slot(self._count - 1)]
        numbers = [math.nan] * _STRIDE
        numbers[0] = result.duration
        if result.status_code is not None:
            numbers[1] = result.status_code
        for index, (_name, seconds) in enumerate(kept):
            numbers[2 + index] = seconds
        slot = self._next
        self._finished[slot] = result.finished_at
        self._numbers[slot * _STRIDE : (slot + 1) * _STRIDE] = array("f", numbers)
        self._shapes[slot] = shape
        self._next = (slot + 1) % len(self._shapes)
        self._count = min(self._count + 1, len(self._shapes))

    def _slot(self, age: int) -> int:
        """The slot of the ``age``-th kept probe, 0 being the oldest."""
        return (self._next - self._count + age) % len(self._shapes)

    def __iter__(self) -> Iterator[RecentProbe]:
        for age in range(self._count):
            yield self._probe(self._slot(age))

    def _probe(self, slot: int) -> RecentProbe:
        numbers = self._numbers[slot * _STRIDE : (slot + 1) * _STRIDE]
        reason, message, names = self._shapes[slot]
        status = numbers[1]
        return RecentProbe(
            finished_at=self._finished[slot],
            success=reason is None,
            duration=_seconds(numbers[0]),
            reason=reason,
            message=message,
            status_code=None if math.isnan(status) else int(status),
            phases=tuple(
                (name, _seconds(seconds)) for name, seconds in zip(names, numbers[2:], strict=False)
            ),
        )

    def durations(self) -> list[float]:
        """The kept probes' durations, in no particular order."""
        return [_seconds(d) for d in self._numbers[: self._count * _STRIDE : _STRIDE]]

    def failures(self) -> int:
        return sum(1 for reason, _message, _names in self._shapes if reason is not None)

    def latest_failure(self) -> RecentProbe | None:
        for age in range(self._count - 1, -1, -1):
            slot = self._slot(age)
            if self._shapes[slot][0] is not None:
                return self._probe(slot)
        return None
