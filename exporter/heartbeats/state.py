"""Heartbeat state: pings are folded into facts, and the status is derived from them when read.

Only facts are recorded (when the latest successes came, which run is open, whether the latest
finish failed); the status is never stored, because it changes by itself as time passes. At a
moment ``now`` a heartbeat is:

- ``new``: it never pinged, and its first expected ping (one period or the next cron match
  after it was declared) is not overdue;
- ``running``: its latest start has not finished and is within ``max_runtime`` (or ``grace``);
- ``down``: that run overran, or the next expected ping plus ``grace`` has passed (also for a
  heartbeat that never pinged, counted from when it was declared);
- ``failed``: the latest finish was a failure (``/fail``, a non-zero exit code, or a run shorter
  than ``min_runtime``);
- ``late``: the next expected ping is overdue but the grace period has not ended;
- ``up``: otherwise.

The next ping is expected one period (or the next cron match) after the latest success; a
heartbeat expecting ``pings_per_period: N`` counts from the oldest of its latest N successes,
so it turns late as soon as fewer than N successes fall within the last period. A heartbeat
that pinged but never succeeded expects its success one period after its first ping; one that
never pinged expects it one period after it was declared (``Facts.declared_at``, which the store
writes when a config first declares the heartbeat), so a job that never runs is noticed too.

A start only extends the deadline while the heartbeat is still within it: a run that starts
after the deadline passed leaves the heartbeat ``down`` (its deadline where it was) until a run
succeeds, so a job that fails on every run stays down instead of looking healthy while it runs.
Whether the latest *finished* run failed (``last_run_failed``) is kept apart from the status,
so an open run never hides it.

Facts are immutable: ``Facts.apply`` returns new facts, so the store can commit them before the
app publishes them, and a reader never sees a half-applied ping. The tracks of a heartbeat's
instances live beside its facts in an ``Instances`` book (one entry per instance name, most
recently pinged last), so a ping costs the same whatever the number of instances.

Incidents: one is open while the status is ``late``, ``down`` or ``failed``; it begins when the
heartbeat turned so (the next expected ping passed, a run overran its window, or a failure
arrived) and ends with the next success ping. A ping settles the incident it finds into the
facts (``incident_start``, and on success the closed ``incidents`` and ``downtime``), so they
are as durable as the pings; between pings an incident that time alone opened is derived when
read, like the status.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import Any

from exporter.heartbeats.schedule import Cron, Schedule
from exporter.heartbeats.spec import Heartbeat

__all__ = [
    "DURATION_BUCKETS",
    "MAX_OPEN_RUNS",
    "Facts",
    "Instances",
    "Ping",
    "Signal",
    "Status",
    "TooManyInstances",
    "Track",
    "View",
    "derive",
    "instance_limit",
    "judge",
]

# Started runs remembered per heartbeat to measure their duration when they finish; the oldest
# is forgotten first (a run that never finishes must not hold memory forever).
MAX_OPEN_RUNS = 64
# Upper bounds (seconds) of the buckets of lookout_heartbeat_duration_seconds: one second to a
# day, for jobs from quick scripts to nightly batches.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip


def instance_limit(expected: int) -> int:
    """Instance names remembered for a heartbeat expecting ``expected``."""
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


ALIVE = frozenset({Status.UP, Status.RUNNING, Status.LATE})
# The statuses during which a heartbeat has an open incident.
FAILING = frozenset({Status.LATE, Status.DOWN, Status.FAILED})


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


def judge(ping: Ping, facts: Facts, spec: Heartbeat) -> Ping:
    """``ping`` as it is recorded: a finish gets the duration of its run (its own, or the time
    since the paired start), and a success that ran shorter than ``min_runtime`` is a failure."""
    if ping.signal is Signal.START:
        return ping
    duration = ping.duration
    if duration is None:
        started = facts.runs.get((ping.instance or "", ping.rid or ""))
        if started is not None:
            duration = max(0.0, ping.at - started)
    signal = ping.signal
    too_short = spec.min_runtime is not None and duration is not None
    if signal is Signal.SUCCESS and too_short and duration < spec.min_runtime:  # type: ignore[operator]
        signal = Signal.FAIL
    if signal is ping.signal and duration is ping.duration:
        return ping  # most pings: nothing to settle
    return replace(ping, signal=signal, duration=duration)


@dataclass(frozen=True, slots=True)
class Track:
    """What the status depends on, for a heartbeat as a whole and for each of its instances."""

    last_ping_at: float | None = None
    # The latest success times, oldest first: as many as the heartbeat expects per period.
    successes: tuple[float, ...] = ()
    failed: bool = False
    open_start_at: float | None = None
    open_start_key: tuple[str, str] | None = None
    # The first ping ever: a heartbeat that never succeeded expects its success from here.
    first_ping_at: float | None = None

    @property
    def last_success_at(self) -> float | None:
        return self.successes[-1] if self.successes else None

    @property
    def last_run_failed(self) -> bool | None:
        """Whether the latest finished run failed; None before any run finished."""
        if self.failed:
            return True
        return False if self.successes else None

    def apply(self, ping: Ping, spec: Heartbeat) -> Track:
        # Built field by field rather than with dataclasses.replace: this runs for every ping.
        key = (ping.instance or "", ping.rid or "")
        first = self.first_ping_at if self.first_ping_at is not None else ping.at
        if ping.signal is Signal.START:
            return Track(
                last_ping_at=ping.at,
                successes=self.successes,
                failed=self.failed,
                open_start_at=ping.at,
                open_start_key=key,
                first_ping_at=first,
            )
        still_open = self.open_start_key is not None and self.open_start_key != key
        successes = self.successes
        if ping.signal is Signal.SUCCESS:
            successes = (*successes, ping.at)[-spec.pings_per_period :]
        return Track(
            last_ping_at=ping.at,
            successes=successes,
            failed=ping.signal is Signal.FAIL,
            open_start_at=self.open_start_at if still_open else None,
            open_start_key=self.open_start_key if still_open else None,
            first_ping_at=first,
        )

    def status(
        self, spec: Heartbeat, now: float, declared_at: float | None = None
    ) -> tuple[Status, float | None]:
        """The status at ``now`` and the deadline: when it turns down unless a ping comes.
        Before any ping the deadline counts from ``declared_at`` (none when it is unknown)."""
        if self.last_ping_at is None:
            if declared_at is None:
                return Status.NEW, None
            expected = next_expected(spec.schedule, declared_at)
            deadline = expected + spec.grace
            if now <= expected:
                return Status.NEW, deadline
            return (Status.LATE if now <= deadline else Status.DOWN), deadline
        # Counted from the oldest of the latest successes, or from the first ping when none.
        since = self.successes[0] if self.successes else self.first_ping_at or self.last_ping_at
        expected = next_expected(spec.schedule, since)
        deadline = expected + spec.grace
        if self.open_start_at is not None:
            if self.open_start_at > deadline:  # started when already down: stays down
                return Status.DOWN, deadline
            ends = self.open_start_at + spec.run_window
            return (Status.RUNNING if now <= ends else Status.DOWN), ends
        if self.failed or not self.successes:  # no run open, never succeeded: only failures
            return Status.FAILED, deadline
        if now <= expected:
            return Status.UP, deadline
        return (Status.LATE if now <= deadline else Status.DOWN), deadline

    def failing_since(
        self, spec: Heartbeat, now: float, declared_at: float | None = None
    ) -> float | None:
        """When the failing status at ``now`` began as time alone tells it (None while not
        failing); never before the latest ping, which settled what came before it."""
        status, _ = self.status(spec, now, declared_at)
        if status not in FAILING:
            return None
        if self.last_ping_at is None:  # never pinged: late since its first expected ping
            assert declared_at is not None  # without it, a heartbeat that never pinged is new
            return next_expected(spec.schedule, declared_at)
        if self.open_start_at is not None:  # the run overran its window
            began = self.open_start_at + spec.run_window
        elif self.successes and not self.failed:  # the next expected ping is overdue
            began = next_expected(spec.schedule, self.successes[0])
        else:  # a failure, settled by its ping (or read from facts older than incidents)
            began = self.last_ping_at
        return max(began, self.last_ping_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "last_ping_at": self.last_ping_at,
            "successes": list(self.successes),
            "failed": self.failed,
            "open_start_at": self.open_start_at,
            "open_start_key": list(self.open_start_key) if self.open_start_key else None,
            "first_ping_at": self.first_ping_at,
        }

    @classmethod
    def from_json(cls, data: Any, at: str = "track") -> Track:
        """The track in ``data``; ValueError naming the first field that is not as written."""
        data = _mapping(data, at)
        if "successes" in data:
            successes = tuple(_number(s, f"{at}.successes") for s in _list(data, "successes", at))
        else:  # written before pings_per_period: only the latest success
            last = _optional_number(data, "last_success_at", at)
            successes = () if last is None else (last,)
        key = data.get("open_start_key")
        if key is not None and not (
            isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)
        ):
            raise ValueError(f"{at}.open_start_key: expected two strings, got {key!r}")
        failed = data.get("failed")
        if not isinstance(failed, bool):
            raise ValueError(f"{at}.failed: expected true or false, got {failed!r}")
        return cls(
            last_ping_at=_optional_number(data, "last_ping_at", at),
            successes=successes,
            failed=failed,
            open_start_at=_optional_number(data, "open_start_at", at),
            open_start_key=(key[0], key[1]) if key else None,
            first_ping_at=_optional_number(data, "first_ping_at", at),
        )


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything kept about one heartbeat; ``seq`` numbers its pings (all signals) so far.

    ``durations`` counts finished runs per bucket of ``DURATION_BUCKETS`` (the last one above
    them all), ``duration_sum`` adds their seconds: the ``lookout_heartbeat_duration_seconds``
    histogram.

    ``incidents`` and ``downtime`` count the closed incidents and their seconds;
    ``incident_start`` is the start of the open incident a ping has settled (a late heartbeat's
    incident is derived by ``incident_at`` until a ping comes).

    ``declared_at`` is when a config first declared the heartbeat to its store (None in facts
    written before it was kept): the first deadline of a heartbeat that never pinged counts
    from it.
    """

    track: Track = Track()
    seq: int = 0
    counts: Mapping[Signal, int] = field(default_factory=dict)
    last_start_at: float | None = None
    last_duration: float | None = None
    last_exit_code: int | None = None
    runs: Mapping[tuple[str, str], float] = field(default_factory=dict)
    durations: tuple[int, ...] = (0,) * (len(DURATION_BUCKETS) + 1)
    duration_sum: float = 0.0
    incidents: int = 0
    downtime: float = 0.0
    incident_start: float | None = None
    declared_at: float | None = None

    def status(self, spec: Heartbeat, now: float) -> tuple[Status, float | None]:
        """The heartbeat's status at ``now`` and its deadline (see ``Track.status``)."""
        return self.track.status(spec, now, self.declared_at)

    def incident_at(self, spec: Heartbeat, now: float) -> float | None:
        """The start of the incident open at ``now``, or None."""
        if self.incident_start is not None:
            return self.incident_start
        return self.track.failing_since(spec, now, self.declared_at)

    def apply(self, ping: Ping, spec: Heartbeat) -> Facts:
        """The facts after ``ping``, which ``judge`` has settled."""
        # Built field by field rather than with dataclasses.replace: this runs for every ping.
        incidents, downtime = self.incidents, self.downtime
        began = self.incident_at(spec, ping.at)
        if ping.signal is Signal.SUCCESS:
            if began is not None:
                incidents += 1
                downtime += max(0.0, ping.at - began)
            incident_start = None
        elif ping.signal is Signal.FAIL:
            incident_start = ping.at if began is None else began
        else:  # a start neither opens nor closes one: a late job that starts is still late
            incident_start = began
        counts = dict(self.counts)
        counts[ping.signal] = counts.get(ping.signal, 0) + 1
        runs = dict(self.runs)
        key = (ping.instance or "", ping.rid or "")
        last_start_at, last_duration, last_exit_code = (
            self.last_start_at,
            self.last_duration,
            self.last_exit_code,
        )
        durations, duration_sum = self.durations, self.duration_sum
        if ping.signal is Signal.START:
            runs.pop(key, None)
            runs[key] = ping.at
            while len(runs) > MAX_OPEN_RUNS:
                del runs[next(iter(runs))]
            last_start_at = ping.at
        else:
            runs.pop(key, None)
            last_duration = ping.duration
            last_exit_code = ping.exit_code
            if ping.duration is not None:
                counted = list(durations)
                counted[bisect.bisect_left(DURATION_BUCKETS, ping.duration)] += 1
                durations = tuple(counted)
                duration_sum += ping.duration
        return Facts(
            track=self.track.apply(ping, spec),
            seq=self.seq + 1,
            counts=counts,
            last_start_at=last_start_at,
            last_duration=last_duration,
            last_exit_code=last_exit_code,
            runs=runs,
            durations=durations,
            duration_sum=duration_sum,
            incidents=incidents,
            downtime=downtime,
            incident_start=incident_start,
            declared_at=self.declared_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "track": self.track.to_json(),
            "seq": self.seq,
            "counts": {str(signal): n for signal, n in self.counts.items()},
            "last_start_at": self.last_start_at,
            "last_duration": self.last_duration,
            "last_exit_code": self.last_exit_code,
            "runs": [[instance, rid, at] for (instance, rid), at in self.runs.items()],
            "durations": list(self.durations),
            "duration_sum": self.duration_sum,
            "incidents": self.incidents,
            "downtime": self.downtime,
            "incident_start": self.incident_start,
            "declared_at": self.declared_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> Facts:
        """The facts in ``data``; ValueError naming the first field that is not as written, so a
        damaged row is refused when it is read instead of failing a later ping."""
        data = _mapping(data, "facts")
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"facts.seq: expected a count, got {seq!r}")
        counts: dict[Signal, int] = {}
        for name, n in _mapping(data.get("counts"), "facts.counts").items():
            if name not in Signal.__members__.values() or not _is_count(n):
                raise ValueError(f"facts.counts: unexpected {name!r}: {n!r}")
            counts[Signal(name)] = n
        runs: dict[tuple[str, str], float] = {}
        for run in _list(data, "runs", "facts"):
            if not (
                isinstance(run, list) and len(run) == 3 and all(isinstance(r, str) for r in run[:2])
            ):
                raise ValueError(f"facts.runs: expected [instance, rid, time], got {run!r}")
            runs[(run[0], run[1])] = _number(run[2], "facts.runs")
        durations = tuple(data.get("durations", (0,) * (len(DURATION_BUCKETS) + 1)))
        if len(durations) != len(DURATION_BUCKETS) + 1 or not all(map(_is_count, durations)):
            raise ValueError(f"facts.durations: expected {len(DURATION_BUCKETS) + 1} counts")
        incidents = data.get("incidents", 0)  # absent in facts written before incidents
        if not _is_count(incidents):
            raise ValueError(f"facts.incidents: expected a count, got {incidents!r}")
        exit_code = data.get("last_exit_code")
        if exit_code is not None and not _is_count(exit_code):
            raise ValueError(f"facts.last_exit_code: expected an exit code, got {exit_code!r}")
        return cls(
            track=Track.from_json(data.get("track")),
            seq=seq,
            counts=counts,
            last_start_at=_optional_number(data, "last_start_at", "facts"),
            last_duration=_optional_number(data, "last_duration", "facts"),
            last_exit_code=exit_code,
            runs=runs,
            durations=durations,
            duration_sum=_number(data.get("duration_sum", 0.0), "facts.duration_sum"),
            incidents=incidents,
            downtime=_number(data.get("downtime", 0.0), "facts.downtime"),
            incident_start=_optional_number(data, "incident_start", "facts"),
            declared_at=_optional_number(data, "declared_at", "facts"),
        )


