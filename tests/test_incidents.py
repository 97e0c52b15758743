"""Incidents: counted when the confirmed state turns failing, dated from the first failed probe
to the first passed one, with their downtime; kept across a reload, lost (but for the counters'
reset) with a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exporter.clock import SystemClock
from exporter.collectors.probes import ProbeCollector
from exporter.config import Source, load_text
from exporter.probes.clients import SharedClients
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.scheduler import Scheduler
from exporter.stats import ProbeStats
from exporter.targets import Target
from tests.metrics import sample_value


def target(settings: str = "") -> Target[Any]:
    text = f"targets:\n  - {{name: api, kind: http, url: 'http://127.0.0.1:1/'{settings}}}\n"
    return load_text(text, Source("t", Path(".")), {}).targets[0]


def probe(stats: ProbeStats, passed: bool, at: float) -> None:
    reason = None if passed else Reason.STATUS
    stats.record(ProbeResult("api", passed, 0.01, at, reason, "" if passed else "status 503"))


def exposition(stats: ProbeStats) -> str:
    return "".join(ProbeCollector(lambda: [stats], lambda: None).expose())


def test_an_incident_lasts_from_the_first_failed_probe_to_the_first_passed_one() -> None:
    stats = ProbeStats(target(", confirm: {failures: 2, successes: 2}"))
    probe(stats, True, 1000.0)
    probe(stats, False, 1060.0)
    assert stats.incidents == 0  # not confirmed yet
    probe(stats, False, 1120.0)
    assert (stats.incidents, stats.incident_start, stats.downtime) == (1, 1060.0, 60.0)
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_incident_open") == 1
    assert sample_value(text, "lookout_probe_incident_start_timestamp_seconds") == 1060.0
    probe(stats, False, 1180.0)
    assert stats.downtime == 120.0  # the open incident, up to its latest probe
    probe(stats, True, 1240.0)
    assert stats.incident_start == 1060.0  # recovery not confirmed yet
    probe(stats, True, 1300.0)
    # Closed as of the first passed probe: 1060 -> 1240.
    assert (stats.incidents, stats.incident_start, stats.downtime) == (1, None, 180.0)
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_incidents_total") == 1
    assert sample_value(text, "lookout_probe_downtime_seconds_total") == 180.0
    assert sample_value(text, "lookout_probe_incident_open") == 0
    assert sample_value(text, "lookout_probe_incident_start_timestamp_seconds") is None


def test_flapping_below_the_confirmation_opens_no_incident_and_each_real_one_counts() -> None:
    stats = ProbeStats(target(", confirm: {failures: 2}"))
    at = 0.0
    for passed in (True, False, True, False, True):  # blips
        at += 60
        probe(stats, passed, at)
    assert (stats.incidents, stats.downtime) == (0, 0.0)
    for passed in (False, False, True, False, False, True):  # two real outages
        at += 60
        probe(stats, passed, at)
    assert stats.incidents == 2
    assert stats.downtime == 120.0 + 120.0
    # MTTR = downtime / incidents, as the recording rules compute it over a window.
    assert stats.downtime / stats.incidents == 120.0


def test_without_confirmation_every_failed_probe_opens_an_incident() -> None:
    stats = ProbeStats(target())
    probe(stats, False, 10.0)
    probe(stats, True, 20.0)
    probe(stats, False, 30.0)
    assert (stats.incidents, stats.downtime, stats.incident_start) == (2, 10.0, 30.0)


async def test_a_reload_that_keeps_the_target_keeps_its_open_incident() -> None:
    clients = SharedClients()
    scheduler = Scheduler(clients, SystemClock(), max_in_flight=1)
    # Interval 1h: the first scheduled probe is minutes away (a stable offset), none runs here.
    scheduler.reconcile([target(", interval: 1h")])
    stats = scheduler.stats["api"]
    probe(stats, False, 100.0)
    probe(stats, False, 160.0)
    scheduler.reconcile([target(", interval: 1h, timeout: 5s, sla: {availability: 99.5}")])
    await scheduler.close()
    await clients.close()
    assert scheduler.stats["api"] is stats
    probe(stats, True, 220.0)
    assert (stats.incidents, stats.downtime) == (1, 120.0)
    text = exposition(stats)
    assert sample_value(text, "lookout_probe_sla_objective_ratio") == 0.995


def test_a_restart_starts_the_counters_again_and_dates_an_open_incident_from_after_it() -> None:
    """What a restart loses: the open incident's start (Prometheus sees the counters reset)."""
    stats = ProbeStats(target())
    probe(stats, False, 100.0)
    restarted = ProbeStats(target())
    probe(restarted, False, 500.0)
    assert (restarted.incidents, restarted.incident_start) == (1, 500.0)
