"""Heartbeat state: pings are folded into facts, and the status is derived from them when read.

Only facts are recorded (when the last success came, which run is open, whether the latest
finish failed); the status is never stored, because it changes by itself as time passes. At a
moment ``now`` a heartbeat is:

- ``new``: it never pinged;
- ``running``: its latest start has not finished and is within ``max_runtime`` (or ``grace``);
- ``down``: that run overran, or the next expected ping plus ``grace`` has passed;
- ``failed``: the latest finish was a failure (``/fail`` or a non-zero exit code);
- ``late``: the next expected ping is overdue but the grace period has not ended;
- ``up``: otherwise.

Facts are immutable: ``Facts.apply`` returns new facts, so the store can commit them before the
app publishes them, and a reader never sees a half-applied ping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import Any

from exporter.heartbeats.schedule import Cron, Schedule
from exporter.heartbeats.spec import Heartbeat

__all__ = [
    "MAX_OPEN_RUNS",
    "Facts",
    "Ping",
    "Signal",
    "Status",
    "Track",
    "View",
    "derive",
    "instance_limit",
]

# Started runs remembered per heartbeat to measure their duration when they finish; the oldest
# is forgotten first (a run that never finishes must not hold memory forever).
MAX_OPEN_RUNS = 64


def instance_limit(expected: int) -> int:
    """Instance names remembered for a heartbeat expecting ``expected``: the most recent ones."""
    return 4 * expected


class Signal(StrEnum):
    SUCCESS = "success"
    START = "start"
    FAIL = "fail"


class Status(StrEnum):
    NEW = "new"
    UP = "up"
    RUNNING = "running"
    LATE = "late"
    DOWN = "down"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Ping:
    """One received signal; ``duration`` is the job's own measurement, when it sent one."""

    heartbeat: str
    signal: Signal
    at: float
    rid: str | None = None
    instance: str | None = None
    exit_code: int | None = None
    duration: float | None = None
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class Track:
    """What the status depends on, for a heartbeat as a whole and for each of its instances."""

    last_ping_at: float | None = None
    last_success_at: float | None = None
    failed: bool = False
    open_start_at: float | None = None
    open_start_key: tuple[str, str] | None = None

    def apply(self, ping: Ping) -> Track:
        key = (ping.instance or "", ping.rid or "")
        if ping.signal is Signal.START:
            return replace(self, last_ping_at=ping.at, open_start_at=ping.at, open_start_key=key)
        still_open = self.open_start_key is not None and self.open_start_key != key
        return replace(
            self,
            last_ping_at=ping.at,
            last_success_at=ping.at if ping.signal is Signal.SUCCESS else self.last_success_at,
            failed=ping.signal is Signal.FAIL,
            open_start_at=self.open_start_at if still_open else None,
            open_start_key=self.open_start_key if still_open else None,
        )

    def status(self, spec: Heartbeat, now: float) -> tuple[Status, float | None]:
        """The status at ``now`` and the deadline: when it turns down unless a ping comes."""
        if self.last_ping_at is None:
            return Status.NEW, None
        if self.open_start_at is not None:
            ends = self.open_start_at + spec.run_window
            return (Status.RUNNING if now <= ends else Status.DOWN), ends
        if self.last_success_at is None:  # pinged, no run open, never succeeded: only failures
            return Status.FAILED, None
        expected = next_expected(spec.schedule, self.last_success_at)
        deadline = expected + spec.grace
        if self.failed:
            return Status.FAILED, deadline
        if now <= expected:
            return Status.UP, deadline
        return (Status.LATE if now <= deadline else Status.DOWN), deadline


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything kept about one heartbeat; ``seq`` numbers its pings (all signals) so far."""

    track: Track = Track()
    seq: int = 0
    counts: Mapping[Signal, int] = field(default_factory=dict)
    last_start_at: float | None = None
    last_duration: float | None = None
    last_exit_code: int | None = None
    runs: Mapping[tuple[str, str], float] = field(default_factory=dict)
    instances: Mapping[str, Track] = field(default_factory=dict)

    def apply(self, ping: Ping, max_instances: int) -> Facts:
        counts = dict(self.counts)
        counts[ping.signal] = counts.get(ping.signal, 0) + 1
        runs = dict(self.runs)
        key = (ping.instance or "", ping.rid or "")
        instances = self.instances
        if ping.instance is not None:
            instances = dict(self.instances)
            instances[ping.instance] = instances.pop(ping.instance, Track()).apply(ping)
            while len(instances) > max_instances:
                del instances[min(instances, key=lambda i: instances[i].last_ping_at or 0.0)]
        changes: dict[str, Any] = {}
        if ping.signal is Signal.START:
            runs.pop(key, None)
            runs[key] = ping.at
            while len(runs) > MAX_OPEN_RUNS:
                del runs[next(iter(runs))]
            changes["last_start_at"] = ping.at
        else:
            started = runs.pop(key, None)
            duration = ping.duration
            if duration is None and started is not None:
                duration = max(0.0, ping.at - started)
            changes["last_duration"] = duration
            changes["last_exit_code"] = ping.exit_code
        return replace(
            self,
            track=self.track.apply(ping),
            seq=self.seq + 1,
            counts=counts,
            runs=runs,
            instances=instances,
            **changes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "track": _track_json(self.track),
            "seq": self.seq,
            "counts": {str(signal): n for signal, n in self.counts.items()},
            "last_start_at": self.last_start_at,
            "last_duration": self.last_duration,
            "last_exit_code": self.last_exit_code,
            "runs": [[instance, rid, at] for (instance, rid), at in self.runs.items()],
            "instances": {name: _track_json(track) for name, track in self.instances.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Facts:
        return cls(
            track=_track_from_json(data["track"]),
            seq=data["seq"],
            counts={Signal(signal): n for signal, n in data["counts"].items()},
            last_start_at=data["last_start_at"],
            last_duration=data["last_duration"],
            last_exit_code=data["last_exit_code"],
            runs={(instance, rid): at for instance, rid, at in data["runs"]},
            instances={name: _track_from_json(t) for name, t in data["instances"].items()},
        )


@dataclass(frozen=True, slots=True)
class View:
    """A heartbeat as seen at one moment: what the collector and the status page show."""

    spec: Heartbeat
    facts: Facts
    now: float
    status: Status
    deadline: float | None
    instances_alive: int | None

    @property
    def age(self) -> float | None:
        last = self.facts.track.last_success_at
        return None if last is None else max(0.0, self.now - last)


_ALIVE = frozenset({Status.UP, Status.RUNNING, Status.LATE})


def derive(spec: Heartbeat, facts: Facts, now: float) -> View:
    status, deadline = facts.track.status(spec, now)
    alive = None
    if spec.instances is not None:
        alive = sum(1 for track in facts.instances.values() if track.status(spec, now)[0] in _ALIVE)
    return View(spec, facts, now, status, deadline, alive)


def next_expected(schedule: Schedule, last_success_at: float) -> float:
    if isinstance(schedule, Cron):
        return _next_cron(schedule, last_success_at)
    return schedule.next_after(last_success_at)


@lru_cache(maxsize=65536)
def _next_cron(schedule: Cron, last_success_at: float) -> float:
    """Cron evaluation is costly; a scrape asks again until the heartbeat's next success."""
    return schedule.next_after(last_success_at)


def _track_json(track: Track) -> dict[str, Any]:
    return {
        "last_ping_at": track.last_ping_at,
        "last_success_at": track.last_success_at,
        "failed": track.failed,
        "open_start_at": track.open_start_at,
        "open_start_key": list(track.open_start_key) if track.open_start_key else None,
    }


def _track_from_json(data: Mapping[str, Any]) -> Track:
    key = data["open_start_key"]
    return Track(
        last_ping_at=data["last_ping_at"],
        last_success_at=data["last_success_at"],
        failed=data["failed"],
        open_start_at=data["open_start_at"],
        open_start_key=(key[0], key[1]) if key else None,
    )
