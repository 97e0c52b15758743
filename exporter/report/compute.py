"""A period's SLA figures from the incident counters Lookout exports.

For every series of ``lookout_probe_downtime_seconds_total`` (and the heartbeat one) seen in
the period, the counters are read every ``step`` seconds from the period's start to its end:

- downtime: the increase of the downtime counter over the period (a drop is a restart: the
  value after it counts from 0), so it is exact to the second whatever the step;
- incidents: the increase of the incident counter, which counts incidents that opened within
  the period;
- the incident list: every run of steps with the same ``..._incident_start_timestamp_seconds``
  is one incident; its duration is the downtime counter's increase across it, its reason the
  failure reason that grew most while it lasted;
- availability: 1 - downtime / the period's length (time without data counts as up; the
  coverage says how much of the period had data);
- MTTR: downtime / incidents; MTBF: (the period's length - downtime) / incidents.

With several locations or replicas a target's figures are those of its worst series (the most
downtime), as in rules/recording/sla.yml; the incident list shows every location's incidents.
A service's availability is the mean of its targets', its MTTR and MTBF pool their incidents.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.report.period import Period
from exporter.report.prometheus import MAX_POINTS, Prometheus, Series

__all__ = [
    "STEPS",
    "Incident",
    "NoData",
    "Report",
    "ServiceFigures",
    "Subject",
    "build",
    "choose_step",
]

# Steps the counters are read at: the finest that keeps a period within Prometheus' limit.
STEPS = (60, 300, 900, 3600, 86400)
QUANTILES = (0.5, 0.95, 0.99)
KINDS = {"target": "lookout_probe_", "heartbeat": "lookout_heartbeat_"}


class NoData(Exception):
    """Prometheus has no Lookout incident series in the period."""


@dataclass(frozen=True, slots=True)
class Incident:
    subject: str  # "target" or "heartbeat"
    name: str
    location: str
    start: float
    duration: float  # seconds, within and beyond the period
    open: bool  # still open at the period's end
    reason: str

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(slots=True)
class Subject:
    """One target's (or heartbeat's) figures over the period."""

    subject: str
    name: str
    service: str
    downtime: float = 0.0
    incidents: int = 0
    coverage: float = 0.0
    sla: float | None = None
    slo: float | None = None
    probes_passed: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    incident_list: list[Incident] = field(default_factory=list)
    availability_chart: list[tuple[float, float]] = field(default_factory=list)
    latency_chart: list[tuple[float, float]] = field(default_factory=list)
    period_seconds: float = 0.0

    @property
    def availability(self) -> float:
        return max(0.0, 1.0 - self.downtime / self.period_seconds)

    @property
    def mttr(self) -> float | None:
        return self.downtime / self.incidents if self.incidents else None

    @property
    def mtbf(self) -> float | None:
        return (self.period_seconds - self.downtime) / self.incidents if self.incidents else None

    @property
    def sla_budget_used(self) -> float | None:
        """Share of the SLA's downtime allowance used (above 1: the SLA is missed)."""
        if self.sla is None or self.sla >= 1:
            return None
        return (1.0 - self.availability) / (1.0 - self.sla)

    @property
    def slo_budget_used(self) -> float | None:
        """Share of the SLO's error budget (failed probes) used."""
        if self.slo is None or self.slo >= 1 or self.probes_passed is None:
            return None
        return (1.0 - self.probes_passed) / (1.0 - self.slo)

    @property
    def meets_sla(self) -> bool | None:
        return None if self.sla is None else self.availability >= self.sla


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    name: str
    targets: int
    availability: float
    downtime: float
    incidents: int
    uptime: float

    @property
    def mttr(self) -> float | None:
        return self.downtime / self.incidents if self.incidents else None

    @property
    def mtbf(self) -> float | None:
        return self.uptime / self.incidents if self.incidents else None


@dataclass(frozen=True, slots=True)
class Report:
    period: Period
    prometheus: str
    step: float
    targets: list[Subject]
    heartbeats: list[Subject]
    services: list[ServiceFigures]


def choose_step(period: Period) -> int:
    for step in STEPS:
        if period.seconds / step < MAX_POINTS - 1:
            return step
    raise ValueError("the period is too long: at most 30 years")


