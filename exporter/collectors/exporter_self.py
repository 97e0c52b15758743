"""The exporter's own health: build, config reloads, targets, scheduler lag and load.

Sample of the exposition::

    lookout_build_info{version="0.1.0",python="3.11.7"} 1
    lookout_links_info{external_url="https://lookout.example.com",\
grafana_url="https://grafana.example.com"} 1
    lookout_config_last_reload_successful 1
    lookout_config_last_reload_success_timestamp_seconds 1.7637e+09
    lookout_targets{kind="http"} 12
    lookout_probes_in_flight 3
    lookout_probe_runs_total{kind="http"} 4711
    lookout_scheduler_lag_seconds_bucket{le="0.001"} 4700
    lookout_exporter_connectivity_ok 1
    lookout_connectivity_canary_success{canary="resolver"} 1
    lookout_http_body_bytes_in_flight 1.048577e+06
    lookout_http_body_budget_bytes 6.7108864e+07
    lookout_http_body_budget_waits_total 0
    lookout_http_server_connections 2
    lookout_http_server_connections_limit 512
    lookout_http_server_connections_rejected_total 0
    lookout_http_server_requests_timed_out_total 0
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.connectivity import Connectivity
from exporter.exposition import header, histogram_lines, label_pairs, sample
from exporter.families import Family
from exporter.histogram import Histogram
from exporter.lazy_import import lazy_module
from exporter.probes.clients import BodyBudget
from exporter.scheduler import Scheduler
from exporter.web_limits import ServerCounts

if TYPE_CHECKING:
    from exporter.protobuf import exposition as protobuf
    from exporter.protobuf import metrics_pb2
else:  # at the first scrape that asks for protobuf (see exporter.protobuf)
    protobuf = lazy_module("exporter.protobuf.exposition")
    metrics_pb2 = lazy_module("exporter.protobuf.metrics_pb2")

__all__ = ["FAMILIES", "ReloadState", "SelfCollector"]

BUILD_INFO = Family("lookout_build_info", "gauge", "Lookout's version and Python version.")
LINKS_INFO = Family(
    "lookout_links_info",
    "gauge",
    "The exporter's and Grafana's absolute URLs from the config (web.external_url, "
    "web.grafana_url), which alert notifications link to.",
)
RELOAD_SUCCESSFUL = Family(
    "lookout_config_last_reload_successful",
    "gauge",
    "1 if the latest config (re)load succeeded, 0 if the running config is an older one.",
)
RELOAD_SUCCESS_TIME = Family(
    "lookout_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the config was last loaded successfully.",
)
TARGETS = Family("lookout_targets", "gauge", "Configured targets this replica probes, by kind.")
IN_FLIGHT = Family("lookout_probes_in_flight", "gauge", "Probes running right now.")
RUNS = Family("lookout_probe_runs_total", "counter", "Probes run since start, by kind.")
LAG = Family(
    "lookout_scheduler_lag_seconds",
    "histogram",
    "How late probes started against their schedule, waiting for a free slot included.",
)
CONNECTIVITY_OK = Family(
    "lookout_exporter_connectivity_ok",
    "gauge",
    "0 when every connectivity canary failed its latest check, else 1 (only with canaries).",
)
CONNECTIVITY_CHECKED = Family(
    "lookout_exporter_connectivity_last_check_timestamp_seconds",
    "gauge",
    "When the connectivity canaries were last checked.",
)
CANARY_SUCCESS = Family(
    "lookout_connectivity_canary_success",
    "gauge",
    "1 if the canary passed its latest connectivity check, else 0.",
)
BODY_BYTES = Family(
    "lookout_http_body_bytes_in_flight",
    "gauge",
    "Response body bytes HTTP probes hold (reserved) for their checks right now.",
)
BODY_BUDGET = Family(
    "lookout_http_body_budget_bytes",
    "gauge",
    "The budget for response body bytes in flight (scheduler.body_bytes_in_flight).",
)
BODY_WAITS = Family(
    "lookout_http_body_budget_waits_total",
    "counter",
    "HTTP probes that waited for the body budget before reading their body.",
)
SERVER_CONNECTIONS = Family(
    "lookout_http_server_connections", "gauge", "Client connections open to the exporter now."
)
SERVER_LIMIT = Family(
    "lookout_http_server_connections_limit",
    "gauge",
    "Client connections allowed at once (--web.max-connections, at most a quarter of the "
    "open-files limit).",
)
SERVER_REJECTED = Family(
    "lookout_http_server_connections_rejected_total",
    "counter",
    "Client connections closed because the limit was reached: the oldest idle one, or the new "
    "one when every connection was busy.",
)
SERVER_TIMED_OUT = Family(
    "lookout_http_server_requests_timed_out_total",
    "counter",
    "Client connections closed, or requests answered 408, because a request head or body "
    "did not arrive within --web.read-timeout.",
)
FAMILIES = (
    BUILD_INFO,
    LINKS_INFO,
    RELOAD_SUCCESSFUL,
    RELOAD_SUCCESS_TIME,
    TARGETS,
    IN_FLIGHT,
    RUNS,
    LAG,
    CONNECTIVITY_OK,
    CONNECTIVITY_CHECKED,
    CANARY_SUCCESS,
    BODY_BYTES,
    BODY_BUDGET,
    BODY_WAITS,
    SERVER_CONNECTIONS,
    SERVER_LIMIT,
    SERVER_REJECTED,
    SERVER_TIMED_OUT,
)


@dataclass(slots=True)
class ReloadState:
    successful: bool = True
    last_success: float = 0.0
    last_error: str = ""


# A family's samples: (label-pairs text, value) each, or the histogram it is.
Samples = list[tuple[str, float]] | Histogram


def _by_kind(counts: Iterable[tuple[str, int]]) -> Samples:
    return [(label_pairs([("kind", kind)]), n) for kind, n in sorted(counts)]


class SelfCollector:
    """Text and protobuf collector of the exporter's own state; the scheduler lag histogram
    keeps native buckets too."""

    def __init__(
        self,
        scheduler: Scheduler,
        reload: ReloadState,
        connectivity: Connectivity,
        bodies: BodyBudget,
        server: ServerCounts,
        links: Callable[[], tuple[str | None, str | None]] = lambda: (None, None),
    ) -> None:
        self._links = links
        self._scheduler = scheduler
        self._bodies = bodies
        self._server = server
        self._reload = reload
        self._connectivity = connectivity
        self._build = label_pairs([("version", __version__), ("python", platform.python_version())])

    def _families(self) -> Iterator[tuple[Family, Samples]]:
        scheduler = self._scheduler
        reload = self._reload
        yield BUILD_INFO, [(self._build, 1)]
        external, grafana = self._links()
        if external is not None or grafana is not None:
            pairs = [("external_url", external or ""), ("grafana_url", grafana or "")]
            yield LINKS_INFO, [(label_pairs(pairs), 1)]
        yield RELOAD_SUCCESSFUL, [("", int(reload.successful))]
        yield RELOAD_SUCCESS_TIME, [("", reload.last_success)]
        yield TARGETS, _by_kind(scheduler.targets_by_kind.items())
        yield IN_FLIGHT, [("", scheduler.in_flight)]
        yield RUNS, _by_kind(scheduler.runs.items())
        yield LAG, scheduler.lag
        bodies = self._bodies
        yield BODY_BYTES, [("", bodies.held)]
        yield BODY_BUDGET, [("", bodies.limit)]
        yield BODY_WAITS, [("", bodies.waits)]
        server = self._server
        yield SERVER_CONNECTIONS, [("", server.open)]
        yield SERVER_LIMIT, [("", server.limit)]
        yield SERVER_REJECTED, [("", server.rejected)]
        yield SERVER_TIMED_OUT, [("", server.timed_out)]
        connectivity = self._connectivity
        if connectivity.ok is not None and connectivity.checked_at is not None:
            yield CONNECTIVITY_OK, [("", int(connectivity.ok))]
            yield CONNECTIVITY_CHECKED, [("", connectivity.checked_at)]
            yield (
                CANARY_SUCCESS,
                [
                    (label_pairs([("canary", name)]), int(result.success))
                    for name, result in sorted(connectivity.results.items())
                ],
            )

    def expose(self) -> Iterable[str]:
        for family, samples in self._families():
            if isinstance(samples, Histogram):
                yield header(family) + histogram_lines(family, "", samples)
            else:
                yield header(family) + "".join(sample(family, labels, n) for labels, n in samples)

    def expose_protobuf(self) -> Iterable[bytes]:
        """The same families as delimited ``MetricFamily`` messages (none without samples)."""
        unlabelled = protobuf.labelled(())
        for family, samples in self._families():
            entries = metrics_pb2.MetricFamily()
            if isinstance(samples, Histogram):
                protobuf.add_histogram(entries, unlabelled, samples)
            else:
                for labels, value in samples:
                    protobuf.add_sample(entries, family, unlabelled, labels, value)
            if entries.metric:
                yield protobuf.delimited(family, entries.SerializeToString())