class TooManyInstances(Exception):
    """A new instance name while the heartbeat remembers as many as it may, all of them alive."""


class Instances:
    """The instance tracks of one heartbeat, least recently pinged first.

    Bounded by ``instance_limit``: a new name takes the place of the least recently pinged
    instance only when that one is no longer alive, so names sent by anyone who can ping never
    push out workers that are pinging on time. Every operation costs O(1).
    """

    __slots__ = ("_tracks",)

    def __init__(self, tracks: Mapping[str, Track] | None = None) -> None:
        self._tracks: dict[str, Track] = dict(tracks or {})

    def __len__(self) -> int:
        return len(self._tracks)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tracks)

    def get(self, name: str) -> Track | None:
        return self._tracks.get(name)

    def items(self) -> Iterator[tuple[str, Track]]:
        return iter(self._tracks.items())

    def put(self, name: str, track: Track) -> None:
        """Record ``track`` for ``name``, now the most recently pinged."""
        self._tracks.pop(name, None)
        self._tracks[name] = track

    def remove(self, name: str) -> None:
        self._tracks.pop(name, None)

    def make_room(
        self, spec: Heartbeat, now: float, skip: frozenset[str] = frozenset(), extra: int = 0
    ) -> str | None:
        """The name to forget so that one more fits beside ``extra`` names about to be added
        (None when there is room); raises ``TooManyInstances`` when the least recently pinged
        one (not in ``skip``) is alive."""
        limit = instance_limit(spec.instances or 0)
        if len(self._tracks) + extra < limit:
            return None
        for name, track in self._tracks.items():
            if name in skip:
                continue
            if track.status(spec, now)[0] in ALIVE:
                break
            return name
        raise TooManyInstances(
            f"heartbeat {spec.name!r} already tracks {limit} instances that are alive"
        )

    def alive(self, spec: Heartbeat, now: float) -> int:
        return sum(1 for track in self._tracks.values() if track.status(spec, now)[0] in ALIVE)


