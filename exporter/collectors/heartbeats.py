"""Renders every declared heartbeat as the heartbeat metric families of the contract.

The status and deadline are derived at scrape time from facts held in memory (the store is read
once, at startup), so one generic alert rule on
``time() > lookout_heartbeat_deadline_timestamp_seconds`` serves every heartbeat whatever its
schedule. Sample of the exposition (``team`` is a static label from the config)::

    # HELP lookout_heartbeats Number of heartbeats declared in the config.
    # TYPE lookout_heartbeats gauge
    lookout_heartbeats 2
    # TYPE lookout_heartbeat_last_success_timestamp_seconds gauge
    lookout_heartbeat_last_success_timestamp_seconds{heartbeat="billing",team="ops"} 1763701200
    lookout_heartbeat_age_seconds{heartbeat="billing",team="ops"} 3600.5
    lookout_heartbeat_deadline_timestamp_seconds{heartbeat="billing",team="ops"} 1763789400
    lookout_heartbeat_status{heartbeat="billing",team="ops",status="up"} 1
    lookout_heartbeat_status{heartbeat="billing",team="ops",status="down"} 0
    lookout_heartbeat_pings_total{heartbeat="billing",team="ops",signal="start"} 31
    lookout_heartbeat_last_duration_seconds{heartbeat="billing",team="ops"} 742.1
    lookout_heartbeat_last_exit_code{heartbeat="billing",team="ops"} 0
    lookout_heartbeat_instances_alive{heartbeat="orders-consumer"} 2
    lookout_heartbeat_instances_expected{heartbeat="orders-consumer"} 3

A heartbeat that never pinged has only its status (``new``), its zero counters and the gauges
from its config; a heartbeat removed from the config has no series at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from exporter.exposition import format_value, header, label_pairs
from exporter.heartbeats.state import Signal, Status, View

__all__ = ["FAMILIES", "HeartbeatCollector"]

FAMILIES: tuple[tuple[str, str, str], ...] = (
    (
        "lookout_heartbeat_last_success_timestamp_seconds",
        "gauge",
        "When the latest success ping arrived, in seconds since the epoch.",
    ),
    ("lookout_heartbeat_age_seconds", "gauge", "Seconds since the latest success ping."),
    (
        "lookout_heartbeat_deadline_timestamp_seconds",
        "gauge",
        "When the heartbeat is down unless it pings: next expected ping plus grace, or the end "
        "of max_runtime while a run is open.",
    ),
    ("lookout_heartbeat_status", "gauge", "1 for the heartbeat's current status, 0 for others."),
    ("lookout_heartbeat_pings_total", "counter", "Pings received, by signal."),
    (
        "lookout_heartbeat_last_start_timestamp_seconds",
        "gauge",
        "When the latest start ping arrived, in seconds since the epoch.",
    ),
    (
        "lookout_heartbeat_last_duration_seconds",
        "gauge",
        "Duration of the latest finished run (from its start, or as the job reported it).",
    ),
    (
        "lookout_heartbeat_last_exit_code",
        "gauge",
        "Exit code sent with the latest finish ping.",
    ),
    ("lookout_heartbeat_max_runtime_seconds", "gauge", "The heartbeat's configured max_runtime."),
    (
        "lookout_heartbeat_instances_alive",
        "gauge",
        "Instances whose own pings are on time (up, running or late).",
    ),
    ("lookout_heartbeat_instances_expected", "gauge", "The heartbeat's configured instances."),
)


def render(view: View) -> dict[str, str]:
    """One heartbeat's sample lines keyed by family name (families without samples absent)."""
    spec, facts = view.spec, view.facts
    base = label_pairs([("heartbeat", spec.name), *spec.labels])
    out: dict[str, str] = {}

    def sample(name: str, value: float | None, extra: str = "") -> None:
        if value is None:
            return
        labels = f"{base},{extra}" if extra else base
        out[name] = out.get(name, "") + f"{name}{{{labels}}} {format_value(value)}\n"

    sample("lookout_heartbeat_last_success_timestamp_seconds", facts.track.last_success_at)
    sample("lookout_heartbeat_age_seconds", view.age)
    sample("lookout_heartbeat_deadline_timestamp_seconds", view.deadline)
    for status in Status:
        sample("lookout_heartbeat_status", 1 if status is view.status else 0, f'status="{status}"')
    for signal in Signal:
        sample("lookout_heartbeat_pings_total", facts.counts.get(signal, 0), f'signal="{signal}"')
    sample("lookout_heartbeat_last_start_timestamp_seconds", facts.last_start_at)
    sample("lookout_heartbeat_last_duration_seconds", facts.last_duration)
    sample("lookout_heartbeat_last_exit_code", facts.last_exit_code)
    sample("lookout_heartbeat_max_runtime_seconds", spec.max_runtime)
    sample("lookout_heartbeat_instances_alive", view.instances_alive)
    sample("lookout_heartbeat_instances_expected", spec.instances)
    return out


class HeartbeatCollector:
    """Text collector over ``views``, which returns every declared heartbeat as it is now."""

    def __init__(self, views: Callable[[], Iterable[View]]) -> None:
        self._views = views

    def expose(self) -> Iterable[str]:
        rendered = [render(view) for view in self._views()]
        yield header("lookout_heartbeats", "gauge", "Number of heartbeats declared in the config.")
        yield f"lookout_heartbeats {len(rendered)}\n"
        for name, kind, help_text in FAMILIES:
            chunks = [r[name] for r in rendered if name in r]
            if chunks:
                yield header(name, kind, help_text)
                yield "".join(chunks)
