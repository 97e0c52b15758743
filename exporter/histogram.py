"""Histogram state kept between scrapes: fixed upper bounds, a count per bucket, a sum, a total.

Kept apart from the exposition so that what records observations (``stats``, the scheduler)
depends on nothing that renders them; ``exposition.histogram_lines`` writes it out.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Histogram"]


class Histogram:
    """Observations counted in fixed buckets (not cumulative: ``counts[i]`` holds the values in
    ``(bounds[i-1], bounds[i]]``; values above the last bound only count in ``total``)."""

    __slots__ = ("bounds", "counts", "sum", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.total += 1
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
                return
