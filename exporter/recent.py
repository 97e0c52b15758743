"""A target's recent probes, kept compactly for the status page's history and the API.

Keeping the last 20 ``ProbeResult`` objects of each of 10,000 targets took about 100 MiB, most of
it object headers around a few numbers. Only a target's latest result keeps everything (checks,
certificate chain, versions); its recent probes keep what the history table shows: when, pass
or fail with reason and message, duration, status code and the phases. The numbers of all of
them sit in two flat arrays per target, phases as 32-bit floats (reported to the
microsecond), as many per probe as the target's probes have recorded at most so far (a TCP
probe one, an HTTP probe four or five, up to ``MAX_PHASES``); the rest is one shared tuple per
probe, the same object as long as nothing but the numbers changed.
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


class RecentProbes:
    """The latest ``capacity`` probes of one target in a ring, iterated oldest first."""

    __slots__ = (
        "_count",
        "_failures",
        "_next",
        "_numbers",
        "_shapes",
        "_times",
        "_width",
    )

    def __init__(self, capacity: int) -> None:
        # Per probe: when it finished, then its duration (one array rather than two).
        self._times = array("d", [0.0]) * (2 * capacity)
        self._width = 0  # phases kept per probe: the most any probe had so far
        # Per probe: the status code (NaN without one), then ``_width`` phases.
        self._numbers = array("f", [math.nan]) * capacity
        self._shapes: list[_Shape] = [_UNUSED] * capacity
        self._next = 0  # the slot the next probe takes
        self._count = 0
        self._failures = 0  # failed probes among the kept ones

    def __len__(self) -> int:
        return self._count

    def add(self, result: ProbeResult) -> None:
        names = result.phase_names[:MAX_PHASES]
        seconds = result.phase_seconds[:MAX_PHASES]
        shape: _Shape = (result.reason, result.message, names)
        if result.reason is None:  # passing probes of every target share a few shapes
            shape = _PASSED.setdefault(names, shape)
        elif self._shapes[self._slot(self._count - 1)] == shape:
            shape = self._shapes[self._slot(self._count - 1)]
        if len(seconds) > self._width:
            self._widen(len(seconds))
        stride = 1 + self._width
        numbers = [math.nan] * stride
        if result.status_code is not None:
            numbers[0] = result.status_code
        numbers[1 : 1 + len(seconds)] = seconds
        slot = self._next
        self._times[2 * slot] = result.finished_at
        self._times[2 * slot + 1] = result.duration
        self._numbers[slot * stride : (slot + 1) * stride] = array("f", numbers)
        self._failures += (shape[0] is not None) - (self._shapes[slot][0] is not None)
        self._shapes[slot] = shape
        self._next = (slot + 1) % len(self._shapes)
        self._count = min(self._count + 1, len(self._shapes))

    def _widen(self, width: int) -> None:
        """Room for ``width`` phases per probe, the kept probes' numbers copied over."""
        old, new = 1 + self._width, 1 + width
        numbers = array("f", [math.nan]) * (len(self._shapes) * new)
        for slot in range(len(self._shapes)):
            numbers[slot * new : slot * new + old] = self._numbers[slot * old : (slot + 1) * old]
        self._numbers, self._width = numbers, width

    def _slot(self, age: int) -> int:
        """The slot of the ``age``-th kept probe, 0 being the oldest."""
        return (self._next - self._count + age) % len(self._shapes)

    def __iter__(self) -> Iterator[RecentProbe]:
        for age in range(self._count):
            yield self._probe(self._slot(age))

    def _probe(self, slot: int) -> RecentProbe:
        stride = 1 + self._width
        numbers = self._numbers[slot * stride : (slot + 1) * stride]
        reason, message, names = self._shapes[slot]
        status = numbers[0]
        return RecentProbe(
            finished_at=self._times[2 * slot],
            success=reason is None,
            duration=self._times[2 * slot + 1],
            reason=reason,
            message=message,
            status_code=None if math.isnan(status) else int(status),
            phases=tuple(
                (name, round(seconds, 6)) for name, seconds in zip(names, numbers[1:], strict=False)
            ),
        )

    def durations(self) -> list[float]:
        """The kept probes' durations, in no particular order."""
        return self._times[1 : 2 * self._count : 2].tolist()

    def failures(self) -> int:
        return self._failures

    def latest_failure(self) -> RecentProbe | None:
        if not self._failures:
            return None
        for age in range(self._count - 1, -1, -1):
            slot = self._slot(age)
            if self._shapes[slot][0] is not None:
                return self._probe(slot)
        return None
