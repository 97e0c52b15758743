"""Runs every target on its own interval.

- First runs are spread over the interval by a stable per-target offset (no thundering herd,
  and the same offsets after a restart).
- Each run starts on the first ``TICK`` (50 ms) at or after its scheduled time, so probes due
  within the same 50 ms share one wake-up of the event loop.
- Waiting targets cost no task: their next runs sit in one heap, and a single timer starts a
  task for each probe when it is due (a sleeping task per target took about 1.6 KiB, 16 MiB for
  10,000 targets). A target's next run is scheduled when its probe finishes, so one target
  never has two probes in flight.
- ``max_in_flight`` bounds the probes in flight. A due run gets a task only when a slot is free;
  until then it waits in a queue of due runs, oldest first (a task and a semaphore waiter per
  waiting probe cost about 1 KiB each, which adds up when thousands are due at once).
  ``lookout_scheduler_lag_seconds`` records how late each probe started against its tick,
  waiting for a slot included.
- ``reconcile`` applies a new target list: unchanged targets keep running untouched, changed
  ones restart, removed ones stop and lose their series. Counters survive while a target's
  identity (name, kind, labels) is unchanged.
- A failed probe asks ``connectivity`` whether the exporter itself can reach the network; if
  not, it is recorded as ``exporter_offline``.
- ``Shard`` keeps the stable share of targets that belongs to one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import re
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from exporter.clock import Clock
from exporter.connectivity import Connectivity, offline
from exporter.histogram import Histogram
from exporter.probes.clients import SharedClients
from exporter.probes.runner import prepare, run_probe
from exporter.results import ProbeResult
from exporter.stats import HISTORY_BUCKETS, ProbeStats, identity
from exporter.targets import Target

__all__ = ["LAG_BUCKETS", "TICK", "Plan", "Scheduler", "Shard"]

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
# Probes start on ticks of this many seconds. Waking the event loop once for several probes
# instead of once for each costs far less: at 200 probes per second, starting them in groups
# every 50 ms instead of one by one every 5 ms more than halves the CPU per probe.
TICK = 0.05


@dataclass(frozen=True, slots=True)
class Shard:
    """Replica ``index`` of ``count``: owns the targets whose name hashes to its index."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"(\d+)/(\d+)", text)
        if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise ValueError(f"invalid shard {text!r}: use I/N with 0 <= I < N, e.g. 0/3")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, name: str) -> bool:
        return zlib.crc32(name.encode()) % self.count == self.index


def _on_tick(scheduled: float) -> float:
    """The first tick at or after ``scheduled``: probes due within one tick start together."""
    return math.ceil(scheduled / TICK) * TICK


def _offset(name: str, interval: float) -> float:
    """A stable point in [0, interval) for this target's first run."""
    return zlib.crc32(name.encode()) / 2**32 * interval


class _Run:
    """A target's place in the schedule: when its next probe is due, the probe in flight, and
    whether the target has since changed or gone (then its queued run is dropped)."""

    __slots__ = ("holds_slot", "scheduled", "stats", "stopped", "task")

    def __init__(self, stats: ProbeStats, scheduled: float) -> None:
        self.stats = stats
        self.scheduled = scheduled
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.holds_slot = False  # from its task's start until its probe ends


@dataclass(frozen=True, slots=True)
class Plan:
    """A reconcile worked out: the stats of every wanted target by name (fresh ones for a new
    target or one whose series changed), the kept stats whose target changed, the runs to
    start, each with its offset from the moment the plan is applied, and the wanted targets'
    count by kind."""

    stats: dict[str, ProbeStats]
    retargeted: list[tuple[ProbeStats, Target[Any]]]
    started: list[tuple[_Run, float]]
    kinds: dict[str, int]
    # The bucket width and count of each target's history (kept while these stay the same).
    history: tuple[float, int] = HISTORY_BUCKETS


