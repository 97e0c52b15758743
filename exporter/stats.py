"""Per-target state kept between scrapes: the duration histogram, failure counters by reason,
the slow-probe counter and the latest result.

This is what a stateless prober cannot offer: counters that survive between scrapes (and across
reloads for targets whose identity did not change). ``rendered`` caches the target's exposition
text until its next result, so a scrape only re-renders targets that probed since the last one.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from exporter.exposition import Histogram
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.targets import Target

__all__ = ["DURATION_BUCKETS", "HISTORY_LENGTH", "ProbeStats"]

# Seconds; covers a loopback health check (ms) up to a slow third-party API (tens of seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Latest results kept for the status page and the API.
HISTORY_LENGTH = 20


class ProbeStats:
    __slots__ = ("durations", "failures", "history", "probes", "rendered", "slow", "target")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.durations = Histogram(DURATION_BUCKETS)
        self.failures: dict[Reason, int] = {}
        self.slow = 0
        self.probes = 0
        self.history: deque[ProbeResult] = deque(maxlen=HISTORY_LENGTH)
        self.rendered: dict[str, str] | None = None

    @property
    def last(self) -> ProbeResult | None:
        return self.history[-1] if self.history else None

    def record(self, result: ProbeResult) -> None:
        self.probes += 1
        self.durations.observe(result.duration)
        if result.reason is not None:
            self.failures[result.reason] = self.failures.get(result.reason, 0) + 1
        slo = self.target.slo
        if slo and slo.latency_threshold is not None and result.duration > slo.latency_threshold:
            self.slow += 1
        previous = self.last
        self.history.append(result if previous is None else _share(result, previous))
        self.rendered = None

    def series_identity(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What names this target's series; counters are kept across a reload while it is equal."""
        return (self.target.name, self.target.kind, self.target.labels)


# Parts of a result that are usually equal from one probe of a target to the next.
_SHARED_FIELDS = ("checks", "chain", "message", "http_version", "tls_version")


def _share(result: ProbeResult, previous: ProbeResult) -> ProbeResult:
    """``result``, with each part equal to ``previous``'s replaced by ``previous``'s object.

    A target's consecutive results mostly carry the same checks, certificates and versions;
    sharing them keeps its whole history at little more than one result's worth of those, and
    leaves the garbage collector fewer objects to scan.
    """
    shared = {}
    for name in _SHARED_FIELDS:
        new, old = getattr(result, name), getattr(previous, name)
        if new is not old and new == old:
            shared[name] = old
    return dataclasses.replace(result, **shared) if shared else result
