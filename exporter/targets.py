"""A probe target: what every kind has in common (name, interval, timeout, labels, SLO) and its
kind's spec, built from the validated config by the kind's own builder (``probes.registry``).

Equality of two targets is what a reload uses to decide whether a target changed.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.probes.kind import Kind, Spec
from exporter.probes.registry import KINDS
from exporter.units import format_duration, parse_duration

__all__ = [
    "NO_CONFIRMATION",
    "RESERVED_LABELS",
    "VERSION_SEPARATOR",
    "Confirm",
    "Defaults",
    "Slo",
    "Target",
    "build_defaults",
    "build_target",
]

# Between a ``versions:`` matrix's name and a version key: ``orders-api@v2``. A name as written
# cannot contain it, so a name with it is one version of a matrix.
VERSION_SEPARATOR = "@"

# Labels the exporter sets itself; a target's static labels may not reuse them.
RESERVED_LABELS = frozenset(
    {
        "target",
        "kind",
        "location",
        "reason",
        "phase",
        "slo",
        "le",
        "job",
        "instance",
        "heartbeat",
    }
)


@dataclass(frozen=True, slots=True)
class Slo:
    """Objectives as ratios (99.9 in the config is 0.999 here)."""

    availability: float | None
    latency_threshold: float | None
    latency_objective: float | None


@dataclass(frozen=True, slots=True)
class Confirm:
    """Consecutive attempts that change the confirmed state: ``failures`` to turn it failing,
    ``successes`` to turn it passing again (1 and 1: every attempt counts at once)."""

    failures: int = 1
    successes: int = 1


# Every attempt changes the state at once: the default.
NO_CONFIRMATION = Confirm()


@dataclass(frozen=True, slots=True)
class Defaults:
    """The ``defaults:`` section: what a target without its own setting uses."""

    interval: float = 30.0
    timeout: float = 10.0
    confirm: Confirm = NO_CONFIRMATION
    interval_when_failing: float | None = None


@dataclass(frozen=True, slots=True)
class Target(Generic[Spec]):
    name: str
    kind: Kind[Spec]
    interval: float
    timeout: float
    labels: tuple[tuple[str, str], ...]
    slo: Slo | None
    spec: Spec
    confirm: Confirm = NO_CONFIRMATION
    # The availability committed to customers as a ratio (99.5 in the config is 0.995 here).
    sla: float | None = None
    # Probes come this often while the latest attempt disagrees with the confirmed state.
    interval_when_failing: float | None = None
    # What the target points at as the status page and the API show it (secrets redacted):
    # made once here rather than on every page. A URL without secrets is the configured string
    # itself, so this costs one reference per target.
    endpoint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", self.kind.endpoint(self.spec))

    @property
    def matrix(self) -> tuple[str, str] | None:
        """``(name of the matrix, version key)`` for a target expanded from ``versions:``."""
        base, separator, version = self.name.partition(VERSION_SEPARATOR)
        return (base, version) if separator else None

    def next_interval(self, confirming: bool) -> float:
        """The interval to the next probe; ``confirming``: the latest attempt disagrees with
        the confirmed state, so a faster probe settles it sooner."""
        if confirming and self.interval_when_failing is not None:
            return self.interval_when_failing
        return self.interval


def _build_confirm(raw: Mapping[str, Any], fallback: Confirm) -> Confirm:
    if not raw:
        return fallback
    return Confirm(
        failures=raw.get("failures", fallback.failures),
        successes=raw.get("successes", fallback.successes),
    )


def build_defaults(raw: Mapping[str, Any]) -> Defaults:
    """The ``defaults:`` mapping (schema-validated)."""
    base = Defaults()
    return Defaults(
        interval=parse_duration(raw["interval"]) if "interval" in raw else base.interval,
        timeout=parse_duration(raw["timeout"]) if "timeout" in raw else base.timeout,
        confirm=_build_confirm(raw.get("confirm", {}), base.confirm),
        interval_when_failing=parse_duration(raw["interval_when_failing"])
        if "interval_when_failing" in raw
        else None,
    )


def build_target(
    raw: Mapping[str, Any],
    at: KeyPath,
    source: Source,
    defaults: Defaults,
    api_version: str | None = None,
) -> Target[Any]:
    """The target ``raw`` at ``at``; ``api_version``: the version key of a ``versions:`` matrix
    this target was expanded from, exported as the label ``api_version``."""
    kind = KINDS[raw["kind"]]
    interval = defaults.interval if kind.default_interval is None else kind.default_interval
    if "interval" in raw:
        interval = parse_duration(raw["interval"])
    timeout = parse_duration(raw["timeout"]) if "timeout" in raw else defaults.timeout
    when_failing = defaults.interval_when_failing
    if "interval_when_failing" in raw:
        when_failing = parse_duration(raw["interval_when_failing"])
    if interval <= 0:
        raise ConfigProblem((*at, "interval"), "interval must be greater than 0")
    if timeout <= 0:
        raise ConfigProblem((*at, "timeout"), "timeout must be greater than 0")
    if timeout > interval:
        raise ConfigProblem(
            (*at, "timeout"), f"timeout ({raw.get('timeout', timeout)}) exceeds the interval"
        )
    if when_failing is not None:
        if when_failing > interval:
            if "interval_when_failing" in raw:
                raise ConfigProblem(
                    (*at, "interval_when_failing"),
                    f"interval_when_failing ({raw['interval_when_failing']}) is longer than the "
                    "interval",
                )
            when_failing = interval  # the default is slower than this target's own interval
        if when_failing < timeout:
            raise ConfigProblem(
                (*at, "interval_when_failing"),
                f"interval_when_failing ({format_duration(when_failing)}) is shorter than the "
                f"timeout ({format_duration(timeout)})",
            )
    labels = raw.get("labels", {})
    for name in labels:
        if name in RESERVED_LABELS or name.startswith("__"):
            raise ConfigProblem((*at, "labels", name), f"label {name!r} is reserved")
    if api_version is not None:
        if "api_version" in labels:
            message = "label 'api_version' is set by `versions:` (to each version's key)"
            raise ConfigProblem((*at, "labels", "api_version"), message)
        labels = {**labels, "api_version": api_version}
    return Target(
        name=raw["name"],
        kind=kind,
        interval=interval,
        timeout=timeout,
        labels=source.shared(("labels", *labels.items()), partial(_label_pairs, labels)),
        slo=_shared_slo(raw["slo"], source) if "slo" in raw else None,
        spec=kind.build(raw, at, source),
        confirm=_build_confirm(raw.get("confirm", {}), defaults.confirm),
        sla=round(raw["sla"]["availability"] / 100, 10) if "sla" in raw else None,
        interval_when_failing=None if when_failing == interval else when_failing,
    )


def _label_pairs(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The labels sorted by name. Label names and values repeat across targets: one string
    each (and one tuple for each set of labels, ``Source.shared``) instead of one per target."""
    return tuple(sorted((sys.intern(k), sys.intern(v)) for k, v in labels.items()))


def _shared_slo(raw: Mapping[str, Any], source: Source) -> Slo:
    """The objectives ``raw``, one value for every target that writes them the same way."""
    return source.shared(("slo", repr(raw)), partial(_build_slo, raw))


def _build_slo(raw: Mapping[str, Any]) -> Slo:
    latency = raw.get("latency")
    return Slo(
        availability=round(raw["availability"] / 100, 10) if "availability" in raw else None,
        latency_threshold=parse_duration(latency["threshold"]) if latency else None,
        latency_objective=round(latency["objective"] / 100, 10) if latency else None,
    )