class Scheduler:
    """Probes the targets given to ``reconcile``; ``on_result`` hears of every recorded result
    (the probe collector renders the target's text then, so a scrape mostly joins text)."""

    def __init__(
        self,
        clients: SharedClients,
        clock: Clock,
        *,
        max_in_flight: int,
        on_result: Callable[[ProbeStats], None] | None = None,
        connectivity: Connectivity | None = None,
    ) -> None:
        self._clients = clients
        self._connectivity = connectivity
        self._on_result = on_result
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._slots_taken = 0
        # Runs whose tick has come, waiting for a free slot, as (tick, run), oldest first.
        self._due: deque[tuple[float, _Run]] = deque()
        self._runs: dict[str, _Run] = {}
        # Queued runs as (tick, sequence, run); the sequence orders runs due on the same tick.
        self._queue: list[tuple[float, int, _Run]] = []
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        self.stats: dict[str, ProbeStats] = {}
        # The targets' count by kind, as of the last plan applied (read at every scrape: the
        # 10,000 targets counted then took 1-3 ms, mostly waiting for memory).
        self.targets_by_kind: dict[str, int] = {}
        self._history = HISTORY_BUCKETS  # of the stats' histories, as the last plan applied
        self.lag = Histogram(LAG_BUCKETS, native=True)
        self.in_flight = 0
        self.runs: dict[str, int] = {}

    def all_stats(self) -> Iterable[ProbeStats]:
        return self.stats.values()

    def reconcile(
        self, targets: Sequence[Target[Any]], history: tuple[float, int] = HISTORY_BUCKETS
    ) -> None:
        """Run ``targets`` from now on: new ones start, changed ones restart (keeping their
        series when name, kind and labels are the same), removed ones stop; ``history`` is the
        bucket width and count of each target's history."""
        steps = self.plan(targets, history=history)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                self.apply(done.value)
                return

    def plan(
        self,
        targets: Sequence[Target[Any]],
        pause_every: int = 200,
        history: tuple[float, int] = HISTORY_BUCKETS,
    ) -> Generator[None, None, Plan]:
        """What ``reconcile`` changes, worked out without changing anything (the libraries of
        new kinds are imported), pausing (yielding) after every ``pause_every`` targets so that
        a caller can let other tasks run; the plan holds while no other reconcile happens
        before its ``apply``, which then holds the event loop only to swap the targets and
        queue the new runs."""
        planned: dict[str, ProbeStats] = {}
        retargeted: list[tuple[ProbeStats, Target[Any]]] = []
        started: list[tuple[_Run, float]] = []
        kinds: dict[str, int] = {}
        for count, target in enumerate(targets, 1):
            kind = target.kind.name
            kinds[kind] = kinds.get(kind, 0) + 1
            name = target.name
            stats = self.stats.get(name)
            if stats is None or stats.target != target:
                if stats is not None and stats.series_identity() == identity(target):
                    retargeted.append((stats, target))
                else:
                    stats = ProbeStats(target, history)
                started.append((_Run(stats, 0.0), _offset(name, target.interval)))
                prepare(target)  # its kind's libraries, imported now rather than within a probe
            planned[name] = stats
            if count % pause_every == 0:
                yield
        return Plan(planned, retargeted, started, kinds, history)

    def apply(self, plan: Plan) -> None:
        if plan.history != self._history:
            for kept in plan.stats.values():
                kept.history = kept.history.resized(*plan.history)
            self._history = plan.history
        for name in self.stats.keys() - plan.stats.keys():
            self._stop(name)
        for stats, target in plan.retargeted:
            stats.retarget(target)
        self.stats = plan.stats
        self.targets_by_kind = plan.kinds
        now = self._clock.monotonic()
        runs = self._runs
        queued = []
        for run, offset in plan.started:
            name = run.stats.target.name
            if name in runs:
                self._stop(name)
            run.scheduled = now + offset
            runs[name] = run
            queued.append((_on_tick(run.scheduled), next(self._sequence), run))
        # Many new runs: one heapify (linear) instead of a push (a call and log n steps) each.
        # Stopped runs leave the queue when due, so the stats of removed targets are freed
        # over their interval rather than all at once here.
        if len(queued) > len(self._queue) // 8:
            self._queue.extend(queued)
            heapq.heapify(self._queue)
        else:
            for entry in queued:
                heapq.heappush(self._queue, entry)
        if self._queue and self._queue[0][0] < self._timer_due:
            self._arm()

    def _stop(self, name: str) -> None:
        run = self._runs.pop(name, None)
        if run is not None:
            run.stopped = True
            if run.task is not None:
                run.task.cancel()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for name in list(self._runs):
            self._stop(name)
        self._queue.clear()
        self._due.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _queue_run(self, run: _Run) -> None:
        due = _on_tick(run.scheduled)
        heapq.heappush(self._queue, (due, next(self._sequence), run))
        if due < self._timer_due:
            self._arm()

    def _arm(self) -> None:
        """Set the timer for the first queued run."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_due = None, math.inf
        if self._queue:
            self._timer_due = self._queue[0][0]
            delay = max(0.0, self._timer_due - self._clock.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._start_due)

    def _start_due(self) -> None:
        """Start a probe for every run whose tick has come, as far as slots are free; the
        others wait in ``_due`` for a slot."""
        now = self._clock.monotonic()
        while self._queue and self._queue[0][0] <= now:
            due, _sequence, run = heapq.heappop(self._queue)
            if not run.stopped:
                self._due.append((due, run))
        self._start_waiting()
        self._arm()

    def _start_waiting(self) -> None:
        """Give each free slot to the oldest due run that is still wanted."""
        while self._due and self._slots_taken < self._max_in_flight:
            due, run = self._due.popleft()
            if run.stopped:
                continue
            self._slots_taken += 1
            run.holds_slot = True
            name = run.stats.target.name
            task = asyncio.create_task(self._probe(run, due), name=f"probe {name}")
            # A task cancelled before it first runs never reaches its probe's ``finally``.
            task.add_done_callback(partial(self._release_after, run))
            run.task = task

    def _release_after(self, run: _Run, _task: asyncio.Task[None]) -> None:
        self._release(run)

    def _release(self, run: _Run) -> None:
        """The run's probe ended (or never started): its slot goes to the next due run."""
        if run.holds_slot:
            run.holds_slot = False
            self._slots_taken -= 1
            self._start_waiting()

    async def _probe(self, run: _Run, due: float) -> None:
        stats = run.stats
        target = stats.target
        clock = self._clock
        try:
            self.lag.observe(max(0.0, clock.monotonic() - due))
            self.in_flight += 1
            started = clock.monotonic()
            try:
                result = await run_probe(target, self._clients, clock)
            finally:
                self.in_flight -= 1
        finally:
            self._release(run)
        connectivity = self._connectivity
        if (
            not result.success
            and connectivity is not None
            and not await connectivity.reachable(started)
        ):
            result = offline(result)
        kind = target.kind.name
        self.runs[kind] = self.runs.get(kind, 0) + 1
        try:
            _log_change(stats.last, result)
            stats.record(result)
            if self._on_result is not None:
                self._on_result(stats)
        except Exception:  # a bug; the target must keep its schedule all the same
            log.exception("handling a probe result failed", extra={"target": target.name})
        run.task = None
        interval = target.next_interval(stats.confirming)
        run.scheduled += interval
        now = clock.monotonic()
        if now - run.scheduled > interval:
            # More than a whole interval behind (a stalled loop, a probe slower than its
            # interval): the missed runs are dropped, as a ticker drops ticks, and the next one
            # comes at the target's first slot after now, not at once; the lag histogram
            # shows it.
            run.scheduled += (math.floor((now - run.scheduled) / interval) + 1) * interval
        if not run.stopped:
            self._queue_run(run)


def _log_change(previous: ProbeResult | None, result: ProbeResult) -> None:
    """Log a probe's outcome only when it differs from the previous one."""
    if previous is not None and (previous.success, previous.reason) == (
        result.success,
        result.reason,
    ):
        return
    if result.success:
        if previous is not None:
            log.info("probe recovered", extra={"target": result.target})
        return
    log.warning(
        "probe failing",
        extra={"target": result.target, "reason": str(result.reason), "detail": result.message},
    )
