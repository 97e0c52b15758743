"""Writing the Prometheus text format (0.0.4) directly, without per-sample objects.

Building a prometheus_client metric object for every sample costs seconds per scrape with
thousands of targets; these helpers write the same text in a fraction of that. Lookout's own
collectors implement ``TextCollector``; prometheus_client's process and platform collectors are
still rendered by prometheus_client itself (see ``collectors.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

__all__ = [
    "Histogram",
    "TextCollector",
    "format_value",
    "header",
    "label_pairs",
]


class TextCollector(Protocol):
    def expose(self) -> Iterable[str]:
        """Chunks of exposition text: whole families, each ``# HELP``, ``# TYPE``, samples."""
        ...


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """``a="1",b="2"``: the inside of a label set, ready to be put in braces."""
    return ",".join(f'{name}="{escape(value)}"' for name, value in pairs)


def format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(value)


def header(name: str, kind: str, help_text: str) -> str:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


class Histogram:
    """Fixed-bucket histogram state with cumulative rendering, as Prometheus expects."""

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

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` (None before the first observation)."""
        if self.total == 0:
            return None
        rank = q * self.total
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            if running >= rank:
                return bound
        return math.inf

    def lines(self, name: str, labels: str) -> str:
        """Bucket, sum and count lines; ``labels`` is the label_pairs text (may be empty)."""
        sep = "," if labels else ""
        out = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{format_value(bound)}"}} {running}\n')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}\n')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {format_value(self.sum)}\n")
        out.append(f"{name}_count{braces} {self.total}\n")
        return "".join(out)
