"""Per-target state kept between scrapes: the duration histogram, failure counters by reason,
the slow-probe counter, the latest result, the recent probes, the day's history in buckets
(``history.py``), the confirmed state and incidents.

Every attempt feeds the histogram and the counters; the confirmed state (what
``lookout_probe_success`` and the alerts read) changes only after the target's ``confirm``
number of consecutive attempts say so, and is None until the first confirmation.

An incident opens when the confirmed state turns failing and closes when it turns passing. It
is dated from the first attempt of the run of attempts that confirmed it (the first failed one,
then the first passed one), so confirmation delays the alert, not the outage's start or end.
``downtime`` counts closed incidents and the open one up to its latest attempt.

This is what a stateless prober cannot offer: counters that survive between scrapes (and across
reloads for targets whose identity did not change). ``generation`` changes whenever anything a
reader shows of the target changes (a result recorded, the target's config replaced), so a
reader that caches what it made of the stats (the probe collector's text) knows when to make it
again; the stats know nothing of their readers.
"""

from __future__ import annotations

import itertools
from typing import Any

from exporter.families import Family
from exporter.histogram import Histogram
from exporter.history import History, reason_code
from exporter.reasons import Reason
from exporter.recent import RecentProbes
from exporter.results import Accumulating, ProbeResult
from exporter.targets import Target

__all__ = ["DURATION_BUCKETS", "HISTORY_BUCKETS", "HISTORY_LENGTH", "KeptSeries", "ProbeStats"]

# Seconds; covers a loopback health check (ms) up to a slow third-party API (tens of seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Recent probes kept for the status page and the API.
HISTORY_LENGTH = 20
# The history's bucket width and number of buckets unless the config says otherwise
# (``status_page.history``): a day of 15-minute buckets.
HISTORY_BUCKETS = (900.0, 96)
# Generations are unique across all stats, so a reader's cache entry of a removed target never
# matches the stats of a new one with the same name.
_generations = itertools.count(1)


class KeptSeries:
    """A kind's own series kept between probes (``results.Accumulating``), by family and the
    label-pairs text of their own labels: a flow's per-step histograms and counters. Only
    targets whose kind has such series hold one (two empty dicts are 128 bytes a target)."""

    __slots__ = ("counters", "histograms")

    def __init__(self) -> None:
        self.histograms: dict[tuple[Family, str], Histogram] = {}
        self.counters: dict[tuple[Family, str], float] = {}


class ProbeStats:
    __slots__ = (
        "_closed_downtime",
        "cert_expiry",
        "confirmed",
        "downtime",
        "durations",
        "failures",
        "generation",
        "history",
        "incident_start",
        "incidents",
        "kept",
        "last",
        "probes",
        "recent",
        "run",
        "run_started_at",
        "run_success",
        "slow",
        "state_changes",
        "target",
    )

    def __init__(self, target: Target[Any], history: tuple[float, int] = HISTORY_BUCKETS) -> None:
        self.target = target
        self.durations = Histogram(DURATION_BUCKETS, native=True)
        self.failures: dict[Reason, int] = {}
        self.slow = 0
        self.probes = 0
        self.last: ProbeResult | None = None
        # The earliest NotAfter of the latest chain any probe saw: kept while the endpoint
        # cannot be reached, so an expiry alert does not resolve because the server is down.
        self.cert_expiry: float | None = None
        self.recent = RecentProbes(HISTORY_LENGTH)
        self.history = History(*history)
        self.generation = next(_generations)
        self.confirmed: bool | None = None
        # The latest attempts that agree: their outcome and how many in a row.
        self.run_success: bool | None = None
        self.run = 0
        self.run_started_at = 0.0  # when the first attempt of the run finished
        self.incidents = 0
        self.incident_start: float | None = None  # while an incident is open
        self.downtime = 0.0  # closed incidents, plus the open one up to its latest attempt
        self._closed_downtime = 0.0
        # Changes of the confirmed state from passing to failing or back (not the first one).
        self.state_changes = 0
        # A kind's own series kept between probes, from its first probe that has any.
        self.kept: KeptSeries | None = None

    @property
    def confirming(self) -> bool:
        """Whether the latest attempt disagrees with the confirmed state (or none is yet)."""
        return self.run_success is not None and self.run_success != self.confirmed

    def record(self, result: ProbeResult) -> None:
        self.probes += 1
        self.durations.observe(result.duration)
        if result.reason is not None:
            self.failures[result.reason] = self.failures.get(result.reason, 0) + 1
        slo = self.target.slo
        if slo and slo.latency_threshold is not None and result.duration > slo.latency_threshold:
            self.slow += 1
        if isinstance(result.observation, Accumulating):
            self._keep(result.observation)
        self.last = result
        if result.tls is not None and result.tls.chain:
            self.cert_expiry = min(c.not_after for c in result.tls.chain)
        if result.reason is not Reason.EXPORTER_OFFLINE:  # says nothing about the target
            self._confirm(result.success, result.finished_at)
        self.recent.add(result)
        self.history.add(
            result.finished_at, result.duration, not result.success, reason_code(result.reason)
        )
        self.generation = next(_generations)

    def _keep(self, observation: Accumulating) -> None:
        kept = self.kept
        if kept is None:
            kept = self.kept = KeptSeries()
        for family, value, extra in observation.accumulate():
            key = (family, extra)
            if family.type == "histogram":
                histogram = kept.histograms.get(key)
                if histogram is None:
                    histogram = kept.histograms[key] = Histogram(DURATION_BUCKETS, native=True)
                histogram.observe(value)
            else:
                kept.counters[key] = kept.counters.get(key, 0) + value

    def _confirm(self, success: bool, at: float) -> None:
        if success == self.run_success:
            self.run += 1
        else:
            self.run, self.run_success, self.run_started_at = 1, success, at
        confirm = self.target.confirm
        if self.run >= (confirm.successes if success else confirm.failures):
            if self.confirmed is not None and self.confirmed != success:
                self.state_changes += 1
            self.confirmed = success
        if self.incident_start is None:
            if self.confirmed is False:
                self.incidents += 1
                self.incident_start = self.run_started_at
                self.downtime = self._closed_downtime + max(0.0, at - self.incident_start)
        elif self.confirmed:  # closed, as of the first passed attempt of the run
            self._closed_downtime += max(0.0, self.run_started_at - self.incident_start)
            self.downtime = max(self.downtime, self._closed_downtime)
            self._closed_downtime = self.downtime
            self.incident_start = None
        else:
            self.downtime = max(self.downtime, self._closed_downtime + at - self.incident_start)

    def retarget(self, target: Target[Any]) -> None:
        """Use the changed config of the same series (same ``series_identity``); counters stay,
        except the kind's own kept series when its spec changed (a flow's steps may be renamed
        or gone: their series start again from the next probe)."""
        if target.spec != self.target.spec:
            self.kept = None
        self.target = target
        self.generation = next(_generations)

    def series_identity(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What names this target's series; counters are kept across a reload while it is equal."""
        return identity(self.target)


def identity(target: Target[Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """The names of a target's series: its name, its kind and its static labels."""
    return (target.name, target.kind.name, target.labels)
