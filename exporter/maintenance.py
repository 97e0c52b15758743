"""Maintenance windows: when targets and heartbeats are expected to fail, so nobody is paged.

A window is either recurring (``cron`` + ``duration`` in a ``timezone``, daylight saving handled
by cronsim as for heartbeats) or one-off (``start`` and ``end``, ISO 8601 with an offset). Its
scope: ``targets`` (names, ``*`` globs), ``heartbeats`` (the same) and ``labels`` (every given
label must match); a window without any of the three covers everything. Probing and counting
go on during maintenance; what changes is ``lookout_maintenance_active``, which the bundled rules
use to keep quiet.

Windows created at run time (``POST /api/v1/maintenance``) are ``Scheduled``: one-off, with an
id, an author and the time they were ended early, if they were. ``parse_request`` turns a
request body into one, with an error naming the field for anything wrong; the heartbeat store
keeps them, so a restart keeps them too.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

from exporter.config_source import ConfigProblem, KeyPath, given
from exporter.heartbeats.schedule import Cron, cron_from_config
from exporter.units import format_duration, parse_duration

__all__ = [
    "KEEP_ENDED",
    "MAX_SECONDS",
    "OneOff",
    "Recurring",
    "RequestProblem",
    "Scheduled",
    "Window",
    "build_window",
    "parse_request",
    "parse_time",
]

# How far before a window could have begun its occurrences are walked from: more than the
# hour that daylight saving repeats.
LOOKBACK = 2 * 3600.0
# A run-time window is kept (and listed) this long after it ended, then forgotten.
KEEP_ENDED = 86400.0
# The longest run-time window: a forgotten one must not silence the alerts for good.
MAX_SECONDS = 31 * 86400.0
# Bounds on a request's lists and texts.
MAX_NAMES = 1000
MAX_TEXT = 1000


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
    try:
        return moment.timestamp()
    except OverflowError:
        raise ValueError(f"time {text!r} is out of range") from None


def build_window(raw: Mapping[str, Any], at: KeyPath) -> Window:
    """One window from a schema-valid mapping (the config's, or the API's)."""
    return Window(
        raw["name"],
        _when(raw, at),
        targets=tuple(raw["targets"]) if "targets" in raw else None,
        heartbeats=tuple(raw["heartbeats"]) if "heartbeats" in raw else None,
        labels=tuple(sorted(raw.get("labels", {}).items())),
        **given(raw, "reason"),
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


class RequestProblem(ValueError):
    """A run-time window request that cannot be used: ``field`` (a JSON key path such as
    ``targets[2]``, empty for the whole body) and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A one-off window created at run time; ``ended_at`` is set when it was ended early."""

    id: str
    start: float
    end: float
    created_at: float
    author: str = ""
    reason: str = ""
    targets: tuple[str, ...] | None = None
    heartbeats: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ended_at: float | None = None

    @property
    def until(self) -> float:
        """When the window closes (or closed): its end, or earlier when it was ended early."""
        return self.end if self.ended_at is None else min(self.end, self.ended_at)

    def state(self, now: float) -> str:
        """``scheduled`` (not open yet), ``active`` or ``ended``."""
        if now >= self.until:
            return "ended"
        return "active" if now >= self.start else "scheduled"

    def ended(self, now: float) -> Scheduled:
        """This window ended at ``now`` (unchanged if it had closed already)."""
        if now >= self.until:
            return self
        return replace(self, ended_at=now)

    def window(self) -> Window:
        """The window the collector and the status page evaluate, named by the id."""
        return Window(
            self.id,
            OneOff(self.start, max(self.start, self.until)),
            targets=self.targets,
            heartbeats=self.heartbeats,
            labels=self.labels,
            reason=self.reason,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "created_at": self.created_at,
            "author": self.author,
            "reason": self.reason,
            "targets": None if self.targets is None else list(self.targets),
            "heartbeats": None if self.heartbeats is None else list(self.heartbeats),
            "labels": dict(self.labels),
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scheduled:
        """The window ``to_json`` wrote; ValueError or TypeError for anything else."""
        targets, heartbeats = data["targets"], data["heartbeats"]
        ended_at = data["ended_at"]
        return cls(
            id=str(data["id"]),
            start=float(data["start"]),
            end=float(data["end"]),
            created_at=float(data["created_at"]),
            author=str(data["author"]),
            reason=str(data["reason"]),
            targets=None if targets is None else tuple(str(n) for n in targets),
            heartbeats=None if heartbeats is None else tuple(str(n) for n in heartbeats),
            labels=tuple(sorted((str(k), str(v)) for k, v in dict(data["labels"]).items())),
            ended_at=None if ended_at is None else float(ended_at),
        )


_REQUEST_KEYS = ("targets", "heartbeats", "labels", "start", "end", "duration", "reason", "author")


def parse_request(body: Any, window_id: str, now: float) -> Scheduled:
    """The window a ``POST /api/v1/maintenance`` body asks for; ``RequestProblem`` naming the
    field otherwise. Which names exist is checked by the caller, who knows the config."""
    if not isinstance(body, dict):
        raise RequestProblem("", "the body must be a JSON object")
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise RequestProblem(unknown[0], f"unknown field (use {', '.join(_REQUEST_KEYS)})")
    start = _time(body, "start") if "start" in body else now
    if "end" in body and "duration" in body:
        raise RequestProblem("duration", "give either end or duration, not both")
    if "end" in body:
        end = _time(body, "end")
    elif "duration" in body:
        end = start + _duration(body["duration"])
    else:
        raise RequestProblem("end", "a window needs an end or a duration")
    if end <= start:
        raise RequestProblem("end", "the end is not after the start")
    if end <= now:
        raise RequestProblem("end", "the end is in the past")
    if end - start > MAX_SECONDS:
        raise RequestProblem("end", f"a window may last at most {format_duration(MAX_SECONDS)}")
    return Scheduled(
        id=window_id,
        start=start,
        end=end,
        created_at=now,
        author=_text(body, "author"),
        reason=_text(body, "reason"),
        targets=_names(body, "targets"),
        heartbeats=_names(body, "heartbeats"),
        labels=_labels(body),
    )


def _time(body: Mapping[str, Any], key: str) -> float:
    value = body[key]
    if not isinstance(value, str):
        raise RequestProblem(key, "must be an ISO 8601 time with an offset, as a string")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise RequestProblem(key, str(exc)) from None


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise RequestProblem("duration", 'must be a duration such as "2h" or "90m"')
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise RequestProblem("duration", str(exc)) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise RequestProblem("duration", "must be greater than 0")
    return seconds


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise RequestProblem(key, "must be a string")
    if len(value) > MAX_TEXT:
        raise RequestProblem(key, f"is longer than {MAX_TEXT} characters")
    return value


def _names(body: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, list) or not value:
        raise RequestProblem(key, "must be a non-empty list of names (globs allowed)")
    if len(value) > MAX_NAMES:
        raise RequestProblem(key, f"lists more than {MAX_NAMES} names")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise RequestProblem(f"{key}[{index}]", "must be a non-empty string")
    return tuple(value)


def _labels(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = body.get("labels", {})
    if not isinstance(value, dict):
        raise RequestProblem("labels", "must be an object of label names to values")
    if len(value) > MAX_NAMES:
        raise RequestProblem("labels", f"has more than {MAX_NAMES} labels")
    for name, label in value.items():
        if not isinstance(label, str):
            raise RequestProblem(f"labels.{name}", "must be a string")
    return tuple(sorted(value.items()))
