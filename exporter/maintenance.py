"""Maintenance windows: when targets and heartbeats are expected to fail, so nobody is paged.

A window is either recurring (``cron`` + ``duration`` in a ``timezone``, daylight saving handled
by cronsim as for heartbeats) or one-off (``start`` and ``end``, ISO 8601 with an offset). Its
scope: ``targets`` (names, ``*`` globs), ``heartbeats`` (the same) and ``labels`` (every given
label must match); a window without any of the three covers everything. Probing and counting
go on during maintenance; what changes is ``lookout_maintenance_active``, which the bundled rules
use to keep quiet.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

from exporter.config_source import ConfigProblem, KeyPath
from exporter.heartbeats.schedule import Cron, cron_from_config
from exporter.units import format_duration, parse_duration

__all__ = ["OneOff", "Recurring", "Window", "build_window", "build_windows", "parse_time"]

# How far before a window could have begun its occurrences are walked from: more than the
# hour that daylight saving repeats.
LOOKBACK = 2 * 3600.0


@dataclass(frozen=True, slots=True)
class Recurring:
    """Open for ``duration`` from every occurrence of ``cron``."""

    cron: Cron
    duration: float

    def active(self, now: float) -> bool:
        """Whether the latest occurrence at or before ``now`` began less than ``duration`` ago.

        The occurrences are walked from ``LOOKBACK`` before the window could have begun, so a
        run in an hour that the clocks repeat counts once, as cron runs it."""
        start = datetime.fromtimestamp(now - self.duration - LOOKBACK, self.cron.timezone)
        latest = None
        for occurrence in CronSim(self.cron.expression, start):
            moment = occurrence.timestamp()
            if moment > now:
                break
            latest = moment
        return latest is not None and now < latest + self.duration

    def describe(self) -> str:
        return f"{self.cron.describe()} for {format_duration(self.duration)}"


@dataclass(frozen=True, slots=True)
class OneOff:
    """Open from ``start`` until ``end`` (seconds since the epoch)."""

    start: float
    end: float

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def describe(self) -> str:
        return f"from {_iso(self.start)} to {_iso(self.end)}"


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    when: Recurring | OneOff
    targets: tuple[str, ...] | None = None
    heartbeats: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    reason: str = ""

    @property
    def everything(self) -> bool:
        return self.targets is None and self.heartbeats is None and not self.labels

    def active(self, now: float) -> bool:
        return self.when.active(now)

    def covers_target(self, name: str, labels: Iterable[tuple[str, str]]) -> bool:
        return self._covers(name, labels, self.targets)

    def covers_heartbeat(self, name: str, labels: Iterable[tuple[str, str]]) -> bool:
        return self._covers(name, labels, self.heartbeats)

    def _covers(
        self, name: str, labels: Iterable[tuple[str, str]], names: tuple[str, ...] | None
    ) -> bool:
        if self.everything:
            return True
        if names is None and not self.labels:
            return False  # the window names only the other sort of thing
        if names is not None and not any(fnmatch.fnmatchcase(name, p) for p in names):
            return False
        return set(self.labels) <= set(labels)

    def describe(self) -> str:
        return self.when.describe()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """An ISO 8601 time with an offset or ``Z`` as seconds since the epoch; ValueError else."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (use ISO 8601, e.g. 2026-12-05T22:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset (add Z or +01:00)")
    return moment.timestamp()


def build_windows(
    items: Iterable[Mapping[str, Any]],
) -> tuple[tuple[Window, ...], list[ConfigProblem]]:
    """The windows of a schema-valid ``maintenance:`` list, and every problem found in it."""
    windows: list[Window] = []
    problems: list[ConfigProblem] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        at: KeyPath = ("maintenance", index)
        if raw["name"] in seen:
            problems.append(ConfigProblem((*at, "name"), f"duplicate window name {raw['name']!r}"))
            continue
        seen.add(raw["name"])
        try:
            windows.append(build_window(raw, at))
        except ConfigProblem as problem:
            problems.append(problem)
    return tuple(windows), problems


def build_window(raw: Mapping[str, Any], at: KeyPath) -> Window:
    """One window from a schema-valid mapping (the config's, or the API's)."""
    return Window(
        raw["name"],
        _when(raw, at),
        targets=tuple(raw["targets"]) if "targets" in raw else None,
        heartbeats=tuple(raw["heartbeats"]) if "heartbeats" in raw else None,
        labels=tuple(sorted(raw.get("labels", {}).items())),
        reason=raw.get("reason", ""),
    )


def _when(raw: Mapping[str, Any], at: KeyPath) -> Recurring | OneOff:
    if "cron" in raw:
        cron = cron_from_config(raw, at)
        if "duration" not in raw:
            raise ConfigProblem(at, "a recurring window needs a duration")
        duration = parse_duration(raw["duration"])
        if duration <= 0:
            raise ConfigProblem((*at, "duration"), "duration must be greater than 0")
        return Recurring(cron, duration)
    times = {}
    for key in ("start", "end"):
        if key not in raw:
            raise ConfigProblem(at, "a window needs either cron and duration, or start and end")
        try:
            times[key] = parse_time(raw[key])
        except ValueError as exc:
            raise ConfigProblem((*at, key), str(exc)) from None
    if times["end"] <= times["start"]:
        raise ConfigProblem((*at, "end"), "end is not after start")
    return OneOff(times["start"], times["end"])
