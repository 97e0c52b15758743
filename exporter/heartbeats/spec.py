"""The typed ``heartbeats:`` config section: one frozen ``Heartbeat`` per declared heartbeat.

Only declared heartbeats exist: the ping routes answer 404 for any other name, so a typo in a
job's URL is an error the job sees instead of a new, silently unwatched heartbeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath, Source, given
from exporter.heartbeats.schedule import Period, Schedule, cron_from_config
from exporter.targets import RESERVED_LABELS
from exporter.units import parse_duration

__all__ = ["Heartbeat", "PostgresStorage", "build_heartbeat", "build_storage"]

# Labels the heartbeat series set themselves, on top of those every Lookout series reserves.
_RESERVED = RESERVED_LABELS | {"status", "signal"}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str
    schedule: Schedule
    grace: float
    max_runtime: float | None = None
    # A success finishing sooner than this after its start counts as a failure.
    min_runtime: float | None = None
    # Successes expected within each period (``period`` schedules only).
    pings_per_period: int = 1
    token: str | None = field(default=None, repr=False)
    instances: int | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def run_window(self) -> float:
        """How long a started run may take before the heartbeat is down."""
        return self.max_runtime if self.max_runtime is not None else self.grace


@dataclass(frozen=True, slots=True)
class PostgresStorage:
    """The ``storage:`` key: a libpq URL (TLS and other options as its query parameters), and
    the password read from ``password_file`` when one is given."""

    url: str = field(repr=False)
    password: str | None = field(default=None, repr=False)


def build_storage(raw: Any, source: Source) -> PostgresStorage | None:
    """The schema-valid ``storage:`` value, its password file read."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return PostgresStorage(raw)
    password = None
    if "password_file" in raw:
        password = source.read_text(raw["password_file"], ("storage", "password_file"))
    return PostgresStorage(raw["url"], password)


def build_heartbeat(raw: Mapping[str, Any], at: KeyPath, source: Source) -> Heartbeat:
    """One heartbeat from its schema-valid mapping at ``at``; raises ``ConfigProblem``."""
    for name in raw.get("labels", {}):
        if name in _RESERVED or name.startswith("__"):
            raise ConfigProblem((*at, "labels", name), f"label {name!r} is reserved")
    token: str | None = raw.get("token")
    if "token_file" in raw:
        token = source.read_text(raw["token_file"], (*at, "token_file"))
    if token is not None and not token.strip():
        key = "token_file" if "token_file" in raw else "token"
        raise ConfigProblem((*at, key), "the token is empty")
    max_runtime = _positive(raw, "max_runtime", at) if "max_runtime" in raw else None
    min_runtime = _positive(raw, "min_runtime", at) if "min_runtime" in raw else None
    if min_runtime is not None and max_runtime is not None and min_runtime >= max_runtime:
        raise ConfigProblem((*at, "min_runtime"), "min_runtime must be less than max_runtime")
    if "pings_per_period" in raw and "period" not in raw:
        raise ConfigProblem((*at, "pings_per_period"), "pings_per_period needs a 'period'")
    return Heartbeat(
        name=raw["name"],
        schedule=_schedule(raw, at),
        grace=parse_duration(raw["grace"]),
        max_runtime=max_runtime,
        min_runtime=min_runtime,
        token=token,
        labels=tuple(sorted(raw.get("labels", {}).items())),
        **given(raw, "pings_per_period", "instances"),
    )


def _schedule(raw: Mapping[str, Any], at: KeyPath) -> Schedule:
    if "period" in raw:
        return Period(_positive(raw, "period", at))
    if "cron" not in raw:
        raise ConfigProblem(at, "a heartbeat needs a schedule: set 'period' or 'cron'")
    return cron_from_config(raw, at)


def _positive(raw: Mapping[str, Any], key: str, at: KeyPath) -> float:
    seconds = parse_duration(raw[key])
    if seconds <= 0:
        raise ConfigProblem((*at, key), f"{key} must be greater than 0")
    return seconds
