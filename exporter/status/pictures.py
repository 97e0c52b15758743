"""What the status pages draw from a history (``exporter/history.py``), as plain data for the
templates: uptime bars, latency sparklines, the target page's latency chart, and how long the
current state has lasted. The templates turn these into HTML and inline SVG, escaping as
always; nothing here makes markup.

An uptime bar on the list pages has one cell per run of buckets with the same state, so a day
of good health is one cell and a page of 10,000 targets stays small; the pages of one target or
heartbeat have one cell per bucket. Cell states: ``empty`` (nothing recorded), ``up``,
``degraded`` (some probes failed, or a heartbeat was late) and ``down``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

from exporter.history import DEGRADED, DOWN, EMPTY, UP, Bucket, History

__all__ = [
    "CHART_HEIGHT",
    "STATE_NAMES",
    "bar_cells",
    "bar_runs",
    "chart",
    "clock_time",
    "span_title",
    "sparkline",
]

STATE_NAMES = {EMPTY: "empty", UP: "up", DEGRADED: "degraded", DOWN: "down"}
CHART_HEIGHT = 120.0


def clock_time(at: float) -> str:
    """``14:03 UTC``, with the date in front when it is not ``now``'s day."""
    return time.strftime("%H:%M UTC", time.gmtime(at))


@functools.lru_cache(maxsize=8192)
def span_title(start: float, end: float) -> str:
    """``2026-12-03 14:00 to 14:15 UTC``: a bucket's or run's time, for its tooltip (the same
    for every target's bucket, so each is formatted once)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    return f"{day} {time.strftime('%H:%M', time.gmtime(start))} to {clock_time(end)}"


def bar_runs(history: History, now: float) -> list[tuple[int, str, str]]:
    """The uptime bar of a list row: (buckets in the run, state name, tooltip) oldest first."""
    width = history.width
    first = (history.index(now) - history.count + 1) * width
    cells = []
    for position, length, state in history.runs(now):
        start = first + position * width
        title = span_title(start, start + length * width)
        if state == EMPTY:
            title += ": no probes"
        elif state == UP:
            title += ": all passed"
        else:
            index = history.index(start)
            probes = failures = 0
            for offset in range(length):
                bucket = history.bucket(index + offset)
                probes += bucket.probes
                failures += bucket.failures
            title += f": {failures} of {probes} failed"
        cells.append((length, STATE_NAMES.get(state, "down"), title))
    return cells


def bar_cells(buckets: Sequence[Bucket], noun: str = "probes") -> list[tuple[str, str]]:
    """One cell per bucket: (state name, tooltip with its counts, reason and latency)."""
    cells = []
    for bucket in buckets:
        title = span_title(bucket.start, bucket.end)
        if bucket.probes:
            title += f": {bucket.probes} {noun}, {bucket.failures} failed"
            if bucket.reason is not None:
                title += f" (last: {bucket.reason.value})"
            if bucket.p50 is not None:
                title += f", p50 {_ms(bucket.p50)}, max {_ms(bucket.max)}"
        elif bucket.state == EMPTY:
            title += f": no {noun}"
        cells.append((STATE_NAMES.get(bucket.state, "down"), title))
    return cells


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# A sparkline is an SVG path drawn one bucket at a time: to the bucket's p50 (its duration code,
# flipped: 255 - code), then one unit to the right; a bucket without latency moves on without
# drawing. One string per code, made once, so a sparkline is a join done in C.
_STEPS = ["m1,0"] + [f"V{255 - code}h1" for code in range(1, 256)]


def sparkline(history: History, now: float) -> dict[str, Any] | None:
    """A latency sparkline of the buckets' p50 as the SVG path ``d`` (x: the bucket, y: the
    p50's duration code flipped, so the view box does the scaling and no number is formatted),
    the view box's ``width``, ``low`` and ``range``. None without any latency recorded.

    Each bucket is a level line at its p50. A page of 10,000 targets draws 10,000 of these."""
    codes = history.codes(now, "p50")
    present = codes.replace(b"\0", b"")
    if not present:
        return None
    low, high = 255 - max(present), 255 - min(present)
    spread = max(high - low, 4)
    return {
        "d": f"M0,{255 - present[0]}" + "".join(map(_STEPS.__getitem__, codes)),
        "width": len(codes),
        "low": low - spread // 8,
        "range": spread + spread // 4,
    }


def chart(buckets: Sequence[Bucket]) -> dict[str, Any] | None:
    """The target page's latency chart: p50 and p95 per bucket as polylines over a linear
    scale from 0 to the highest p95, the buckets with failures as marks at the bottom, and the
    scale's top. None without any latency recorded."""
    top = max((b.p95 for b in buckets if b.p95 is not None), default=None)
    if top is None or top <= 0:
        return None
    scale = CHART_HEIGHT / top

    def line(values: list[float | None]) -> str:
        return " ".join(
            f"{x},{CHART_HEIGHT - v * scale:.1f}" for x, v in enumerate(values) if v is not None
        )

    return {
        "width": max(1, len(buckets) - 1),
        "height": CHART_HEIGHT,
        "top": top,
        "p50": line([b.p50 for b in buckets]),
        "p95": line([b.p95 for b in buckets]),
        "failures": [
            (x, f"{span_title(b.start, b.end)}: {b.failures} of {b.probes} failed")
            for x, b in enumerate(buckets)
            if b.failures
        ],
    }