def build(prometheus: Prometheus, period: Period, selector: str = "") -> Report:
    """The report of ``period``; ``NoData`` when no Lookout series has data in it."""
    step = choose_step(period)
    found: dict[str, list[Subject]] = {}
    for subject, prefix in KINDS.items():
        found[subject] = _subjects(prometheus, period, step, subject, prefix, selector)
    if not found["target"] and not found["heartbeat"]:
        where = f" matching {{{selector}}}" if selector else ""
        raise NoData(
            f"no Lookout incident series{where} in Prometheus at {prometheus.url} "
            f"for {period.title}: lookout_probe_downtime_seconds_total and "
            "lookout_heartbeat_downtime_seconds_total have no data in the period"
        )
    _target_figures(prometheus, period, selector, found["target"])
    return Report(
        period,
        prometheus.url,
        step,
        found["target"],
        found["heartbeat"],
        services(found["target"], period),
    )


def _matcher(labels: dict[str, str]) -> str:
    return ", ".join(f'{k}="{_quote(v)}"' for k, v in sorted(labels.items()) if k != "__name__")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _subjects(
    prometheus: Prometheus, period: Period, step: int, subject: str, prefix: str, selector: str
) -> list[Subject]:
    match = f"{prefix}downtime_seconds_total{{{selector}}}"
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for labels in prometheus.series(match, period.start, period.end):
        if subject in labels:
            groups[labels[subject]].append(labels)
    subjects = []
    for name in sorted(groups):
        read = (
            _series_figures(prometheus, period, step, prefix, subject, labels)
            for labels in groups[name]
        )
        figures = [f for f in read if f is not None]
        if not figures:
            continue
        worst = max(figures, key=lambda f: f.downtime)
        worst.incident_list = sorted(
            (incident for f in figures for incident in f.incident_list),
            key=lambda incident: (incident.start, incident.location),
        )
        subjects.append(worst)
    return subjects


def _series_figures(
    prometheus: Prometheus,
    period: Period,
    step: int,
    prefix: str,
    subject: str,
    labels: dict[str, str],
) -> Subject | None:
    match = _matcher(labels)
    read = {
        key: _points(
            prometheus.range(f"{prefix}{metric}{{{match}}}", period.start, period.end, step)
        )
        for key, metric in (
            ("downtime", "downtime_seconds_total"),
            ("incidents", "incidents_total"),
            ("start", "incident_start_timestamp_seconds"),
        )
    }
    downtime = read["downtime"]
    if not downtime:
        return None
    figures = Subject(
        subject, labels[subject], labels.get("service", ""), period_seconds=period.seconds
    )
    figures.downtime = increase(downtime, period.start, step)
    figures.incidents = round(increase(read["incidents"], period.start, step))
    figures.coverage = min(1.0, len(downtime) / max(1, round(period.seconds / step) + 1))
    figures.availability_chart = _availability_chart(downtime, period, step)
    location = labels.get("location") or labels.get("instance", "")
    figures.incident_list = [
        _with_reason(prometheus, prefix, match, incident, period)
        for incident in _incidents(
            subject, labels[subject], location, downtime, read["start"], step
        )
    ]
    return figures


def _points(result: Sequence[Series]) -> list[tuple[float, float]]:
    return list(result[0].points) if result else []


def increase(points: Sequence[tuple[float, float]], start: float, step: float) -> float:
    """The counter's increase over ``points``; a drop is a restart, after which the counter
    counts from 0; a series that first appears after the start counts from 0."""
    if not points:
        return 0.0
    total = points[0][1] if points[0][0] > start + step else 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total


def _incidents(
    subject: str,
    name: str,
    location: str,
    downtime: Sequence[tuple[float, float]],
    starts: Sequence[tuple[float, float]],
    step: float,
) -> Iterable[Incident]:
    counter = dict(downtime)
    times = [t for t, _ in downtime]
    began = dict(starts)
    index = 0
    while index < len(times):
        at = times[index]
        if at not in began:
            index += 1
            continue
        start = began[at]
        first = index
        while index + 1 < len(times) and began.get(times[index + 1]) == start:
            index += 1
        last = index
        before = counter[times[first - 1]] if first > 0 else None
        closed = last + 1 < len(times)
        until = counter[times[last + 1]] if closed else counter[times[last]]
        if before is None or until < before:  # began before the data, or a restart within
            duration = until - counter[times[first]] + max(0.0, times[first] - start)
        else:
            duration = until - before
        yield Incident(subject, name, location, start, max(0.0, duration), not closed, "")
        index += 1


def _with_reason(
    prometheus: Prometheus, prefix: str, match: str, incident: Incident, period: Period
) -> Incident:
    """The incident with the failure reason that grew most while it lasted (probes only)."""
    if prefix != "lookout_probe_":
        return incident
    end = min(period.end, incident.end + 1)
    window = max(1, math.ceil(end - max(period.start, incident.start) + 1))
    query = f"sum by (reason) (increase(lookout_probe_failures_total{{{match}}}[{window}s]))"
    grown = [(s.points[0][1], s.labels.get("reason", "")) for s in prometheus.instant(query, end)]
    grown = [(value, reason) for value, reason in grown if value > 0]
    if not grown:
        return incident
    reason = max(grown)[1]
    return Incident(
        incident.subject,
        incident.name,
        incident.location,
        incident.start,
        incident.duration,
        incident.open,
        reason,
    )


