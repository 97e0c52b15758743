"""Renders which targets and heartbeats are in a maintenance window now, and which windows are.

Sample of the exposition::

    lookout_maintenance_window_active{window="db-patching"} 1
    lookout_maintenance_active{target="orders-db",kind="tcp",service="orders"} 1
    lookout_maintenance_active{heartbeat="nightly-billing"} 0

A config window is named by its ``name``, one created at run time (``POST
/api/v1/maintenance``) by its id (``m-3f9c02ab``) until it is forgotten, a day after it closed.
Only targets and heartbeats that some window covers have a ``lookout_maintenance_active``
series; a window's state is evaluated once per scrape, and which window covers what only when
the windows or the targets change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from exporter.clock import Clock
from exporter.exposition import header, label_pairs, sample
from exporter.families import Family
from exporter.heartbeats.spec import Heartbeat
from exporter.maintenance import Window
from exporter.stats import ProbeStats

__all__ = ["FAMILIES", "MaintenanceCollector"]

Labels = tuple[tuple[str, str], ...]

WINDOW_ACTIVE = Family(
    "lookout_maintenance_window_active", "gauge", "1 while the maintenance window is open."
)
ACTIVE = Family(
    "lookout_maintenance_active",
    "gauge",
    "1 while a maintenance window covers the target or heartbeat, 0 outside (only those some "
    "window covers).",
)
FAMILIES = (WINDOW_ACTIVE, ACTIVE)


class MaintenanceCollector:
    def __init__(
        self,
        windows: Callable[[], Sequence[Window]],
        stats: Callable[[], Iterable[ProbeStats]],
        heartbeats: Callable[[], Iterable[Heartbeat]],
        location: Callable[[], str | None],
        clock: Clock,
    ) -> None:
        self._windows = windows
        self._stats = stats
        self._heartbeats = heartbeats
        self._location = location
        self._clock = clock
        # Which windows cover what, for the windows it was worked out for.
        self._covering: tuple[Sequence[Window], dict[Any, tuple[int, ...]]] = ((), {})

    def active(self, target: str, labels: Iterable[tuple[str, str]]) -> list[str]:
        """The open windows that cover target ``target`` now (for the status page)."""
        now = self._clock.time()
        return [
            w.name for w in self._windows() if w.covers_target(target, labels) and w.active(now)
        ]

    def active_for_heartbeat(self, heartbeat: str, labels: Iterable[tuple[str, str]]) -> list[str]:
        """The open windows that cover heartbeat ``heartbeat`` now (for the status page)."""
        now = self._clock.time()
        return [
            w.name
            for w in self._windows()
            if w.covers_heartbeat(heartbeat, labels) and w.active(now)
        ]

    def open_windows(self) -> list[Window]:
        """Every window open now, in order (the status page's banner)."""
        now = self._clock.time()
        return [w for w in self._windows() if w.active(now)]

    def _covered(
        self, windows: Sequence[Window], key: tuple[str, str], labels: Labels
    ) -> tuple[int, ...]:
        """The indexes of the windows covering the target (``key[0] == "target"``) or heartbeat
        ``key[1]`` with ``labels``, worked out once per set of windows."""
        known, covering = self._covering
        if known is not windows:
            covering = {}
            self._covering = (windows, covering)
        found = covering.get((key, labels))
        if found is None:
            kind, name = key
            found = covering[(key, labels)] = tuple(
                index
                for index, window in enumerate(windows)
                if (window.covers_target if kind == "target" else window.covers_heartbeat)(
                    name, labels
                )
            )
        return found

    def expose(self) -> Iterable[str]:
        windows = self._windows()
        if not windows:
            return
        now = self._clock.time()
        open_now = [window.active(now) for window in windows]
        yield header(WINDOW_ACTIVE) + "".join(
            sample(WINDOW_ACTIVE, label_pairs([("window", w.name)]), int(is_open))
            for w, is_open in zip(windows, open_now, strict=True)
        )
        location = self._location()
        lines = []
        for stats in self._stats():
            target = stats.target
            covering = self._covered(windows, ("target", target.name), target.labels)
            if covering:
                pairs = [("target", target.name), ("kind", target.kind.name)]
                if location:
                    pairs.append(("location", location))
                pairs.extend(target.labels)
                lines.append(
                    sample(ACTIVE, label_pairs(pairs), int(any(open_now[i] for i in covering)))
                )
        for heartbeat in self._heartbeats():
            covering = self._covered(windows, ("heartbeat", heartbeat.name), heartbeat.labels)
            if covering:
                pairs = [("heartbeat", heartbeat.name), *heartbeat.labels]
                lines.append(
                    sample(ACTIVE, label_pairs(pairs), int(any(open_now[i] for i in covering)))
                )
        if lines:
            yield header(ACTIVE) + "".join(lines)
