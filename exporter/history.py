"""A target's or heartbeat's history over the last day, in fixed-size buckets that fit in memory.

The status page draws uptime bars and latency charts from it; the recent probes
(``recent.py``) keep the latest probes in full beside it. Time is cut into buckets of ``width``
seconds aligned to the epoch (with 15 minutes: :00, :15, :30, :45 UTC), and ``count`` of them
are kept in a ring, so memory does not grow with the probes or with time. Per bucket:

- the probes (or pings) and how many of them failed, as 16-bit counts (saturating at 65,535);
- the state of the bucket, one byte: ``EMPTY`` (nothing recorded), ``UP`` (nothing failed),
  ``DEGRADED`` (some failed), ``DOWN`` (all failed), or a heartbeat's worst status rank;
- the median (p50), the 95th percentile and the maximum of the durations, one byte each on a
  logarithmic scale from 0.1 ms to 100 s (each code stands for a 5.6 % wide range, so a value
  read back is within 2.8 % of the one recorded);
- a mark, one byte: for a target the reason of the bucket's latest failure (its index in
  ``Reason``, plus one).

That is 9 bytes per bucket, 864 bytes for a day of 15-minute buckets, in two flat arrays per
history (counts, then the bytes), plus the durations of the bucket still open (one byte each,
at most ``OPEN_SAMPLES``, the latest ones): its p50 and p95 are exact quantiles of those when
the bucket closes, which is when the next probe lands in a later bucket. Nothing here reads the
clock: every call says what time it is about.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.reasons import Reason

__all__ = [
    "DEGRADED",
    "DOWN",
    "EMPTY",
    "OPEN_SAMPLES",
    "UP",
    "Bucket",
    "History",
    "decode",
    "encode",
    "quantile_code",
    "reason_code",
]

EMPTY, UP, DEGRADED, DOWN = 0, 1, 2, 3
# Durations of the open bucket kept for its quantiles; later ones replace the oldest.
OPEN_SAMPLES = 1024
# The duration scale: code 1 is LOWEST seconds, code 255 HIGHEST; 0 is "no value".
LOWEST = 1e-4
HIGHEST = 100.0
_STEP = math.log(HIGHEST / LOWEST) / 254
# Per bucket in ``_bytes``: state, mark, p50, p95, max.
_STRIDE = 5
_STATE, _MARK, _P50, _P95, _MAX = range(_STRIDE)
_FIELDS = {"state": _STATE, "p50": _P50, "p95": _P95, "max": _MAX}
_COUNT_LIMIT = 65535
_REASONS = tuple(Reason)
_REASON_CODES = {reason: index + 1 for index, reason in enumerate(_REASONS)}
# A run of buckets with the same state, found in C over the bytes of states.
_RUN = re.compile(rb"(.)\1*", re.DOTALL)


def encode(seconds: float) -> int:
    """The one-byte code of a duration (1 to 255), clamped to the scale's ends."""
    if not seconds > LOWEST:  # NaN too
        return 1
    if seconds >= HIGHEST:
        return 255
    return min(255, 1 + round(math.log(seconds / LOWEST) / _STEP))


def decode(code: int) -> float | None:
    """The duration a code stands for (the geometric middle of its range); None for 0."""
    if code == 0:
        return None
    return LOWEST * math.exp((code - 1) * _STEP)


