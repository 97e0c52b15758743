"""The report's small charts: availability and p95 latency per day (per hour for short
periods) of one target, drawn by matplotlib as SVG and embedded as ``data:`` images, so the
page holds no script and no markup from outside its template.

matplotlib is the optional ``report`` extra (``pip install lookout-exporter[report]``);
without it ``available()`` is false and the report has no charts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["availability_chart", "available", "latency_chart"]

WIDTH, HEIGHT = 3.4, 1.3  # inches; at 72 points per inch, about 245 x 94 CSS pixels


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("svg", force=True)
    from matplotlib.figure import Figure

    matplotlib.rcParams["svg.hashsalt"] = "lookout"  # the same data draws the same SVG
    matplotlib.rcParams["svg.fonttype"] = "none"
    figure = Figure(figsize=(WIDTH, HEIGHT))
    axes = figure.add_axes((0.16, 0.2, 0.82, 0.74))
    axes.tick_params(labelsize=7)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _data_uri(figure: Any) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue().encode()).decode()


def _days(points: Sequence[tuple[float, float]]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t, _ in points]


def availability_chart(points: Sequence[tuple[float, float]], sla: float | None) -> str:
    """Bars of availability per day (red below the SLA), the SLA as a dashed line."""
    figure, axes = _figure()
    values = [v * 100 for _, v in points]
    limit = sla * 100 if sla is not None else None
    colors = ["#c0392b" if limit is not None and v < limit else "#2e8b57" for v in values]
    width = (points[1][0] - points[0][0]) / 86400 * 0.8 if len(points) > 1 else 0.8
    axes.bar(_days(points), values, width=width, color=colors, align="edge")
    low = min([*values, limit if limit is not None else 100.0])
    axes.set_ylim(max(0.0, low - (100 - low) * 0.2 - 0.01), 100.0)
    if limit is not None:
        axes.axhline(limit, color="#555555", linestyle="--", linewidth=0.8)
    axes.set_ylabel("%", fontsize=7)
    _date_axis(axes, points)
    return _data_uri(figure)


def latency_chart(points: Sequence[tuple[float, float]]) -> str:
    """p95 latency per day, in milliseconds."""
    figure, axes = _figure()
    axes.plot(_days(points), [v * 1000 for _, v in points], color="#2c6fbb", linewidth=1.2)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("ms", fontsize=7)
    _date_axis(axes, points)
    return _data_uri(figure)


def _date_axis(axes: Any, points: Sequence[tuple[float, float]]) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(maxticks=5)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    formatter.offset_formats = [""] * 6  # the report's title names the period
    axes.xaxis.set_major_formatter(formatter)
