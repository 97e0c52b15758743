"""When the next ping of a heartbeat is due: every ``period``, or on a ``cron`` expression.

A schedule answers one question, ``next_after(t)``: the first moment after ``t`` at which the job
is expected to report. Cron expressions are evaluated in the heartbeat's time zone by cronsim,
which handles daylight saving changes the way Debian's cron does (a run in a skipped hour moves
to the first minute after it; a run in a repeated hour happens once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from exporter.config_source import ConfigProblem, KeyPath
from exporter.units import format_duration

__all__ = ["Cron", "Period", "Schedule", "cron_from_config", "parse_cron"]


@dataclass(frozen=True, slots=True)
class Period:
    seconds: float

    def next_after(self, t: float) -> float:
        return t + self.seconds

    def describe(self) -> str:
        return f"every {format_duration(self.seconds)}"


@dataclass(frozen=True, slots=True)
class Cron:
    expression: str
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def next_after(self, t: float) -> float:
        start = datetime.fromtimestamp(t, self.timezone)
        return next(CronSim(self.expression, start)).timestamp()

    def describe(self) -> str:
        return f"cron {self.expression!r} in {self.timezone.key}"


Schedule = Period | Cron


def parse_cron(expression: str, timezone: ZoneInfo) -> Cron:
    """A validated ``Cron``; raises ValueError naming what is wrong with the expression."""
    if len(expression.split()) != 5:
        raise ValueError(
            f"cron expression {expression!r} must have 5 fields (minute hour day month weekday)"
        )
    try:
        CronSim(expression, datetime.now(timezone))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return Cron(expression, timezone)


def cron_from_config(raw: Mapping[str, Any], at: KeyPath) -> Cron:
    """The ``cron`` and ``timezone`` (default UTC) keys of the config mapping at ``at``."""
    zone_name = raw.get("timezone", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ConfigProblem((*at, "timezone"), f"unknown time zone {zone_name!r}") from None
    try:
        return parse_cron(raw["cron"], zone)
    except ValueError as exc:
        raise ConfigProblem((*at, "cron"), str(exc)) from None