def _bucket(period: Period) -> float:
    """Chart bars: a day each, an hour each for periods under three days."""
    return 86400.0 if period.seconds >= 3 * 86400 else 3600.0


def _availability_chart(
    downtime: Sequence[tuple[float, float]], period: Period, step: float
) -> list[tuple[float, float]]:
    bucket = _bucket(period)
    chart = []
    at = period.start
    while at < period.end:
        until = min(period.end, at + bucket)
        inside = [(t, v) for t, v in downtime if at <= t <= until]
        down = increase(inside, at, step) if inside and inside[0][0] <= at + step else 0.0
        if inside and inside[0][0] > at + step:  # the series began within this bar
            down = increase(inside, inside[0][0], step)
        chart.append((at, max(0.0, 1.0 - down / (until - at))))
        at = until
    return chart


def _by_name(result: Iterable[Series], label: str = "target") -> dict[str, float]:
    values = {}
    for series in result:
        if series.points and not math.isnan(series.points[-1][1]):
            values[series.labels.get(label, "")] = series.points[-1][1]
    return values


def _target_figures(
    prometheus: Prometheus, period: Period, selector: str, targets: list[Subject]
) -> None:
    """Objectives, the share of passed probes and latency percentiles of every target."""
    if not targets:
        return
    window = f"{max(1, math.ceil(period.seconds))}s"
    at = f"@ {period.end:.3f}"
    scope = f"{{{selector}}}" if selector else ""
    inner = f"{{{selector}, " if selector else "{"

    def query(expr: str) -> dict[str, float]:
        return _by_name(prometheus.instant(expr, period.end))

    sla = query(
        f"max by (target) (max_over_time(lookout_probe_sla_objective_ratio{scope}[{window}] {at}))"
    )
    slo = query(
        "max by (target) (max_over_time(lookout_probe_slo_objective_ratio"
        f'{inner}slo="availability"}}[{window}] {at}))'
    )
    probes = query(
        f"sum by (target) (increase(lookout_probe_duration_seconds_count{scope}[{window}] {at}))"
        " or sum by (target) (histogram_count(increase(lookout_probe_duration_seconds"
        f"{scope}[{window}] {at})))"
    )
    failed = query(
        f"sum by (target) (increase(lookout_probe_failures_total{scope}[{window}] {at}))"
    )
    latency = {
        q: query(
            f"histogram_quantile({q}, sum by (target, le) (increase("
            f"lookout_probe_duration_seconds_bucket{scope}[{window}] {at})))"
            f" or histogram_quantile({q}, sum by (target) (increase("
            f"lookout_probe_duration_seconds{scope}[{window}] {at})))"
        )
        for q in QUANTILES
    }
    bucket = _bucket(period)
    chart: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if period.seconds >= bucket:
        for series in prometheus.range(
            f"histogram_quantile(0.95, sum by (target, le) (increase("
            f"lookout_probe_duration_seconds_bucket{scope}[{int(bucket)}s])))"
            f" or histogram_quantile(0.95, sum by (target) (increase("
            f"lookout_probe_duration_seconds{scope}[{int(bucket)}s])))",
            period.start + bucket,
            period.end,
            bucket,
        ):
            name = series.labels.get("target", "")
            chart[name] = [(t - bucket, v) for t, v in series.points if not math.isnan(v)]
    for target in targets:
        target.sla = sla.get(target.name)
        target.slo = slo.get(target.name)
        total = probes.get(target.name)
        if total:
            target.probes_passed = max(0.0, 1.0 - failed.get(target.name, 0.0) / total)
        target.latency = {
            f"p{round(q * 100)}": values[target.name]
            for q, values in latency.items()
            if target.name in values and not math.isnan(values[target.name])
        }
        target.latency_chart = chart.get(target.name, [])


def services(targets: Sequence[Subject], period: Period) -> list[ServiceFigures]:
    grouped: dict[str, list[Subject]] = defaultdict(list)
    for target in targets:
        if target.service:
            grouped[target.service].append(target)
    return [
        ServiceFigures(
            name,
            len(members),
            sum(m.availability for m in members) / len(members),
            sum(m.downtime for m in members),
            sum(m.incidents for m in members),
            sum(period.seconds - m.downtime for m in members),
        )
        for name, members in sorted(grouped.items())
    ]
