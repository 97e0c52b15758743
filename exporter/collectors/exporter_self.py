"""The exporter's own health: build, config reloads, targets, scheduler lag and load.

Sample of the exposition::

    lookout_build_info{version="0.1.0",python="3.11.7"} 1
    lookout_config_last_reload_successful 1
    lookout_config_last_reload_success_timestamp_seconds 1.7637e+09
    lookout_targets{kind="http"} 12
    lookout_probes_in_flight 3
    lookout_probe_runs_total{kind="http"} 4711
    lookout_scheduler_lag_seconds_bucket{le="0.001"} 4700
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from exporter import __version__
from exporter.exposition import format_value, header, label_pairs
from exporter.scheduler import Scheduler

__all__ = ["ReloadState", "SelfCollector"]


@dataclass(slots=True)
class ReloadState:
    successful: bool = True
    last_success: float = 0.0
    last_error: str = ""


class SelfCollector:
    def __init__(self, scheduler: Scheduler, reload: ReloadState) -> None:
        self._scheduler = scheduler
        self._reload = reload
        self._build = label_pairs([("version", __version__), ("python", platform.python_version())])

    def expose(self) -> Iterable[str]:
        scheduler = self._scheduler
        yield header("lookout_build_info", "gauge", "Lookout's version and Python version.")
        yield f"lookout_build_info{{{self._build}}} 1\n"
        yield header(
            "lookout_config_last_reload_successful",
            "gauge",
            "1 if the latest config (re)load succeeded, 0 if the running config is an older one.",
        )
        yield f"lookout_config_last_reload_successful {int(self._reload.successful)}\n"
        yield header(
            "lookout_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the config was last loaded successfully.",
        )
        yield (
            "lookout_config_last_reload_success_timestamp_seconds "
            f"{format_value(self._reload.last_success)}\n"
        )
        kinds = Counter(stats.target.kind for stats in scheduler.all_stats())
        yield header("lookout_targets", "gauge", "Configured targets this replica probes, by kind.")
        yield "".join(
            f'lookout_targets{{kind="{kind}"}} {n}\n' for kind, n in sorted(kinds.items())
        )
        yield header("lookout_probes_in_flight", "gauge", "Probes running right now.")
        yield f"lookout_probes_in_flight {scheduler.in_flight}\n"
        yield header("lookout_probe_runs_total", "counter", "Probes run since start, by kind.")
        yield "".join(
            f'lookout_probe_runs_total{{kind="{kind}"}} {n}\n'
            for kind, n in sorted(scheduler.runs.items())
        )
        yield header(
            "lookout_scheduler_lag_seconds",
            "histogram",
            "How late probes started against their schedule, waiting for a free slot included.",
        )
        yield scheduler.lag.lines("lookout_scheduler_lag_seconds", "")
