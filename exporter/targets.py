"""A probe target: what every kind has in common (name, interval, timeout, labels, SLO) and its
kind's spec, built from the validated config by the kind's own builder (``probes.registry``).

Equality of two targets is what a reload uses to decide whether a target changed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.probes.kind import Kind, Spec
from exporter.probes.registry import KINDS
from exporter.units import parse_duration

__all__ = ["RESERVED_LABELS", "Slo", "Target", "build_target"]

# Labels the exporter sets itself; a target's static labels may not reuse them.
RESERVED_LABELS = frozenset(
    {"target", "kind", "location", "reason", "phase", "slo", "le", "job", "instance", "heartbeat"}
)


@dataclass(frozen=True, slots=True)
class Slo:
    """Objectives as ratios (99.9 in the config is 0.999 here)."""

    availability: float | None
    latency_threshold: float | None
    latency_objective: float | None


@dataclass(frozen=True, slots=True)
class Target(Generic[Spec]):
    name: str
    kind: Kind[Spec]
    interval: float
    timeout: float
    labels: tuple[tuple[str, str], ...]
    slo: Slo | None
    spec: Spec


def build_target(
    raw: Mapping[str, Any], at: KeyPath, source: Source, *, interval: float, timeout: float
) -> Target[Any]:
    interval = parse_duration(raw["interval"]) if "interval" in raw else interval
    timeout = parse_duration(raw["timeout"]) if "timeout" in raw else timeout
    if interval <= 0:
        raise ConfigProblem((*at, "interval"), "interval must be greater than 0")
    if timeout <= 0:
        raise ConfigProblem((*at, "timeout"), "timeout must be greater than 0")
    if timeout > interval:
        raise ConfigProblem(
            (*at, "timeout"), f"timeout ({raw.get('timeout', timeout)}) exceeds the interval"
        )
    labels = raw.get("labels", {})
    for name in labels:
        if name in RESERVED_LABELS or name.startswith("__"):
            raise ConfigProblem((*at, "labels", name), f"label {name!r} is reserved")
    kind = KINDS[raw["kind"]]
    return Target(
        name=raw["name"],
        kind=kind,
        interval=interval,
        timeout=timeout,
        # Label names and values repeat across targets: one string each instead of one per target.
        labels=tuple(sorted((sys.intern(k), sys.intern(v)) for k, v in labels.items())),
        slo=_build_slo(raw["slo"]) if "slo" in raw else None,
        spec=kind.build(raw, at, source),
    )


def _build_slo(raw: Mapping[str, Any]) -> Slo:
    latency = raw.get("latency")
    return Slo(
        availability=round(raw["availability"] / 100, 10) if "availability" in raw else None,
        latency_threshold=parse_duration(latency["threshold"]) if latency else None,
        latency_objective=round(latency["objective"] / 100, 10) if latency else None,
    )