@dataclass(frozen=True, slots=True)
class View:
    """A heartbeat as seen at one moment: what the collector and the status page show."""

    spec: Heartbeat
    facts: Facts
    now: float
    status: Status
    deadline: float | None
    instances_alive: int | None
    incident_start: float | None = None
    # For heartbeats with ``instances``: every remembered instance (at most ``instance_limit``)
    # as (name, its latest ping, alive), by name, so replicas sharing a store agree.
    instances: tuple[tuple[str, float | None, bool], ...] = ()

    @property
    def incidents(self) -> int:
        """Incidents so far, the open one included."""
        return self.facts.incidents + (self.incident_start is not None)

    @property
    def downtime(self) -> float:
        """Seconds in incidents so far, the open one up to ``now``."""
        if self.incident_start is None:
            return self.facts.downtime
        return self.facts.downtime + max(0.0, self.now - self.incident_start)

    @property
    def age(self) -> float | None:
        last = self.facts.track.last_success_at
        return None if last is None else max(0.0, self.now - last)


def derive(spec: Heartbeat, facts: Facts, instances: Instances | None, now: float) -> View:
    status, deadline = facts.status(spec, now)
    alive = None
    seen: tuple[tuple[str, float | None, bool], ...] = ()
    if spec.instances is not None:
        if instances is not None:
            seen = tuple(
                (name, track.last_ping_at, track.status(spec, now)[0] in ALIVE)
                for name, track in sorted(instances.items())
            )
        alive = sum(1 for _, _, up in seen if up)
    incident = facts.incident_at(spec, now)
    return View(spec, facts, now, status, deadline, alive, incident, seen)


def next_expected(schedule: Schedule, last_success_at: float) -> float:
    if isinstance(schedule, Cron):
        return _next_cron(schedule, last_success_at)
    return schedule.next_after(last_success_at)


@lru_cache(maxsize=65536)
def _next_cron(schedule: Cron, last_success_at: float) -> float:
    """Cron evaluation is costly; a scrape asks again until the heartbeat's next success."""
    return schedule.next_after(last_success_at)


def _mapping(value: Any, at: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{at}: expected an object, got {value!r}")
    return value


def _list(data: Mapping[str, Any], key: str, at: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{at}.{key}: expected a list, got {value!r}")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{at}: expected a number, got {value!r}")
    return float(value)


def _optional_number(data: Mapping[str, Any], key: str, at: str) -> float | None:
    value = data.get(key)
    return None if value is None else _number(value, f"{at}.{key}")