def quantile_code(codes: bytes | bytearray, q: float) -> int:
    """The ``q`` quantile of duration codes by the nearest rank (0 when there are none)."""
    if not codes:
        return 0
    ordered = sorted(codes)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket as read back: ``start`` and ``end`` in seconds since the epoch."""

    start: float
    end: float
    probes: int
    failures: int
    state: int
    p50: float | None
    p95: float | None
    max: float | None
    reason: Reason | None


class History:
    """``count`` buckets of ``width`` seconds; the newest is the one holding the latest record."""

    __slots__ = ("_bytes", "_counts", "_head", "_open", "count", "width")

    def __init__(self, width: float, count: int) -> None:
        self.width = width
        self.count = count
        self._counts = array("H", [0]) * (2 * count)  # probes, failures
        self._bytes = bytearray(_STRIDE * count)
        self._head = -1  # the index (since the epoch) of the newest bucket written, -1 for none
        self._open = bytearray()  # duration codes recorded in the head bucket

    def index(self, at: float) -> int:
        """The index of the bucket holding time ``at``."""
        return int(at // self.width)

    def _advance(self, index: int) -> int:
        """The slot of bucket ``index``, clearing the buckets skipped since the head; a record
        older than the kept buckets returns -1 (and one older than the head but still kept
        lands in its own bucket)."""
        head = self._head
        if index <= head:
            return index % self.count if index > head - self.count else -1
        self._close()
        for skipped in range(max(head + 1, index - self.count + 1), index + 1):
            slot = skipped % self.count
            self._counts[2 * slot] = self._counts[2 * slot + 1] = 0
            self._bytes[_STRIDE * slot : _STRIDE * (slot + 1)] = bytes(_STRIDE)
        self._head = index
        return index % self.count

    def _close(self) -> None:
        """Writes the head bucket's quantiles from its open durations and forgets those."""
        if self._head < 0 or not self._open:
            return
        base = _STRIDE * (self._head % self.count)
        self._bytes[base + _P50] = quantile_code(self._open, 0.5)
        self._bytes[base + _P95] = quantile_code(self._open, 0.95)
        self._open = bytearray()

    def add(
        self,
        at: float,
        duration: float | None,
        failed: bool,
        mark: int = 0,
        keep_worst: bool = False,
    ) -> None:
        """One probe (or ping) finished at ``at``; ``mark`` replaces the bucket's mark when
        it failed (targets: ``reason_code``). The bucket's state follows its counts (``UP``,
        ``DEGRADED``, ``DOWN``), or with ``keep_worst`` only ever gets worse (heartbeats,
        whose ``observe`` also raises it)."""
        index = self.index(at)
        slot = self._advance(index)
        if slot < 0:
            return
        probes = min(_COUNT_LIMIT, self._counts[2 * slot] + 1)
        failures = min(_COUNT_LIMIT, self._counts[2 * slot + 1] + failed)
        self._counts[2 * slot] = probes
        self._counts[2 * slot + 1] = failures
        base = _STRIDE * slot
        if failed:
            self._bytes[base + _MARK] = mark
        state = UP if failures == 0 else DOWN if failures == probes else DEGRADED
        if not keep_worst or state > self._bytes[base + _STATE]:
            self._bytes[base + _STATE] = state
        if duration is not None:
            code = encode(duration)
            if code > self._bytes[base + _MAX]:
                self._bytes[base + _MAX] = code
            if index == self._head:
                if len(self._open) >= OPEN_SAMPLES:
                    del self._open[0]
                self._open.append(code)

    def observe(self, at: float, state: int) -> None:
        """Raises bucket ``at``'s state to ``state`` (``UP``, ``DEGRADED`` or ``DOWN``) if that
        is worse: a heartbeat's status, observed whenever it is derived; records no probe."""
        slot = self._advance(self.index(at))
        if slot >= 0 and state > self._bytes[_STRIDE * slot + _STATE]:
            self._bytes[_STRIDE * slot + _STATE] = state

    def states(self, now: float) -> bytes:
        """The state of each of the ``count`` buckets ending with the one holding ``now``, oldest
        first, one byte each (``EMPTY`` where nothing was recorded)."""
        return self.codes(now, "state")

    def codes(self, now: float, field: str) -> bytes:
        """One byte per bucket, as ``states``: ``state``, ``p50``, ``p95`` or ``max`` (duration
        codes, 0 where none)."""
        ring = bytes(self._bytes[_FIELDS[field] :: _STRIDE])
        head = self._head
        count = self.count
        if head < 0:
            return bytes(count)
        cut = head % count + 1
        if self._open and field in ("p50", "p95"):
            quantile = quantile_code(self._open, 0.5 if field == "p50" else 0.95)
            ring = ring[: cut - 1] + bytes((quantile,)) + ring[cut:]
        ordered = ring[cut:] + ring[:cut]  # ends with the head bucket
        gap = self.index(now) - head
        if gap <= 0:
            return ordered
        if gap >= count:
            return bytes(count)
        return ordered[gap:] + bytes(gap)

    def runs(self, now: float) -> Iterator[tuple[int, int, int]]:
        """Runs of buckets with the same state, oldest first: (first position, length, state),
        positions counted in ``states(now)``."""
        for match in _RUN.finditer(self.states(now)):
            yield match.start(), match.end() - match.start(), match.group()[0]

    def bucket(self, index: int) -> Bucket:
        """Bucket ``index`` (since the epoch); empty when it is not kept."""
        start = index * self.width
        head = self._head
        if index > head or index <= head - self.count or head < 0:
            return Bucket(start, start + self.width, 0, 0, EMPTY, None, None, None, None)
        slot = index % self.count
        base = _STRIDE * slot
        state, mark, p50, p95, top = self._bytes[base : base + _STRIDE]
        if index == head and self._open:
            p50 = quantile_code(self._open, 0.5)
            p95 = quantile_code(self._open, 0.95)
        return Bucket(
            start=start,
            end=start + self.width,
            probes=self._counts[2 * slot],
            failures=self._counts[2 * slot + 1],
            state=state,
            p50=decode(p50),
            p95=decode(p95),
            max=decode(top),
            reason=_REASONS[mark - 1] if 0 < mark <= len(_REASONS) else None,
        )

    def buckets(self, now: float) -> list[Bucket]:
        """The ``count`` buckets ending with the one holding ``now``, oldest first."""
        last = self.index(now)
        return [self.bucket(index) for index in range(last - self.count + 1, last + 1)]

    def parts(self) -> tuple[object, ...]:
        """The objects holding the buckets, for measuring their memory."""
        return (self._counts, self._bytes, self._open)

    def resized(self, width: float, count: int) -> History:
        """This history with another bucket width or count: the same when both are equal, else
        an empty one (buckets of another width cannot be carried over)."""
        if width == self.width and count == self.count:
            return self
        return History(width, count)


def reason_code(reason: Reason | None) -> int:
    """A failure reason as a bucket's mark."""
    return 0 if reason is None else _REASON_CODES[reason]
