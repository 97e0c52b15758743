"""Writing the Prometheus text format (0.0.4) directly, without per-sample objects.

Building a prometheus_client metric object for every sample costs seconds per scrape with
thousands of targets; these helpers write the same text in a fraction of that. Families are
declared with ``families.Family``; Lookout's own collectors implement ``TextCollector`` and write
their samples with ``header``, ``sample`` and ``histogram_lines``. prometheus_client's process,
platform and GC collectors are still rendered by prometheus_client itself (``runtime``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Protocol

from exporter.families import Family
from exporter.histogram import Histogram

__all__ = [
    "TextCollector",
    "escape",
    "format_value",
    "header",
    "histogram_lines",
    "label_pair",
    "label_pairs",
    "sample",
]


class TextCollector(Protocol):
    def expose(self) -> Iterable[str]:
        """Chunks of exposition text: whole families, each ``# HELP``, ``# TYPE``, samples.

        The slice protocol: an empty chunk is a point where the caller may let other tasks run
        before asking for the next one. A collector that renders much (thousands of targets)
        yields one after every batch of work, and works on a snapshot taken before its first
        chunk, so whatever changes while the caller pauses only shows in the next scrape.
        """
        ...


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """``a="1",b="2"``: the inside of a label set, ready to be put in braces."""
    return ",".join(f'{name}="{escape(value)}"' for name, value in pairs)


@functools.lru_cache(maxsize=4096)
def label_pair(name: str, value: str) -> str:
    """``label_pairs`` of one label whose values repeat across targets and probes (a phase, a
    reason, a TLS version), escaped once per value."""
    return f'{name}="{escape(value)}"'


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(int(value))  # int() turns a bool into 1 or 0
    if math.isfinite(value):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


@functools.cache
def header(family: Family) -> str:
    """The family's ``# HELP`` and ``# TYPE`` lines, written once per family."""
    help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n"


def sample(family: Family, labels: str, value: float) -> str:
    """One sample line; ``labels`` is the label_pairs text (may be empty)."""
    if labels:
        return f"{family.name}{{{labels}}} {format_value(value)}\n"
    return f"{family.name} {format_value(value)}\n"


def histogram_lines(family: Family, labels: str, histogram: Histogram) -> str:
    """Cumulative bucket lines, then sum and count, as Prometheus expects."""
    name = family.name
    bucket = f"{name}_bucket{{{labels},le=" if labels else f"{name}_bucket{{le="
    running = 0
    out = []
    for le, count in zip(_le_values(histogram.bounds), histogram.counts, strict=True):
        running += count
        out.append(f"{bucket}{le}}} {running}\n")
    out.append(f'{bucket}"+Inf"}} {histogram.total}\n')
    braces = f"{{{labels}}}" if labels else ""
    out.append(f"{name}_sum{braces} {format_value(histogram.sum)}\n")
    out.append(f"{name}_count{braces} {histogram.total}\n")
    return "".join(out)


@functools.cache
def _le_values(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The quoted ``le`` label values of ``bounds``, formatted once per set of bounds."""
    return tuple(f'"{format_value(b)}"' for b in bounds)
