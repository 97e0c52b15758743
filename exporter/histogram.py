"""Histogram state kept between scrapes: fixed upper bounds with a count each (the classic
buckets), optionally exponential buckets (Prometheus' native histograms), a sum and a total.

Kept apart from the exposition so that what records observations (``stats``, the scheduler)
depends on nothing that renders them; ``exposition.histogram_lines`` writes the classic buckets
as text, ``protobuf.exposition.histogram`` writes both kinds of bucket in one protobuf message.

Native buckets use schema ``NATIVE_SCHEMA`` = 3: every power of two is split into 8 buckets,
each boundary 2^(1/8) ≈ 1.0905 times the one below, so a bucket is at most 9.05 % wide and a
quantile estimated from it is off by at most that much. Bucket ``i`` holds the values in
(2^((i-1)/8), 2^(i/8)]: bucket 0 ends at 1 s, bucket -80 at 2^-10 s (0.98 ms), bucket 40 at
32 s. Values whose magnitude is at most ``NATIVE_ZERO_THRESHOLD`` (2^-128, the threshold of
Prometheus' Go client) count in the zero bucket: in practice only an exact 0.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["NATIVE_SCHEMA", "NATIVE_ZERO_THRESHOLD", "BucketRun", "Histogram", "native_index"]

NATIVE_SCHEMA = 3
NATIVE_ZERO_THRESHOLD = 2.0**-128
_PER_OCTAVE = 1 << NATIVE_SCHEMA
# Where the buckets of one power of two end, as fractions of math.frexp: 2^(j/8 - 1), j = 0..7.
_FRACTION_BOUNDS = tuple(2.0 ** (j / _PER_OCTAVE - 1) for j in range(_PER_OCTAVE))


def native_index(magnitude: float) -> int:
    """The native bucket of a finite ``magnitude`` above the zero threshold.

    ``math.frexp`` splits it exactly into a fraction in [0.5, 1) and a power of two, so values
    on a power of two (1, 0.5, 2) land in the bucket they end, without rounding from a log.
    """
    fraction, exponent = math.frexp(magnitude)
    return bisect_left(_FRACTION_BOUNDS, fraction) + (exponent - 1) * _PER_OCTAVE


class BucketRun:
    """Counts of consecutive native buckets, the first one at index ``first``.

    Dense, as 8-byte counts in an array: a target's durations fill a few dozen neighbouring
    buckets, which costs less memory here than in a dict. It grows at either end as values
    land outside it.
    """

    __slots__ = ("counts", "first")

    def __init__(self) -> None:
        self.first = 0
        self.counts = array("Q")

    def add(self, index: int) -> None:
        counts = self.counts
        if not counts:
            self.first = index
            counts.append(1)
            return
        position = index - self.first
        if position < 0:
            counts[0:0] = array("Q", [0]) * -position
            self.first = index
            position = 0
        elif position >= len(counts):
            counts.extend(array("Q", [0]) * (position - len(counts) + 1))
        counts[position] += 1


class Histogram:
    """Observations counted in fixed buckets (not cumulative: ``counts[i]`` holds the values in
    ``(bounds[i-1], bounds[i]]``; values above the last bound only count in ``total``), and in
    native buckets too when made with ``native=True``.

    A value that is not finite (NaN, infinities) counts in ``total`` and ``sum`` but in no
    native bucket.
    """

    __slots__ = ("bounds", "counts", "negative", "positive", "sum", "total", "zero")

    def __init__(self, bounds: Sequence[float], *, native: bool = False) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.total = 0
        # Native buckets: None unless native; the negative run is made by the first value
        # below -NATIVE_ZERO_THRESHOLD (durations never are).
        self.zero = 0
        self.positive: BucketRun | None = BucketRun() if native else None
        self.negative: BucketRun | None = None

    @property
    def native(self) -> bool:
        return self.positive is not None

    def observe(self, value: float) -> None:
        self.sum += value
        self.total += 1
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
                break
        positive = self.positive
        if positive is not None:
            self._observe_native(positive, value)

    def _observe_native(self, positive: BucketRun, value: float) -> None:
        magnitude = abs(value)
        if magnitude <= NATIVE_ZERO_THRESHOLD:
            self.zero += 1
        elif math.isfinite(magnitude):
            if value > 0:
                positive.add(native_index(magnitude))
            else:
                if self.negative is None:
                    self.negative = BucketRun()
                self.negative.add(native_index(magnitude))
