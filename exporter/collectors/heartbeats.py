"""Renders every declared heartbeat as the heartbeat metric families of the contract.

The status and deadline are derived at scrape time from facts held in memory (never from the
database during a scrape), so one generic alert rule on
``time() > lookout_heartbeat_deadline_timestamp_seconds`` serves every heartbeat whatever its
schedule. Sample of the exposition (``team`` is a static label from the config)::

    # HELP lookout_heartbeats Number of heartbeats declared in the config.
    # TYPE lookout_heartbeats gauge
    lookout_heartbeats 2
    # TYPE lookout_heartbeat_last_success_timestamp_seconds gauge
    lookout_heartbeat_last_success_timestamp_seconds{heartbeat="billing",team="ops"} 1763701200
    lookout_heartbeat_age_seconds{heartbeat="billing",team="ops"} 3600.5
    lookout_heartbeat_deadline_timestamp_seconds{heartbeat="billing",team="ops"} 1763789400
    lookout_heartbeat_declared_timestamp_seconds{heartbeat="billing",team="ops"} 1760000000
    lookout_heartbeat_status{heartbeat="billing",team="ops",status="up"} 1
    lookout_heartbeat_status{heartbeat="billing",team="ops",status="down"} 0
    lookout_heartbeat_pings_total{heartbeat="billing",team="ops",signal="start"} 31
    lookout_heartbeat_last_duration_seconds{heartbeat="billing",team="ops"} 742.1
    lookout_heartbeat_last_exit_code{heartbeat="billing",team="ops"} 0
    lookout_heartbeat_last_run_success{heartbeat="billing",team="ops"} 1
    lookout_heartbeat_instances_alive{heartbeat="orders-consumer"} 2
    lookout_heartbeat_instances_expected{heartbeat="orders-consumer"} 3
    lookout_heartbeat_instance_up{heartbeat="orders-consumer",instance_name="worker-2"} 0
    lookout_heartbeat_instance_last_seen_timestamp_seconds{heartbeat="orders-consumer",\
instance_name="worker-2"} 1763701140
    lookout_heartbeat_incidents_total{heartbeat="billing",team="ops"} 2
    lookout_heartbeat_downtime_seconds_total{heartbeat="billing",team="ops"} 5400
    lookout_heartbeat_incident_open{heartbeat="billing",team="ops"} 0
    lookout_heartbeat_duration_seconds_bucket{heartbeat="billing",team="ops",le="900"} 30
    lookout_heartbeat_duration_seconds_sum{heartbeat="billing",team="ops"} 21940.3
    lookout_heartbeat_duration_seconds_count{heartbeat="billing",team="ops"} 30
    lookout_heartbeat_store_up{engine="postgresql"} 1
    lookout_heartbeat_store_errors_total{engine="postgresql"} 0

With several replicas sharing a PostgreSQL store, every replica renders the same facts.
A heartbeat that never pinged has only its status (``new``, or ``down`` once its first deadline
passed), its zero counters, the gauges from its config, when its store first saw it declared
and the deadline counted from then; a heartbeat removed from the config has no series at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exporter.exposition import header, histogram_lines, label_pairs, sample
from exporter.families import Family
from exporter.heartbeats.state import DURATION_BUCKETS, Signal, Status, View
from exporter.heartbeats.store import StoreHealth
from exporter.histogram import Histogram

__all__ = ["DECLARED", "FAMILIES", "HeartbeatCollector"]

DECLARED = Family("lookout_heartbeats", "gauge", "Number of heartbeats declared in the config.")
LAST_SUCCESS = Family(
    "lookout_heartbeat_last_success_timestamp_seconds",
    "gauge",
    "When the latest success ping arrived, in seconds since the epoch.",
)
AGE = Family("lookout_heartbeat_age_seconds", "gauge", "Seconds since the latest success ping.")
DEADLINE = Family(
    "lookout_heartbeat_deadline_timestamp_seconds",
    "gauge",
    "When the heartbeat is down unless it pings: next expected ping plus grace, or the end "
    "of max_runtime while a run is open.",
)
DECLARED_AT = Family(
    "lookout_heartbeat_declared_timestamp_seconds",
    "gauge",
    "When the heartbeat store first saw the heartbeat declared; a heartbeat that never pinged "
    "has its first deadline one period after it.",
)
STATUS = Family(
    "lookout_heartbeat_status", "gauge", "1 for the heartbeat's current status, 0 for others."
)
PINGS = Family("lookout_heartbeat_pings_total", "counter", "Pings received, by signal.")
LAST_START = Family(
    "lookout_heartbeat_last_start_timestamp_seconds",
    "gauge",
    "When the latest start ping arrived, in seconds since the epoch.",
)
LAST_DURATION = Family(
    "lookout_heartbeat_last_duration_seconds",
    "gauge",
    "Duration of the latest finished run (from its start, or as the job reported it).",
)
LAST_EXIT_CODE = Family(
    "lookout_heartbeat_last_exit_code", "gauge", "Exit code sent with the latest finish ping."
)
LAST_RUN_SUCCESS = Family(
    "lookout_heartbeat_last_run_success",
    "gauge",
    "1 if the latest finished run succeeded, 0 if it failed; unchanged while a new run is open.",
)
MAX_RUNTIME = Family(
    "lookout_heartbeat_max_runtime_seconds", "gauge", "The heartbeat's configured max_runtime."
)
INSTANCES_ALIVE = Family(
    "lookout_heartbeat_instances_alive",
    "gauge",
    "Instances whose own pings are on time (up, running or late).",
)
INSTANCES_EXPECTED = Family(
    "lookout_heartbeat_instances_expected", "gauge", "The heartbeat's configured instances."
)
INSTANCE_UP = Family(
    "lookout_heartbeat_instance_up",
    "gauge",
    "1 while the instance's own pings are on time (up, running or late), else 0.",
)
INSTANCE_LAST_SEEN = Family(
    "lookout_heartbeat_instance_last_seen_timestamp_seconds",
    "gauge",
    "When the instance last pinged, in seconds since the epoch.",
)
MIN_RUNTIME = Family(
    "lookout_heartbeat_min_runtime_seconds", "gauge", "The heartbeat's configured min_runtime."
)
DURATION = Family(
    "lookout_heartbeat_duration_seconds",
    "histogram",
    "Durations of finished runs (from their start, or as the job reported them).",
)
INCIDENTS = Family(
    "lookout_heartbeat_incidents_total",
    "counter",
    "Incidents: times the heartbeat turned late, down or failed, the open one included.",
)
DOWNTIME = Family(
    "lookout_heartbeat_downtime_seconds_total",
    "counter",
    "Seconds in incidents: closed ones, and the open one up to now.",
)
INCIDENT_OPEN = Family(
    "lookout_heartbeat_incident_open", "gauge", "1 while the heartbeat is late, down or failed."
)
INCIDENT_START = Family(
    "lookout_heartbeat_incident_start_timestamp_seconds",
    "gauge",
    "When the open incident began (the heartbeat turned late, down or failed).",
)
STORE_UP = Family(
    "lookout_heartbeat_store_up",
    "gauge",
    "1 while the heartbeat store takes pings, 0 while its writes fail or its writer stopped.",
)
STORE_ERRORS = Family(
    "lookout_heartbeat_store_errors_total",
    "counter",
    "Failed reads, writes and pings of the heartbeat store.",
)
STORE_QUARANTINED = Family(
    "lookout_heartbeat_store_quarantined_total",
    "counter",
    "Damaged rows of the heartbeat store set aside in its quarantine table.",
)

FAMILIES = (
    LAST_SUCCESS,
    AGE,
    DEADLINE,
    DECLARED_AT,
    STATUS,
    PINGS,
    LAST_START,
    LAST_DURATION,
    LAST_EXIT_CODE,
    LAST_RUN_SUCCESS,
    MAX_RUNTIME,
    MIN_RUNTIME,
    INSTANCES_ALIVE,
    INSTANCES_EXPECTED,
    INSTANCE_UP,
    INSTANCE_LAST_SEEN,
    INCIDENTS,
    DOWNTIME,
    INCIDENT_OPEN,
    INCIDENT_START,
)
STORE_FAMILIES = (STORE_UP, STORE_ERRORS, STORE_QUARANTINED)


def render(view: View) -> dict[Family, str]:
    """One heartbeat's sample lines keyed by family (families without samples absent)."""
    spec, facts = view.spec, view.facts
    base = label_pairs([("heartbeat", spec.name), *spec.labels])
    out: dict[Family, str] = {}

    def add(family: Family, value: float | None, extra: str = "") -> None:
        if value is None:
            return
        labels = f"{base},{extra}" if extra else base
        out[family] = out.get(family, "") + sample(family, labels, value)

    add(LAST_SUCCESS, facts.track.last_success_at)
    add(AGE, view.age)
    add(DEADLINE, view.deadline)
    add(DECLARED_AT, facts.declared_at)
    for status in Status:
        add(STATUS, 1 if status is view.status else 0, f'status="{status}"')
    for signal in Signal:
        add(PINGS, facts.counts.get(signal, 0), f'signal="{signal}"')
    add(LAST_START, facts.last_start_at)
    add(LAST_DURATION, facts.last_duration)
    add(LAST_EXIT_CODE, facts.last_exit_code)
    failed = facts.track.last_run_failed
    add(LAST_RUN_SUCCESS, None if failed is None else 0 if failed else 1)
    add(MAX_RUNTIME, spec.max_runtime)
    add(MIN_RUNTIME, spec.min_runtime)
    add(INSTANCES_ALIVE, view.instances_alive)
    add(INSTANCES_EXPECTED, spec.instances)
    # instance_name, not instance: Prometheus' own target label is called instance.
    for name, last_seen, alive in view.instances:
        extra = label_pairs([("instance_name", name)])
        add(INSTANCE_UP, 1 if alive else 0, extra)
        add(INSTANCE_LAST_SEEN, last_seen, extra)
    add(INCIDENTS, view.incidents)
    add(DOWNTIME, view.downtime)
    add(INCIDENT_OPEN, int(view.incident_start is not None))
    add(INCIDENT_START, view.incident_start)
    if facts.seq:
        out[DURATION] = histogram_lines(DURATION, base, _durations(view))
    return out


def _durations(view: View) -> Histogram:
    histogram = Histogram(DURATION_BUCKETS)
    histogram.counts = list(view.facts.durations[:-1])
    histogram.total = sum(view.facts.durations)
    histogram.sum = view.facts.duration_sum
    return histogram


class HeartbeatCollector:
    """Text collector over ``views``, which returns every declared heartbeat as it is now, and
    ``health``, the store's health once a store is open."""

    def __init__(
        self,
        views: Callable[[], Iterable[View]],
        health: Callable[[], StoreHealth | None] = lambda: None,
    ) -> None:
        self._views = views
        self._health = health

    def expose(self) -> Iterable[str]:
        rendered = [render(view) for view in self._views()]
        yield header(DECLARED)
        yield sample(DECLARED, "", len(rendered))
        for family in (*FAMILIES, DURATION):
            chunks = [r[family] for r in rendered if family in r]
            if chunks:
                yield header(family)
                yield "".join(chunks)
        health = self._health()
        if health is not None:
            labels = f'engine="{health.engine}"'
            values = (1 if health.up else 0, health.errors, health.quarantined)
            for family, value in zip(STORE_FAMILIES, values, strict=True):
                yield header(family)
                yield sample(family, labels, value)
