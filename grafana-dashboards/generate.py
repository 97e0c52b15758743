#!/usr/bin/env python3
"""Generates Lookout's Grafana dashboards as provisioning-ready JSON.

Dashboards are code so that nobody hand-edits thousands of lines of JSON: this script builds them
with grafana-foundation-sdk (the ``dashboards`` dependency group) and writes one file per
dashboard beside it. ``tests/test_dashboards.py`` regenerates them and fails on any difference.

    python grafana-dashboards/generate.py          # rewrite the JSON files
    python grafana-dashboards/generate.py --check  # exit 1 when a file is out of date

Every query is scoped by the common variables (``job``, ``instance``, ``location``) and reads the
exporter's raw metrics, so the dashboards work without the bundled recording rules. The one
exception is the SLA dashboard's MTTR and MTBF trends: a rolling 7-day figure at every point of a
month is what the rules of ``rules/recording/sla.yml`` record every minute, and computing it from
the raw counters would read 7 days of samples per point and series (see ``recorded_trend``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from itertools import count
from pathlib import Path
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = ["DASHBOARDS", "render", "write"]

HERE = Path(__file__).resolve().parent
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "lookout"

# Label matchers shared by the queries. The job and instance variables list only Lookout's own
# jobs and instances, so "All" never widens a query to other exporters' series; location's "All"
# is ".*" so that it also matches exporters that run without --location.
SCOPE = 'job=~"$job", instance=~"$instance"'
PROBES = SCOPE + ', location=~"$location"'
TARGET = PROBES + ', target="$target"'
HEARTBEATS = SCOPE + ', heartbeat=~"$heartbeat"'

# Heartbeat states as numbers, in order of severity (the worst replica wins under max by).
HEARTBEAT_STATES: tuple[tuple[str, int, str], ...] = (
    ("new", 0, "text"),
    ("up", 1, "green"),
    ("running", 2, "blue"),
    ("late", 3, "orange"),
    ("down", 4, "red"),
    ("failed", 5, "dark-red"),
)
DAY = 86400
# A target name up to its "@version" (a `versions:` matrix names its targets NAME@VERSION), as
# the regex of a Grafana variable: the first capture group becomes the value.
BASE_NAME = "/^([^@]+)/"


class PanelBuilder(Protocol):
    """What every panel builder of the SDK offers and what ``panel`` sets on each of them."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: models.DataSourceRef) -> Self: ...
    def with_target(self, target: Builder[Dataquery]) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def data_links(self, links: list[Builder[models.DashboardLink]]) -> Self: ...
    def build(self) -> models.Panel: ...


P = TypeVar("P", bound=PanelBuilder)
Panels = list[Builder[models.Panel]]


class Numbered(Builder[models.Panel]):
    """A built panel with its id; ids follow the order of the panels on the dashboard."""

    def __init__(self, panel: Builder[models.Panel], id_val: int) -> None:
        self._panel = panel.build()
        self._panel.id_val = id_val

    def build(self) -> models.Panel:
        return self._panel


class Query:
    """One PromQL query of a panel and its legend; the panel decides how it runs: instant for
    stat, bar gauge and table panels, as a table for tables, as buckets for heatmaps."""

    def __init__(self, expr: str, legend: str = "") -> None:
        self.expr = " ".join(expr.split())
        self.legend = legend

    def build(self, ref_id: str, *, instant: bool, form: PromQueryFormat) -> prometheus.Dataquery:
        query = prometheus.Dataquery().ref_id(ref_id).datasource(DATASOURCE).expr(self.expr)
        query = query.format(form)
        if self.legend:
            query = query.legend_format(self.legend)
        return query.instant() if instant else query.range()


def panel(
    builder: P,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    links: Sequence[dashboard.DashboardLink] = (),
    instant: bool = False,
    form: PromQueryFormat = PromQueryFormat.TIME_SERIES,
) -> P:
    """Sets what every panel must have: title, description, unit, data source and queries."""
    built = (
        builder.title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )
    for index, query in enumerate(queries):
        built = built.with_target(query.build(chr(ord("A") + index), instant=instant, form=form))
    if links:
        built = built.data_links(list(links))
    return built


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps(
            [models.Threshold(value=None, color=base)] + [models.Threshold(v, c) for v, c in steps]
        )
    )


def value_map(*pairs: tuple[str, str, str]) -> models.ValueMap:
    """Maps exact values to text and color: ``("1", "up", "green")``."""
    return models.ValueMap(
        options={
            value: models.ValueMappingResult(text=text, color=color, index=index)
            for index, (value, text, color) in enumerate(pairs)
        }
    )


def range_map(low: float, high: float, text: str, color: str, index: int) -> models.RangeMap:
    return models.RangeMap(
        options=models.DashboardRangeMapOptions(
            from_val=low,
            to=high,
            result=models.ValueMappingResult(text=text, color=color, index=index),
        )
    )


SUCCESS_MAPPINGS: list[models.ValueMapping] = [
    value_map(("1", "up", "green"), ("0", "down", "red")),
    range_map(0.000001, 0.999999, "down somewhere", "orange", 2),
]
HEARTBEAT_MAPPINGS: list[models.ValueMapping] = [
    value_map(*((str(code), name, color) for name, code, color in HEARTBEAT_STATES))
]
YES_NO_MAPPINGS: list[models.ValueMapping] = [value_map(("1", "yes", "green"), ("0", "no", "red"))]


def heartbeat_state(matchers: str) -> str:
    """One number per heartbeat for its current state (see HEARTBEAT_STATES)."""
    parts = [
        f'(lookout_heartbeat_status{{{matchers}, status="{name}"}} == 1) * {code}'
        for name, code, _ in HEARTBEAT_STATES
    ]
    return "max by (heartbeat) (" + " or ".join(parts) + ")"


DURATION = "lookout_probe_duration_seconds"
STEP_DURATION = "lookout_flow_step_duration_seconds"
LAG = "lookout_scheduler_lag_seconds"


def quantile(q: float, histogram: str, matchers: str, by: str, window: str) -> str:
    """The ``q`` quantile of ``histogram`` per ``by`` labels: from its native buckets where
    Prometheus ingests those (one series, no le), else from its classic _bucket series. Both
    sides give the same label sets, so where Prometheus keeps both the native side wins."""
    group = f"sum by ({by})" if by else "sum"
    classic_by = f"{by}, le" if by else "le"
    native = f"histogram_quantile({q}, {group} (rate({histogram}{{{matchers}}}[{window}])))"
    classic = (
        f"histogram_quantile({q}, sum by ({classic_by}) "
        f"(rate({histogram}_bucket{{{matchers}}}[{window}])))"
    )
    return f"({native} or {classic})"


def observations(histogram: str, matchers: str, window: str, function: str = "increase") -> str:
    """Observations of ``histogram`` per series over ``window`` (``function`` increase or rate):
    a native histogram's count, else the classic _count series."""
    return (
        f"(histogram_count({function}({histogram}{{{matchers}}}[{window}])) "
        f"or {function}({histogram}_count{{{matchers}}}[{window}]))"
    )


def failure_ratio(matchers: str, by: str, window: str) -> str:
    """Failed probes / all probes; 0 (not nothing) for targets that never failed."""
    total = f"sum by ({by}) ({observations(DURATION, matchers, window)})"
    failed = f"sum by ({by}) (increase(lookout_probe_failures_total{{{matchers}}}[{window}]))"
    return f"(({failed} or 0 * {total}) / {total})"


def link(title: str, uid: str, params: Sequence[str]) -> dashboard.DashboardLink:
    """A data link to another Lookout dashboard that keeps the time range and data source."""
    query = "&".join([*params, "${datasource:queryparam}", "${__url_time_range}"])
    return dashboard.DashboardLink(title).url(f"/d/{uid}/{uid}?{query}")


def to_endpoint(target: str) -> dashboard.DashboardLink:
    return link(
        "Endpoint detail",
        "lookout-endpoint",
        [
            f"var-target={target}",
            "${job:queryparam}",
            "${instance:queryparam}",
            "${location:queryparam}",
        ],
    )


def to_heartbeat(heartbeat: str) -> dashboard.DashboardLink:
    return link(
        "Heartbeat detail",
        "lookout-heartbeats",
        [f"var-heartbeat={heartbeat}", "${job:queryparam}", "${instance:queryparam}"],
    )


def to_host(instance: str) -> dashboard.DashboardLink:
    return link("Host detail", "lookout-host", ["${job:queryparam}", f"var-instance={instance}"])


def legend_table() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(common_models.LegendDisplayMode.TABLE)
        .placement(common_models.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
        .sort_by("Max")
        .sort_desc(True)
    )


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
    links: Sequence[dashboard.DashboardLink] = (),
    dashed: Sequence[str] = (),
) -> timeseries.Panel:
    """Time series; ``dashed`` names the refIds of limit lines (thresholds, expected values)."""
    built = panel(
        timeseries.Panel(),
        title,
        description,
        unit,
        queries,
        width=width,
        height=height,
        links=links,
    )
    built = built.legend(legend_table()).fill_opacity(10).line_width(1)
    if stacked:
        built = built.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
        built = built.fill_opacity(60)
    if bars:
        built = built.draw_style(common_models.GraphDrawStyle.BARS).fill_opacity(80)
    for ref_id in dashed:
        built = built.override_by_query(
            ref_id,
            [
                models.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                ),
                models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ],
        )
    return built


def single(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    width: int = 4,
    height: int = 4,
    steps: dashboard.ThresholdsConfig | None = None,
    mappings: list[models.ValueMapping] | None = None,
    no_value: str | None = None,
    links: Sequence[dashboard.DashboardLink] = (),
) -> stat.Panel:
    """A stat of one instant query."""
    built = panel(
        stat.Panel(),
        title,
        description,
        unit,
        [Query(expr)],
        width=width,
        height=height,
        links=links,
        instant=True,
    )
    built = built.color_mode(common_models.BigValueColorMode.BACKGROUND).graph_mode(
        common_models.BigValueGraphMode.NONE
    )
    built = built.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    if steps is not None:
        built = built.thresholds(steps)
    if mappings is not None:
        built = built.mappings(mappings)
    if no_value is not None:
        built = built.no_value(no_value)
    return built


def bars(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    steps: dashboard.ThresholdsConfig,
    width: int = 12,
    height: int = 8,
    low: float | None = None,
    high: float | None = None,
    links: Sequence[dashboard.DashboardLink] = (),
) -> bargauge.Panel:
    built = panel(
        bargauge.Panel(),
        title,
        description,
        unit,
        queries,
        width=width,
        height=height,
        links=links,
        instant=True,
    )
    built = (
        built.display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(steps)
    )
    if low is not None:
        built = built.min(low)
    if high is not None:
        built = built.max(high)
    return built


def timeline(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    mappings: list[models.ValueMapping] | None = None,
    steps: dashboard.ThresholdsConfig | None = None,
    width: int = 12,
    height: int = 8,
    links: Sequence[dashboard.DashboardLink] = (),
) -> statetimeline.Panel:
    """State timeline; values become text and colors through ``mappings`` or ``steps``."""
    built = panel(
        statetimeline.Panel(),
        title,
        description,
        "none",
        queries,
        width=width,
        height=height,
        links=links,
    )
    built = built.show_value(common_models.VisibilityMode.NEVER).fill_opacity(80).line_width(0)
    if mappings is not None:
        built = built.mappings(mappings).color_scheme(
            dashboard.FieldColor().mode(models.FieldColorModeId.THRESHOLDS)
        )
    if steps is not None:
        built = built.thresholds(steps).color_scheme(
            dashboard.FieldColor().mode(models.FieldColorModeId.THRESHOLDS)
        )
    return built


def grid(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    join_on: str,
    columns: dict[str, tuple[str, str] | None],
    width: int = 24,
    height: int = 8,
    mappings: dict[str, list[models.ValueMapping]] | None = None,
    links: Sequence[dashboard.DashboardLink] = (),
) -> table.Panel:
    """A table joining instant queries on one label; ``columns`` maps field names ("Value #A",
    label names) to (header, unit), or to None to hide the field."""
    built = panel(
        table.Panel(),
        title,
        description,
        unit,
        queries,
        width=width,
        height=height,
        instant=True,
        form=PromQueryFormat.TABLE,
    )
    hidden = {"Time": True, **{f"Time {i}": True for i in range(1, len(queries) + 1)}}
    hidden |= {field: True for field, column in columns.items() if column is None}
    built = built.with_transformation(
        models.DataTransformerConfig(
            id_val="joinByField", options={"byField": join_on, "mode": "outer"}
        )
    ).with_transformation(
        models.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": hidden,
                "renameByName": {
                    field: column[0] for field, column in columns.items() if column is not None
                },
            },
        )
    )
    for field, column in columns.items():
        if column is None:
            continue
        properties = [models.DynamicConfigValue(id_val="unit", value=column[1])]
        if mappings and field in mappings:
            properties.append(models.DynamicConfigValue(id_val="mappings", value=mappings[field]))
            properties.append(
                models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})
            )
        # Overrides match the name a field is shown with, so after the rename.
        built = built.override_by_name(column[0], properties)
    if links:
        built = built.override_by_name(
            join_on,
            [models.DynamicConfigValue(id_val="links", value=[item.build() for item in links])],
        )
    return built


# ----------------------------------------------------------------------------------------------
# Variables and the dashboard frame


def datasource_variable() -> dashboard.DatasourceVariable:
    return (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("Prometheus that scrapes the Lookout exporters.")
    )


def query_variable(
    name: str,
    label: str,
    query: str,
    description: str,
    *,
    multi: bool = True,
    all_value: str | None = None,
) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        # Opens on "All" rather than on whichever value happens to sort first.
        variable = variable.current(
            models.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    if all_value is not None:
        variable = variable.all_value(all_value)
    return variable


def common_variables() -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    return [
        datasource_variable(),
        query_variable(
            "job",
            "Job",
            "label_values(lookout_build_info, job)",
            "Prometheus jobs that scrape a Lookout exporter.",
        ),
        query_variable(
            "location",
            "Location",
            (
                'label_values({__name__=~"lookout_probe_duration_seconds'
                '|lookout_probe_duration_seconds_count", job=~"$job"}, location)'
            ),
            "Where the probes run (the exporter's --location). Narrows probe panels and the "
            "instance list; All also matches exporters without a location.",
            all_value=".*",
        ),
        query_variable(
            "instance",
            "Instance",
            "label_values({__name__=~"
            '"lookout_build_info|lookout_probe_duration_seconds|lookout_probe_duration_seconds_count"'
            ', job=~"$job", location=~"$location"}, instance)',
            "Exporter instances of the selected jobs (and locations).",
        ),
    ]


def frame(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[
        dashboard.DatasourceVariable | dashboard.QueryVariable | dashboard.CustomVariable
    ],
    rows: Sequence[tuple[str, Sequence[Builder[models.Panel]]]],
    *,
    since: str = "now-6h",
) -> dashboard.Dashboard:
    """The dashboard around the panels: uid, variables, links to its siblings, ids and rows."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .refresh("1m")
        .time(since, "now")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("Lookout")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        board = board.with_variable(variable)
    ids = count(1)
    for row_title, panels in rows:
        board = board.with_row(dashboard.Row(row_title).id(next(ids)))
        for item in panels:
            board = board.with_panel(Numbered(item, next(ids)))
    return board


# ----------------------------------------------------------------------------------------------
# Overview


def overview() -> dashboard.Dashboard:
    all_heartbeats = SCOPE
    at_a_glance: Panels = [
        single(
            "Targets failing",
            "Targets whose latest probe failed from at least one location.",
            "none",
            f"sum(1 - min by (target) (lookout_probe_success{{{PROBES}}}))",
            steps=thresholds("green", (1, "red")),
        ),
        single(
            "Heartbeats in trouble",
            "Heartbeats that are late, down or whose last run failed.",
            "none",
            "sum(max by (heartbeat) (lookout_heartbeat_status"
            f'{{{all_heartbeats}, status=~"late|down|failed"}}))',
            steps=thresholds("green", (1, "red")),
        ),
        single(
            "Certificates expiring in 14 days",
            "Targets whose presented certificate chain expires within 14 days (or already has).",
            "none",
            "sum(min by (target) (lookout_tls_cert_expiry_timestamp_seconds"
            f"{{{PROBES}}}) - time() < bool {14 * DAY})",
            steps=thresholds("green", (1, "orange")),
        ),
        single(
            "Exporters down",
            "Lookout exporters Prometheus could not scrape (up == 0).",
            "none",
            f"sum(1 - up{{{SCOPE}}})",
            steps=thresholds("green", (1, "red")),
        ),
        single(
            "Exporters blind",
            "Lookout exporters whose connectivity canaries all fail: their probe failures are "
            "recorded as exporter_offline and the alerts leave their location out.",
            "none",
            f"sum(1 - lookout_exporter_connectivity_ok{{{SCOPE}}}) or vector(0)",
            steps=thresholds("green", (1, "red")),
        ),
        single(
            "In maintenance",
            "Targets and heartbeats that an open maintenance window covers; the bundled alerts "
            "do not page for them.",
            "none",
            f"count(max by (target, heartbeat) (lookout_maintenance_active{{{SCOPE}}}) == 1) "
            "or vector(0)",
            steps=thresholds("green", (1, "blue")),
        ),
        single(
            "Config reloads failing",
            "Exporters whose last configuration reload failed; they keep running the old one.",
            "none",
            f"sum(1 - lookout_config_last_reload_successful{{{SCOPE}}})",
            steps=thresholds("green", (1, "orange")),
        ),
        single(
            "Targets",
            "Targets configured on the selected exporters, all kinds.",
            "short",
            f"sum(lookout_targets{{{SCOPE}}})",
            steps=thresholds("blue"),
        ),
    ]
    state: Panels = [
        timeline(
            "Targets",
            "Result of the latest probe of every target: up, down, or down from some locations "
            "only. Click a target for its endpoint dashboard.",
            [Query(f"avg by (target) (lookout_probe_success{{{PROBES}}})", "{{target}}")],
            mappings=SUCCESS_MAPPINGS,
            height=10,
            links=[to_endpoint("${__field.labels.target}")],
        ),
        timeline(
            "Heartbeats",
            "State of every heartbeat (the worst replica wins). Click one for its heartbeat "
            "dashboard.",
            [Query(heartbeat_state(all_heartbeats), "{{heartbeat}}")],
            mappings=HEARTBEAT_MAPPINGS,
            height=10,
            links=[to_heartbeat("${__field.labels.heartbeat}")],
        ),
    ]
    budget_steps = thresholds("red", (0, "orange"), (0.25, "green"))
    objectives: Panels = [
        bars(
            "Availability over the selected range",
            "Share of passed probes over the dashboard's time range, for targets with an "
            "availability SLO.",
            "percentunit",
            [
                Query(
                    f"1 - {failure_ratio(PROBES, 'target', '$__range')} and on (target) "
                    f'lookout_probe_slo_objective_ratio{{{PROBES}, slo="availability"}}',
                    "{{target}}",
                )
            ],
            steps=thresholds("red", (0.99, "orange"), (0.999, "green")),
            links=[to_endpoint("${__field.labels.target}")],
        ),
        bars(
            "Error budget remaining ($slo_window)",
            "Share of the error budget left over the SLO window: 1 - bad ratio / (1 - objective). "
            "Availability counts failed probes, latency counts probes slower than the target's "
            "threshold. Below 0 the objective is missed.",
            "percentunit",
            [
                Query(
                    f"1 - {failure_ratio(PROBES, 'target', '$slo_window')} / on (target) "
                    "(1 - max by (target) (lookout_probe_slo_objective_ratio"
                    f'{{{PROBES}, slo="availability"}}))',
                    "{{target}} availability",
                ),
                Query(
                    "1 - (sum by (target) (increase(lookout_probe_slow_total"
                    f"{{{PROBES}}}[$slo_window])) / sum by (target) "
                    f"({observations(DURATION, PROBES, '$slo_window')})) "
                    "/ on (target) (1 - max by (target) (lookout_probe_slo_objective_ratio"
                    f'{{{PROBES}, slo="latency"}}))',
                    "{{target}} latency",
                ),
            ],
            steps=budget_steps,
            low=0,
            high=1,
            links=[to_endpoint("${__field.labels.target}")],
        ),
    ]
    failures: Panels = [
        graph(
            "Failures by reason",
            "Failed probes per minute over all selected targets, by failure reason.",
            "cpm",
            [
                Query(
                    "60 * sum by (reason) (rate(lookout_probe_failures_total"
                    f"{{{PROBES}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            stacked=True,
            bars=True,
        ),
        bars(
            "Most failures over the selected range",
            "The ten target and reason pairs with the most failed probes in the time range.",
            "short",
            [
                Query(
                    "topk(10, sum by (target, reason) (increase(lookout_probe_failures_total"
                    f"{{{PROBES}}}[$__range])) > 0)",
                    "{{target}}: {{reason}}",
                )
            ],
            steps=thresholds("orange"),
            links=[to_endpoint("${__field.labels.target}")],
        ),
        bars(
            "Slowest targets (p95 over the selected range)",
            "The ten targets with the highest 95th percentile probe duration in the time range "
            "(interpolated within native buckets, or within the classic buckets without them).",
            "s",
            [
                Query(
                    f"topk(10, {quantile(0.95, DURATION, PROBES, 'target', '$__range')})",
                    "{{target}}",
                )
            ],
            steps=thresholds("green", (1, "orange"), (5, "red")),
            links=[to_endpoint("${__field.labels.target}")],
        ),
        graph(
            "p95 probe duration by target",
            "95th percentile of probe durations per target over time.",
            "s",
            [
                Query(
                    quantile(0.95, DURATION, PROBES, "target", "$__rate_interval"),
                    "{{target}}",
                )
            ],
            links=[to_endpoint("${__field.labels.target}")],
        ),
    ]
    certificates_and_heartbeats: Panels = [
        grid(
            "Soonest-expiring certificates",
            "The ten targets whose presented certificate chain expires first (also when the "
            "chain failed verification).",
            "dtdurations",
            [
                Query(
                    "bottomk(10, min by (target) (lookout_tls_cert_expiry_timestamp_seconds"
                    f"{{{PROBES}}}) - time())"
                )
            ],
            join_on="target",
            columns={"Value": ("Expires in", "dtdurations")},
            width=12,
            links=[to_endpoint("${__data.fields.target}")],
        ),
        grid(
            "Late, down or failed heartbeats",
            "Heartbeats that need attention, with the time since their last success.",
            "dtdurations",
            [
                Query(
                    "max by (heartbeat, status) (lookout_heartbeat_status"
                    f'{{{all_heartbeats}, status=~"late|down|failed"}} == 1)'
                ),
                Query(
                    f"max by (heartbeat) (lookout_heartbeat_age_seconds{{{all_heartbeats}}}) "
                    "and on (heartbeat) max by (heartbeat) (lookout_heartbeat_status"
                    f'{{{all_heartbeats}, status=~"late|down|failed"}} == 1)'
                ),
            ],
            join_on="heartbeat",
            columns={
                "status": ("State", "none"),
                "Value #A": None,
                "Value #B": ("Since last success", "dtdurations"),
            },
            width=12,
            links=[to_heartbeat("${__data.fields.heartbeat}")],
        ),
    ]
    dependencies: Panels = [
        grid(
            "Soonest-expiring domains",
            "The ten domain targets whose registration expires first (RDAP expiration event).",
            "dtdurations",
            [
                Query(
                    "bottomk(10, min by (target) (lookout_domain_expiry_timestamp_seconds"
                    f"{{{PROBES}}}) - time())"
                )
            ],
            join_on="target",
            columns={"Value": ("Expires in", "dtdurations")},
            width=8,
            links=[to_endpoint("${__data.fields.target}")],
        ),
        grid(
            "gRPC health",
            "Serving status every gRPC target's latest health check answered (worst location "
            "first: any status but SERVING shows).",
            "none",
            [Query(f"max by (target, status) (lookout_grpc_health_status{{{PROBES}}} == 1)")],
            join_on="target",
            columns={"status": ("Serving status", "none"), "Value": None},
            width=8,
            links=[to_endpoint("${__data.fields.target}")],
        ),
        graph(
            "Packet loss",
            "Share of echo requests without a reply in the latest probe of every ICMP target "
            "(worst location).",
            "percentunit",
            [
                Query(
                    f"max by (target) (lookout_icmp_packet_loss_ratio{{{PROBES}}})",
                    "{{target}}",
                )
            ],
            width=8,
            links=[to_endpoint("${__field.labels.target}")],
        ),
    ]
    versioned = PROBES + ', api_version!=""'
    versions: Panels = [
        grid(
            "API versions",
            "Every version of a `versions:` matrix (label api_version): whether it answers as "
            "expected from every location, the removal date its Sunset header announces (RFC "
            "8594) and the date its Deprecation header gives (RFC 9745); empty without them.",
            "none",
            [
                Query(f"min by (target, api_version) (lookout_probe_success{{{versioned}}})"),
                Query(
                    f"min by (target) (lookout_http_sunset_timestamp_seconds{{{versioned}}}) * 1000"
                ),
                Query(
                    "max by (target) (lookout_http_deprecation_timestamp_seconds"
                    f"{{{versioned}}}) * 1000"
                ),
            ],
            join_on="target",
            columns={
                "api_version": ("Version", "none"),
                "Value #A": ("Up", "none"),
                "Value #B": ("Sunset", "dateTimeAsIso"),
                "Value #C": ("Deprecated since", "dateTimeAsIso"),
            },
            mappings={"Value #A": YES_NO_MAPPINGS},
            links=[to_endpoint("${__data.fields.target}")],
        ),
    ]
    machines: Panels = [
        graph(
            "Host saturation",
            "Per exporter host: CPU busy share, memory in use, the fullest filesystem and the "
            "5-minute load per CPU. Click a series for the host dashboard.",
            "percentunit",
            [
                Query(
                    "1 - sum by (instance) (rate(lookout_host_cpu_seconds_total"
                    f'{{{SCOPE}, mode=~"idle|iowait"}}[$__rate_interval])) / sum by (instance) '
                    f"(rate(lookout_host_cpu_seconds_total{{{SCOPE}}}[$__rate_interval]))",
                    "{{instance}} CPU",
                ),
                Query(
                    "1 - max by (instance) (lookout_host_memory_available_bytes"
                    f"{{{SCOPE}}}) / max by (instance) "
                    f"(lookout_host_memory_total_bytes{{{SCOPE}}})",
                    "{{instance}} memory",
                ),
                Query(
                    "max by (instance) (1 - lookout_host_filesystem_avail_bytes"
                    f"{{{SCOPE}}} / (lookout_host_filesystem_size_bytes{{{SCOPE}}} > 0))",
                    "{{instance}} fullest filesystem",
                ),
                Query(
                    f"max by (instance) (lookout_host_load5{{{SCOPE}}}) / max by (instance) "
                    f"(lookout_host_cpus{{{SCOPE}}})",
                    "{{instance}} load per CPU",
                ),
            ],
            links=[to_host("${__field.labels.instance}")],
        ),
        grid(
            "Exporter health",
            "Every selected exporter: scrape status, config reload, version, targets, probe "
            "rate and the 99th percentile scheduler lag over the time range.",
            "none",
            [
                Query(f"max by (instance) (up{{{SCOPE}}})"),
                Query(f"max by (instance) (lookout_config_last_reload_successful{{{SCOPE}}})"),
                Query(f"max by (instance, version) (lookout_build_info{{{SCOPE}}})"),
                Query(f"sum by (instance) (lookout_targets{{{SCOPE}}})"),
                Query(f"sum by (instance) (rate(lookout_probe_runs_total{{{SCOPE}}}[$__range]))"),
                Query(quantile(0.99, LAG, SCOPE, "instance", "$__range")),
            ],
            join_on="instance",
            columns={
                "Value #A": ("Up", "none"),
                "Value #B": ("Config loaded", "none"),
                "version": ("Version", "none"),
                "Value #C": None,
                "Value #D": ("Targets", "short"),
                "Value #E": ("Probes", "ops"),
                "Value #F": ("Scheduler lag p99", "s"),
            },
            mappings={"Value #A": YES_NO_MAPPINGS, "Value #B": YES_NO_MAPPINGS},
            width=12,
            links=[to_host("${__data.fields.instance}")],
        ),
    ]
    slo_window = (
        dashboard.CustomVariable("slo_window")
        .label("SLO window")
        .description("Window of the error budget: 30 days unless your SLOs say otherwise.")
        .values("30d,28d,7d,1d")
        .current(models.VariableOption(selected=True, text="30d", value="30d"))
    )
    return frame(
        "lookout-overview",
        "Lookout / Overview",
        "Every target, heartbeat and exporter host at a glance; the landing page of Lookout.",
        [*common_variables(), slo_window],
        [
            ("At a glance", at_a_glance),
            ("State", state),
            ("Service level objectives", objectives),
            ("Failures and latency", failures),
            ("Certificates and heartbeats", certificates_and_heartbeats),
            ("gRPC, ICMP and domains", dependencies),
            ("API versions", versions),
            ("Hosts and exporters", machines),
        ],
    )


# ----------------------------------------------------------------------------------------------
# Endpoint detail


def endpoint() -> dashboard.Dashboard:
    total = f"sum({observations(DURATION, TARGET, '$__range')})"
    buckets = f"{DURATION}_bucket{{{TARGET}}}"
    now: Panels = [
        single(
            "State",
            "Result of the latest probe; 'down somewhere' when it fails from some locations only.",
            "none",
            f"avg(lookout_probe_success{{{TARGET}}})",
            mappings=SUCCESS_MAPPINGS,
        ),
        single(
            "Availability",
            "Share of passed probes over the selected time range.",
            "percentunit",
            f"1 - (sum(increase(lookout_probe_failures_total{{{TARGET}}}[$__range])) "
            f"or 0 * {total}) / {total}",
            steps=thresholds("red", (0.99, "orange"), (0.999, "green")),
        ),
        single(
            "p95 duration",
            "95th percentile probe duration over the selected time range.",
            "s",
            quantile(0.95, DURATION, TARGET, "", "$__range"),
            steps=thresholds("green", (1, "orange"), (5, "red")),
        ),
        single(
            "HTTP status",
            "Status code of the latest HTTP probe (n/a for other kinds).",
            "none",
            f"max(lookout_http_status_code{{{TARGET}}})",
            steps=thresholds("green", (300, "blue"), (400, "orange"), (500, "red")),
            no_value="n/a",
        ),
        single(
            "Certificate expires in",
            "Time until the earliest NotAfter of the presented chain (n/a without TLS).",
            "dtdurations",
            f"min(lookout_tls_cert_expiry_timestamp_seconds{{{TARGET}}}) - time()",
            steps=thresholds("red", (7 * DAY, "orange"), (21 * DAY, "green")),
            no_value="n/a",
        ),
        single(
            "Last probe",
            "Time since the latest probe finished; more than the interval plus timeout means the "
            "scheduler is behind or the target was removed.",
            "s",
            f"time() - max(lookout_probe_last_run_timestamp_seconds{{{TARGET}}})",
            steps=thresholds("blue"),
        ),
    ]
    latency: Panels = [
        graph(
            "Duration percentiles",
            "Percentiles of the probe duration from the histogram, with the latency SLO "
            "threshold when the target has one.",
            "s",
            [
                *(
                    Query(
                        quantile(q, DURATION, TARGET, "", "$__rate_interval"),
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.9, 0.95, 0.99)
                ),
                Query(f"max(lookout_probe_latency_threshold_seconds{{{TARGET}}})", "SLO threshold"),
            ],
            dashed=["E"],
        ),
        panel(
            heatmap.Panel(),
            "Duration distribution",
            "Probes per duration bucket and interval, straight from the histogram: its native "
            "buckets where Prometheus ingests them, else its classic ones.",
            "s",
            [
                Query(
                    f"sum(increase({DURATION}{{{TARGET}}}[$__rate_interval])) or on () "
                    f"sum by (le) (increase({buckets}[$__rate_interval]))",
                    "{{le}}",
                )
            ],
            form=PromQueryFormat.HEATMAP,
        )
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_values(heatmap.CellValues().unit("short"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .steps(64)
        ),
        graph(
            "Phases of the latest probe",
            "Where the time of the latest probe went, by phase: resolve, connect, tls, "
            "processing, transfer for HTTP; query for DNS; dialog, starttls or banner and the "
            "SMTP steps for the other kinds (largest over locations).",
            "s",
            [Query(f"max by (phase) (lookout_probe_phase_seconds{{{TARGET}}})", "{{phase}}")],
            stacked=True,
        ),
        graph(
            "Probes slower than the SLO threshold",
            "Share of probes slower than the latency SLO threshold (targets with a latency SLO).",
            "percentunit",
            [
                Query(
                    f"sum(rate(lookout_probe_slow_total{{{TARGET}}}[$__rate_interval])) / "
                    f"sum({observations(DURATION, TARGET, '$__rate_interval', 'rate')})",
                    "slow",
                )
            ],
        ),
    ]
    responses: Panels = [
        timeline(
            "HTTP status code",
            "Status code of the latest HTTP probe per location: green 2xx, blue 3xx, orange 4xx, "
            "red 5xx.",
            [Query(f"max by (location) (lookout_http_status_code{{{TARGET}}})", "{{location}}")],
            steps=thresholds("green", (300, "blue"), (400, "orange"), (500, "red")),
        ),
        graph(
            "Response size",
            "Body size read by the latest HTTP probe (capped at expect.max_size + 1).",
            "bytes",
            [
                Query(
                    f"max by (location) (lookout_http_response_size_bytes{{{TARGET}}})",
                    "{{location}}",
                )
            ],
        ),
        graph(
            "Failures by reason",
            "Failed probes per minute by failure reason.",
            "cpm",
            [
                Query(
                    "60 * sum by (reason) (rate(lookout_probe_failures_total"
                    f"{{{TARGET}}}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            stacked=True,
            bars=True,
        ),
        graph(
            "DNS answers",
            "Answer records of the latest DNS probe (DNS targets only).",
            "short",
            [Query(f"max by (location) (lookout_dns_answers{{{TARGET}}})", "{{location}}")],
        ),
        graph(
            "Attempts and confirmed state",
            "The latest attempt against the confirmed state, and how often the confirmed "
            "state changed (targets with a confirm setting only).",
            "short",
            [
                Query(
                    f"min by (location) (lookout_probe_attempt_success{{{TARGET}}})",
                    "attempt {{location}}",
                ),
                Query(
                    "sum by (location) (increase(lookout_probe_confirmed_state_changes_total"
                    f"{{{TARGET}}}[$__rate_interval]))",
                    "state changes {{location}}",
                ),
            ],
        ),
        grid(
            "Endpoint and latest failure",
            "What the target probes (URL, address or DNS question, secrets redacted) and, while "
            "its latest probe failed, that failure's reason and message: what alert "
            "notifications quote.",
            "none",
            [
                Query(f"max by (target, endpoint) (lookout_probe_endpoint_info{{{TARGET}}})"),
                Query(f"max by (target, reason, message) (lookout_probe_failure_info{{{TARGET}}})"),
            ],
            join_on="target",
            columns={
                "Value #A": None,
                "Value #B": None,
                "endpoint": ("Endpoint", "none"),
                "reason": ("Latest failure", "none"),
                "message": ("Message", "none"),
            },
            width=12,
        ),
    ]
    certificate: Panels = [
        graph(
            "Certificate expires in",
            "Time until the earliest NotAfter of the presented chain; a jump up is a renewal.",
            "dtdurations",
            [
                Query(
                    "min by (location) (lookout_tls_cert_expiry_timestamp_seconds"
                    f"{{{TARGET}}}) - time()",
                    "{{location}}",
                )
            ],
        ),
        grid(
            "Certificate and TLS version",
            "Identity of the leaf certificate and the TLS version of the latest probe.",
            "none",
            [
                Query(
                    "max by (target, subject, issuer, serial, fingerprint_sha256) "
                    f"(lookout_tls_cert_info{{{TARGET}}})"
                ),
                Query(f"max by (target, version) (lookout_tls_version_info{{{TARGET}}})"),
            ],
            join_on="target",
            columns={
                "Value #A": None,
                "Value #B": None,
                "fingerprint_sha256": ("SHA-256 fingerprint", "none"),
                "version": ("TLS version", "none"),
            },
            width=12,
        ),
    ]
    dependency_kinds: Panels = [
        grid(
            "gRPC health",
            "Serving status and gRPC status code of the latest health check from each location "
            "(gRPC targets only).",
            "none",
            [
                Query(f"max by (location, status) (lookout_grpc_health_status{{{TARGET}}} == 1)"),
                Query(f"max by (location) (lookout_grpc_status_code{{{TARGET}}})"),
            ],
            join_on="location",
            columns={
                "status": ("Serving status", "none"),
                "Value #A": None,
                "Value #B": ("gRPC status code", "none"),
            },
            width=8,
        ),
        graph(
            "Packet loss",
            "Share of the latest probe's echo requests without a reply (ICMP targets only).",
            "percentunit",
            [
                Query(
                    f"max by (location) (lookout_icmp_packet_loss_ratio{{{TARGET}}})",
                    "{{location}}",
                )
            ],
            width=8,
        ),
        graph(
            "Round trips",
            "Minimum, average and maximum round trip and jitter of the latest ICMP probe.",
            "s",
            [
                Query(
                    f"max by (location, stat) (lookout_icmp_rtt_seconds{{{TARGET}}})",
                    "{{stat}} {{location}}",
                )
            ],
            width=8,
        ),
        single(
            "Domain expires in",
            "Time until the domain registration expires, from the registry's RDAP answer "
            "(n/a for other kinds).",
            "dtdurations",
            f"min(lookout_domain_expiry_timestamp_seconds{{{TARGET}}}) - time()",
            steps=thresholds("red", (7 * DAY, "orange"), (30 * DAY, "green")),
            no_value="n/a",
            width=8,
        ),
        grid(
            "Domain registration",
            "Registrar and RDAP status values of the domain (domain targets only).",
            "none",
            [Query(f"max by (target, registrar, status) (lookout_domain_info{{{TARGET}}})")],
            join_on="target",
            columns={
                "registrar": ("Registrar", "none"),
                "status": ("Status", "none"),
                "Value": None,
            },
            width=16,
            height=4,
        ),
        single(
            "Sunset in",
            "Time until the removal the target's Sunset header announces (RFC 8594); n/a "
            "without the header.",
            "dtdurations",
            f"min(lookout_http_sunset_timestamp_seconds{{{TARGET}}}) - time()",
            steps=thresholds("red", (7 * DAY, "orange"), (30 * DAY, "green")),
            no_value="n/a",
            width=8,
        ),
        single(
            "Deprecated for",
            "Time since the deprecation date of the target's Deprecation header (RFC 9745); n/a "
            "without a dated header.",
            "dtdurations",
            f"time() - max(lookout_http_deprecation_timestamp_seconds{{{TARGET}}})",
            steps=thresholds("green", (0, "orange")),
            no_value="n/a",
            width=8,
        ),
        graph(
            "Retry-After",
            "Seconds the target's 429 and 503 answers asked to wait (Retry-After), by location.",
            "s",
            [
                Query(
                    f"max by (location) (lookout_http_retry_after_seconds{{{TARGET}}})",
                    "{{location}}",
                )
            ],
            width=8,
        ),
    ]
    locations: Panels = [
        timeline(
            "Result by location",
            "Result of the latest probe from each location.",
            [Query(f"min by (location) (lookout_probe_success{{{TARGET}}})", "{{location}}")],
            mappings=SUCCESS_MAPPINGS,
            width=24,
            height=5,
        ),
        graph(
            "p95 duration by location",
            "95th percentile probe duration from each location.",
            "s",
            [
                Query(
                    quantile(0.95, DURATION, TARGET, "location", "$__rate_interval"),
                    "{{location}}",
                )
            ],
        ),
        graph(
            "Success ratio by location",
            "Share of passed probes from each location.",
            "percentunit",
            [
                Query(
                    f"1 - {failure_ratio(TARGET, 'location', '$__rate_interval')}",
                    "{{location}}",
                )
            ],
        ),
    ]
    incidents: Panels = [
        single(
            "Incidents in range",
            "Times the confirmed state turned failing within the time range.",
            "short",
            f"sum(increase(lookout_probe_incidents_total{{{TARGET}}}[$__range]))",
        ),
        single(
            "Downtime in range",
            "Seconds in incidents within the time range, the open one up to its latest probe.",
            "s",
            f"sum(increase(lookout_probe_downtime_seconds_total{{{TARGET}}}[$__range]))",
        ),
        single(
            "Incident open",
            "Whether an incident is open now (the confirmed state is failing).",
            "none",
            f"max(lookout_probe_incident_open{{{TARGET}}})",
            mappings=[value_map(("0", "no", "green"), ("1", "yes", "red"))],
        ),
        single(
            "Open incident for",
            "How long the open incident has lasted, from its first failed probe.",
            "dtdurations",
            f"time() - min(lookout_probe_incident_start_timestamp_seconds{{{TARGET}}})",
            no_value="none open",
        ),
        single(
            "SLA",
            "The target's declared SLA availability.",
            "percentunit",
            f"max(lookout_probe_sla_objective_ratio{{{TARGET}}})",
            no_value="none declared",
        ),
    ]
    # Every version of the selected target's `versions:` matrix: the targets named
    # `$base@<version>` (label api_version), where $base is the selected target's name up to
    # its "@". Empty for a target without versions.
    versioned = PROBES + ', target=~"$base@.+"'
    versions: Panels = [
        grid(
            "Versions side by side",
            "Every version of the selected target's `versions:` matrix (the targets named "
            "$base@<version>): whether it answers now from every location, its share of passed "
            "probes and p95 duration over the time range, the removal date its Sunset header "
            "announces (RFC 8594), the date its Deprecation header gives (RFC 9745) and the "
            "latest Retry-After; empty for a target without versions.",
            "none",
            [
                Query(f"min by (api_version) (lookout_probe_success{{{versioned}}})"),
                Query(f"1 - {failure_ratio(versioned, 'api_version', '$__range')}"),
                Query(quantile(0.95, DURATION, versioned, "api_version", "$__range")),
                Query(
                    "min by (api_version) (lookout_http_sunset_timestamp_seconds"
                    f"{{{versioned}}}) * 1000"
                ),
                Query(
                    "max by (api_version) (lookout_http_deprecation_timestamp_seconds"
                    f"{{{versioned}}}) * 1000"
                ),
                Query(f"max by (api_version) (lookout_http_retry_after_seconds{{{versioned}}})"),
            ],
            join_on="api_version",
            columns={
                "api_version": ("Version", "none"),
                "Value #A": ("Up", "none"),
                "Value #B": ("Probes passed", "percentunit"),
                "Value #C": ("p95 duration", "s"),
                "Value #D": ("Sunset", "dateTimeAsIso"),
                "Value #E": ("Deprecated since", "dateTimeAsIso"),
                "Value #F": ("Retry-After", "s"),
            },
            mappings={"Value #A": YES_NO_MAPPINGS},
            height=6,
        ),
        timeline(
            "Result by version",
            "Result of the latest probe of each version (the worst location).",
            [
                Query(
                    f"min by (api_version) (lookout_probe_success{{{versioned}}})",
                    "{{api_version}}",
                )
            ],
            mappings=SUCCESS_MAPPINGS,
            width=24,
            height=5,
        ),
        graph(
            "Success ratio by version",
            "Share of passed probes of each version.",
            "percentunit",
            [
                Query(
                    f"1 - {failure_ratio(versioned, 'api_version', '$__rate_interval')}",
                    "{{api_version}}",
                )
            ],
            width=8,
        ),
        graph(
            "p95 duration by version",
            "95th percentile probe duration of each version.",
            "s",
            [
                Query(
                    quantile(0.95, DURATION, versioned, "api_version", "$__rate_interval"),
                    "{{api_version}}",
                )
            ],
            width=8,
        ),
        graph(
            "Failures by version and reason",
            "Failed probes per minute of each version by failure reason: json_schema, "
            "error_format and version show a version whose answers changed shape or that a "
            "gateway routes to another version.",
            "cpm",
            [
                Query(
                    "60 * sum by (api_version, reason) (rate(lookout_probe_failures_total"
                    f"{{{versioned}}}[$__rate_interval]))",
                    "{{api_version}}: {{reason}}",
                )
            ],
            stacked=True,
            bars=True,
            width=8,
        ),
    ]
    flow: Panels = [
        graph(
            "Step duration p95",
            "95th percentile duration of each step of a flow target (kind: flow only), from "
            "its native buckets where Prometheus ingests them, else its classic ones.",
            "s",
            [Query(quantile(0.95, STEP_DURATION, TARGET, "step", "$__rate_interval"), "{{step}}")],
        ),
        timeline(
            "Step results",
            "Result of each step in the latest probe of a flow target; steps that did not run "
            "(after a failed step) have no value.",
            [Query(f"min by (step) (lookout_flow_step_success{{{TARGET}}})", "{{step}}")],
            mappings=SUCCESS_MAPPINGS,
        ),
        graph(
            "Step failures by reason",
            "Failed runs of each step per minute, by step and failure reason.",
            "cpm",
            [
                Query(
                    "60 * sum by (step, reason) (rate(lookout_flow_step_failures_total"
                    f"{{{TARGET}}}[$__rate_interval]))",
                    "{{step}}: {{reason}}",
                )
            ],
            stacked=True,
            bars=True,
        ),
        graph(
            "Exported values",
            "The numbers the target reads from its responses, for the names under export: "
            "(lookout_probe_value; largest over locations).",
            "short",
            [Query(f"max by (name) (lookout_probe_value{{{TARGET}}})", "{{name}}")],
        ),
    ]
    target = query_variable(
        "target",
        "Target",
        f'label_values({{__name__=~"{DURATION}|{DURATION}_count", {PROBES}}}, target)',
        "The configured target name.",
        multi=False,
    )
    # The selected target's name up to its "@": the name of its versions: matrix. Grafana keeps
    # a regex's first capture group as the value.
    base = query_variable(
        "base",
        "Base",
        f'label_values({{__name__=~"{DURATION}|{DURATION}_count", {PROBES}, '
        'target="$target"}, target)',
        "The selected target's name without its @version: the API versions row shows every "
        "version of it. Follows the target.",
        multi=False,
    ).regex(BASE_NAME)
    return frame(
        "lookout-endpoint",
        "Lookout / Endpoint",
        "One target in depth: latency, phases, responses, failures, API versions, flow steps, "
        "certificate and locations.",
        [*common_variables(), target, base],
        [
            ("Now", now),
            ("API versions", versions),
            ("Latency", latency),
            ("Responses and failures", responses),
            ("Flow steps and values", flow),
            ("Certificate", certificate),
            ("gRPC, ICMP and domain", dependency_kinds),
            ("Incidents", incidents),
            ("Locations", locations),
        ],
    )


# ----------------------------------------------------------------------------------------------
# Heartbeats


def heartbeats() -> dashboard.Dashboard:
    def by_heartbeat(metric: str) -> str:
        return f"max by (heartbeat) ({metric}{{{HEARTBEATS}}})"

    state: Panels = [
        grid(
            "Heartbeats",
            "Every selected heartbeat: state, time since the last success, time left until it "
            "turns late (negative: overdue), last run, alive instances and whether the last "
            "finished run succeeded (a new run does not change it).",
            "none",
            [
                Query(heartbeat_state(HEARTBEATS)),
                Query(by_heartbeat("lookout_heartbeat_age_seconds")),
                Query(f"{by_heartbeat('lookout_heartbeat_deadline_timestamp_seconds')} - time()"),
                Query(by_heartbeat("lookout_heartbeat_last_duration_seconds")),
                Query(by_heartbeat("lookout_heartbeat_last_exit_code")),
                Query(by_heartbeat("lookout_heartbeat_instances_alive")),
                Query(by_heartbeat("lookout_heartbeat_instances_expected")),
                Query(f"min by (heartbeat) (lookout_heartbeat_last_run_success{{{HEARTBEATS}}})"),
                Query(
                    "time() - min by (heartbeat) "
                    f"(lookout_heartbeat_declared_timestamp_seconds{{{HEARTBEATS}}})"
                ),
            ],
            join_on="heartbeat",
            columns={
                "Value #A": ("State", "none"),
                "Value #B": ("Since last success", "dtdurations"),
                "Value #C": ("Late in", "dtdurations"),
                "Value #D": ("Last duration", "s"),
                "Value #E": ("Last exit code", "none"),
                "Value #F": ("Instances alive", "short"),
                "Value #G": ("Instances expected", "short"),
                "Value #H": ("Last finished run", "none"),
                "Value #I": ("Declared for", "dtdurations"),
            },
            mappings={
                "Value #A": HEARTBEAT_MAPPINGS,
                "Value #H": [value_map(("1", "succeeded", "green"), ("0", "failed", "red"))],
            },
            height=9,
        ),
        timeline(
            "State over time",
            "State of each heartbeat over the time range (the worst replica wins).",
            [Query(heartbeat_state(HEARTBEATS), "{{heartbeat}}")],
            mappings=HEARTBEAT_MAPPINGS,
            width=24,
        ),
    ]
    timing: Panels = [
        graph(
            "Age versus deadline",
            "Time since the last success (solid) against the age at which the heartbeat turns "
            "late (dashed): the deadline minus the last success, period or cron aware.",
            "s",
            [
                Query(by_heartbeat("lookout_heartbeat_age_seconds"), "{{heartbeat}} age"),
                Query(
                    "max by (heartbeat) (lookout_heartbeat_deadline_timestamp_seconds"
                    f"{{{HEARTBEATS}}} - lookout_heartbeat_last_success_timestamp_seconds"
                    f"{{{HEARTBEATS}}})",
                    "{{heartbeat}} late at",
                ),
            ],
            dashed=["B"],
        ),
        graph(
            "Run durations",
            "Duration of the last run from its start ping to its finish ping, against the "
            "heartbeat's max_runtime and min_runtime (dashed) when it has them.",
            "s",
            [
                Query(by_heartbeat("lookout_heartbeat_last_duration_seconds"), "{{heartbeat}}"),
                Query(
                    by_heartbeat("lookout_heartbeat_max_runtime_seconds"),
                    "{{heartbeat}} max runtime",
                ),
                Query(
                    by_heartbeat("lookout_heartbeat_min_runtime_seconds"),
                    "{{heartbeat}} min runtime",
                ),
            ],
            dashed=["B", "C"],
        ),
        graph(
            "Running for",
            "Time since the start ping of heartbeats that are running now.",
            "s",
            [
                Query(
                    f"time() - {by_heartbeat('lookout_heartbeat_last_start_timestamp_seconds')} "
                    "and on (heartbeat) max by (heartbeat) (lookout_heartbeat_status"
                    f'{{{HEARTBEATS}, status="running"}} == 1)',
                    "{{heartbeat}}",
                )
            ],
        ),
        timeline(
            "Instances",
            "Each instance of a heartbeat with instances: alive (its own pings on time) or "
            "missing. A worker that stopped stays listed, missing, until a new name takes its "
            "place.",
            [
                Query(
                    "max by (heartbeat, instance_name) (lookout_heartbeat_instance_up"
                    f"{{{HEARTBEATS}}})",
                    "{{heartbeat}} {{instance_name}}",
                )
            ],
            mappings=[value_map(("1", "alive", "green"), ("0", "missing", "red"))],
        ),
        graph(
            "Time since each instance pinged",
            "Seconds since each instance of a heartbeat with instances last pinged.",
            "s",
            [
                Query(
                    "time() - max by (heartbeat, instance_name) "
                    f"(lookout_heartbeat_instance_last_seen_timestamp_seconds{{{HEARTBEATS}}})",
                    "{{heartbeat}} {{instance_name}}",
                )
            ],
        ),
        timeline(
            "Exit codes",
            "Exit code reported with the last finish ping: green 0, red anything else.",
            [Query(by_heartbeat("lookout_heartbeat_last_exit_code"), "{{heartbeat}}")],
            steps=thresholds("green", (1, "red")),
        ),
        timeline(
            "Last run",
            "Outcome of each heartbeat's latest finished run: 1 succeeded, 0 failed.",
            [Query(by_heartbeat("lookout_heartbeat_last_run_success"), "{{heartbeat}}")],
            mappings=SUCCESS_MAPPINGS,
        ),
    ]
    pings: Panels = [
        graph(
            "Pings by signal",
            "Pings received per minute: success, start and fail.",
            "cpm",
            [
                Query(
                    "60 * sum by (heartbeat, signal) (rate(lookout_heartbeat_pings_total"
                    f"{{{HEARTBEATS}}}[$__rate_interval]))",
                    "{{heartbeat}} {{signal}}",
                )
            ],
            bars=True,
            stacked=True,
        ),
        graph(
            "Alive instances",
            "Instances that pinged within the period plus grace, against the expected number "
            "(dashed), for heartbeats with instances: N.",
            "short",
            [
                Query(by_heartbeat("lookout_heartbeat_instances_alive"), "{{heartbeat}} alive"),
                Query(
                    by_heartbeat("lookout_heartbeat_instances_expected"),
                    "{{heartbeat}} expected",
                ),
            ],
            dashed=["B"],
        ),
    ]
    incidents: Panels = [
        bars(
            "Incidents in range",
            "Times each heartbeat turned late, down or failed within the time range.",
            "short",
            [
                Query(
                    "max by (heartbeat) (increase(lookout_heartbeat_incidents_total"
                    f"{{{HEARTBEATS}}}[$__range]))",
                    "{{heartbeat}}",
                )
            ],
            steps=thresholds("green", (1, "red")),
            width=8,
        ),
        bars(
            "Downtime in range",
            "Seconds each heartbeat spent late, down or failed within the time range.",
            "s",
            [
                Query(
                    "max by (heartbeat) (increase(lookout_heartbeat_downtime_seconds_total"
                    f"{{{HEARTBEATS}}}[$__range]))",
                    "{{heartbeat}}",
                )
            ],
            steps=thresholds("green", (1, "red")),
            width=8,
        ),
        graph(
            "Open incidents for",
            "How long each open incident has lasted, from when the heartbeat turned late, down "
            "or failed.",
            "s",
            [
                Query(
                    f"time() - {by_heartbeat('lookout_heartbeat_incident_start_timestamp_seconds')}"
                    " and on (heartbeat) "
                    f"{by_heartbeat('lookout_heartbeat_incident_open')} == 1",
                    "{{heartbeat}}",
                )
            ],
            width=8,
        ),
    ]
    heartbeat = query_variable(
        "heartbeat",
        "Heartbeat",
        f"label_values(lookout_heartbeat_status{{{SCOPE}}}, heartbeat)",
        "The configured heartbeat names.",
    )
    return frame(
        "lookout-heartbeats",
        "Lookout / Heartbeats",
        "Every job, worker and cron heartbeat: state, age against deadline, durations, exit "
        "codes and alive instances.",
        [*common_variables(), heartbeat],
        [
            ("State", state),
            ("Timing", timing),
            ("Pings and instances", pings),
            ("Incidents", incidents),
        ],
        # A day shows a daily cron job's whole cycle: the run, its age growing to the deadline.
        since="now-24h",
    )


# ----------------------------------------------------------------------------------------------
# Host


def host() -> dashboard.Dashboard:
    def rate(metric: str, extra: str = "") -> str:
        return f"rate({metric}{{{SCOPE}{extra}}}[$__rate_interval])"

    cpu: Panels = [
        graph(
            "CPU by mode",
            "Share of all CPUs spent in each mode except idle, per host.",
            "percentunit",
            [
                Query(
                    "sum by (instance, mode) ("
                    + rate("lookout_host_cpu_seconds_total", ', mode!="idle"')
                    + ") / on (instance) group_left max by (instance) "
                    f"(lookout_host_cpus{{{SCOPE}}})",
                    "{{instance}} {{mode}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Load",
            "1, 5 and 15 minute load averages against the number of CPUs (dashed).",
            "short",
            [
                *(
                    Query(f"lookout_host_load{n}{{{SCOPE}}}", f"{{{{instance}}}} load{n}")
                    for n in (1, 5, 15)
                ),
                Query(f"lookout_host_cpus{{{SCOPE}}}", "{{instance}} CPUs"),
            ],
            dashed=["D"],
        ),
        graph(
            "Pressure",
            "Share of time some tasks waited for (or were stalled on) CPU, memory or I/O, from "
            "/proc/pressure (Linux 4.20 and later).",
            "percentunit",
            [
                *(
                    Query(
                        rate(f"lookout_host_pressure_{resource}_waiting_seconds_total"),
                        f"{{{{instance}}}} {resource} waiting",
                    )
                    for resource in ("cpu", "memory", "io")
                ),
                *(
                    Query(
                        rate(f"lookout_host_pressure_{resource}_stalled_seconds_total"),
                        f"{{{{instance}}}} {resource} stalled",
                    )
                    for resource in ("memory", "io")
                ),
            ],
        ),
        graph(
            "Context switches",
            "Context switches per second.",
            "cps",
            [Query(rate("lookout_host_context_switches_total"), "{{instance}}")],
        ),
    ]
    memory: Panels = [
        graph(
            "Memory",
            "Used and available memory against the total (dashed).",
            "bytes",
            [
                Query(f"lookout_host_memory_used_bytes{{{SCOPE}}}", "{{instance}} used"),
                Query(f"lookout_host_memory_available_bytes{{{SCOPE}}}", "{{instance}} available"),
                Query(f"lookout_host_memory_total_bytes{{{SCOPE}}}", "{{instance}} total"),
            ],
            dashed=["C"],
        ),
        graph(
            "Swap",
            "Swap in use against the swap size (dashed).",
            "bytes",
            [
                Query(
                    f"lookout_host_swap_total_bytes{{{SCOPE}}} - "
                    f"lookout_host_swap_free_bytes{{{SCOPE}}}",
                    "{{instance}} used",
                ),
                Query(f"lookout_host_swap_total_bytes{{{SCOPE}}}", "{{instance}} total"),
            ],
            dashed=["B"],
        ),
    ]
    filesystem = f"{{{SCOPE}}}"
    filesystems: Panels = [
        bars(
            "Filesystem usage",
            "Share of each filesystem in use, as seen by unprivileged users (size minus "
            "available).",
            "percentunit",
            [
                Query(
                    f"1 - lookout_host_filesystem_avail_bytes{filesystem} / "
                    f"(lookout_host_filesystem_size_bytes{filesystem} > 0)",
                    "{{instance}} {{mountpoint}}",
                )
            ],
            steps=thresholds("green", (0.8, "orange"), (0.9, "red")),
            low=0,
            high=1,
        ),
        graph(
            "Available in 24 hours (linear prediction)",
            "Space each filesystem would have left in 24 hours if it keeps the trend of the last "
            "6 hours; below zero it fills up within a day.",
            "bytes",
            [
                Query(
                    f"predict_linear(lookout_host_filesystem_avail_bytes{filesystem}[6h], {DAY})",
                    "{{instance}} {{mountpoint}}",
                )
            ],
        ),
        graph(
            "Inodes in use",
            "Share of each filesystem's inodes in use.",
            "percentunit",
            [
                Query(
                    f"1 - lookout_host_filesystem_files_free{filesystem} / "
                    f"(lookout_host_filesystem_files{filesystem} > 0)",
                    "{{instance}} {{mountpoint}}",
                )
            ],
        ),
        single(
            "Read-only filesystems",
            "Mounted filesystems that are read-only.",
            "short",
            f"sum(lookout_host_filesystem_readonly{filesystem})",
            steps=thresholds("blue"),
            width=6,
        ),
        single(
            "Filesystems with errors",
            "Filesystems whose usage could not be read (device error).",
            "short",
            f"sum(lookout_host_filesystem_device_error{filesystem})",
            steps=thresholds("green", (1, "red")),
            width=6,
        ),
    ]
    disks: Panels = [
        graph(
            "Disk throughput",
            "Bytes read and written per second by each disk.",
            "Bps",
            [
                Query(rate("lookout_host_disk_read_bytes_total"), "{{instance}} {{device}} read"),
                Query(
                    rate("lookout_host_disk_written_bytes_total"),
                    "{{instance}} {{device}} written",
                ),
            ],
        ),
        graph(
            "Disk operations",
            "Completed reads and writes per second by each disk.",
            "iops",
            [
                Query(
                    rate("lookout_host_disk_reads_completed_total"),
                    "{{instance}} {{device}} reads",
                ),
                Query(
                    rate("lookout_host_disk_writes_completed_total"),
                    "{{instance}} {{device}} writes",
                ),
            ],
        ),
        graph(
            "Disk busy",
            "Share of time each disk was busy with I/O.",
            "percentunit",
            [Query(rate("lookout_host_disk_io_time_seconds_total"), "{{instance}} {{device}}")],
        ),
    ]
    network: Panels = [
        graph(
            "Network throughput",
            "Bytes received and transmitted per second by each interface.",
            "Bps",
            [
                Query(
                    rate(f"lookout_host_network_{direction}_bytes_total"),
                    f"{{{{instance}}}} {{{{device}}}} {direction}",
                )
                for direction in ("receive", "transmit")
            ],
        ),
        graph(
            "Network packets",
            "Packets received and transmitted per second by each interface.",
            "pps",
            [
                Query(
                    rate(f"lookout_host_network_{direction}_packets_total"),
                    f"{{{{instance}}}} {{{{device}}}} {direction}",
                )
                for direction in ("receive", "transmit")
            ],
        ),
        graph(
            "Network errors and drops",
            "Receive and transmit errors and dropped packets per second by each interface.",
            "pps",
            [
                Query(
                    rate(f"lookout_host_network_{direction}_{kind}_total"),
                    f"{{{{instance}}}} {{{{device}}}} {direction} {kind}",
                )
                for direction in ("receive", "transmit")
                for kind in ("errs", "drop")
            ],
        ),
    ]
    system: Panels = [
        single(
            "Uptime",
            "Time since the host booted.",
            "dtdurations",
            f"time() - max(lookout_host_boot_time_seconds{{{SCOPE}}})",
            steps=thresholds("blue"),
            width=6,
        ),
        single(
            "CPUs",
            "Logical CPUs of the host.",
            "short",
            f"max(lookout_host_cpus{{{SCOPE}}})",
            steps=thresholds("blue"),
            width=6,
        ),
        single(
            "File descriptors in use",
            "Allocated file handles against the system-wide maximum.",
            "percentunit",
            f"max(lookout_host_filefd_allocated{{{SCOPE}}} / "
            f"lookout_host_filefd_maximum{{{SCOPE}}})",
            steps=thresholds("green", (0.8, "orange"), (0.9, "red")),
            width=6,
        ),
        single(
            "Since last config reload",
            "Time since the exporter last loaded its configuration successfully.",
            "dtdurations",
            f"time() - max(lookout_config_last_reload_success_timestamp_seconds{{{SCOPE}}})",
            steps=thresholds("blue"),
            width=6,
        ),
    ]
    exporter: Panels = [
        graph(
            "Exporter CPU and memory",
            "CPU used by the exporter process (share of one CPU) and its resident memory "
            "(right axis).",
            "percentunit",
            [
                Query(rate("process_cpu_seconds_total"), "{{instance}} CPU"),
                Query(f"process_resident_memory_bytes{{{SCOPE}}}", "{{instance}} memory"),
            ],
        ).override_by_query(
            "B",
            [
                models.DynamicConfigValue(id_val="unit", value="bytes"),
                models.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            ],
        ),
        graph(
            "Scheduler lag",
            "How late probes start against their schedule (50th and 99th percentile); growing lag "
            "means the exporter cannot keep up with its targets.",
            "s",
            [
                Query(
                    quantile(q, LAG, SCOPE, "instance", "$__rate_interval"),
                    f"{{{{instance}}}} p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
        ),
        graph(
            "Probe runs",
            "Probes started per second by kind.",
            "ops",
            [
                Query(
                    "sum by (instance, kind) (" + rate("lookout_probe_runs_total") + ")",
                    "{{instance}} {{kind}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Probes in flight and heartbeats",
            "Probes running right now, and the number of configured heartbeats.",
            "short",
            [
                Query(f"lookout_probes_in_flight{{{SCOPE}}}", "{{instance}} in flight"),
                Query(f"lookout_heartbeats{{{SCOPE}}}", "{{instance}} heartbeats"),
            ],
        ),
    ]
    return frame(
        "lookout-host",
        "Lookout / Host",
        "The machines the exporters run on: CPU, load, memory, pressure, filesystems, disks, "
        "network, and the exporter process itself.",
        common_variables(),
        [
            ("CPU", cpu),
            ("Memory", memory),
            ("Filesystems", filesystems),
            ("Disks", disks),
            ("Network", network),
            ("System", system),
            ("Exporter process", exporter),
        ],
    )


# ----------------------------------------------------------------------------------------------
# SLA report


TREND_WINDOW = "7d"


def recorded_trend(level: str, subject: str, matchers: str, scope: str) -> str:
    """A rolling figure per ``level`` label (target, service, heartbeat) from the SLA recording
    rules (``level:subject:window``, for example ``target:lookout_probe_mttr_seconds:7d``). The
    rules aggregate over instances and locations, so their series have no instance label: they
    are narrowed to the ``level`` values that the raw series ``scope`` (a selector scoped by the
    variables) has on the selected instances."""
    return (
        f"max by ({level}) ({level}:{subject}:{TREND_WINDOW}{{{matchers}}} "
        f"and on (job, {level}) {scope})"
    )


def trends(level: str, prefix: str, matchers: str, scope: str) -> Panels:
    """MTTR and MTBF over the last 7 days at every point of the time range, per ``level``."""
    what = level.title()
    legend = f"{{{{{level}}}}}"
    rules = "rules/recording/sla.yml; empty without the rules, and where the 7 days had no incident"
    mttr, mtbf = f"{prefix}_mttr_seconds", f"{prefix}_mtbf_seconds"
    return [
        graph(
            f"{what} MTTR over the last 7 days",
            "Mean time to recovery at each moment: seconds in incidents per incident over the 7 "
            f"days before it (recording rule {level}:{mttr}:{TREND_WINDOW} of {rules}). "
            "Rising: incidents last longer.",
            "dtdurations",
            [Query(recorded_trend(level, mttr, matchers, scope), legend)],
        ),
        graph(
            f"{what} MTBF over the last 7 days",
            "Mean time between failures at each moment: time outside incidents per incident "
            f"over the 7 days before it (recording rule {level}:{mtbf}:{TREND_WINDOW} of "
            f"{rules}). Falling: incidents come more often.",
            "dtdurations",
            [Query(recorded_trend(level, mtbf, matchers, scope), legend)],
        ),
    ]


def by_service_grid(
    title: str, description: str, down_rate: str, incidents: str, downtime: str
) -> table.Panel:
    """Per ``service``: mean availability (one minus ``down_rate``), incidents, downtime and
    their MTTR, from the three per-service expressions."""
    return grid(
        title,
        description,
        "none",
        [
            Query(f"avg by (service) (clamp(1 - {down_rate}, 0, 1))"),
            Query(incidents),
            Query(downtime),
            Query(f"{downtime} / ({incidents} > 0)"),
        ],
        join_on="service",
        columns={
            "Value #A": ("Availability", "percentunit"),
            "Value #B": ("Incidents", "short"),
            "Value #C": ("Downtime", "dtdurations"),
            "Value #D": ("MTTR", "dtdurations"),
        },
    )


def sla() -> dashboard.Dashboard:
    """The time range's figures (this month by default): availability as time outside
    incidents against the SLA, incidents, MTTR and MTBF, by target and by service."""
    scope = f'{PROBES}, target=~"$target"'
    window = "$__range"

    def worst(metric: str, function: str, by: str = "target", where: str = scope) -> str:
        # The worst location counts, as in rules/recording/sla.yml.
        return f"max by ({by}) ({function}({metric}{{{where}}}[{window}]))"

    down_rate = worst("lookout_probe_downtime_seconds_total", "rate")
    incidents = worst("lookout_probe_incidents_total", "increase")
    downtime = worst("lookout_probe_downtime_seconds_total", "increase")
    availability = f"clamp(1 - {down_rate}, 0, 1)"
    targets: Panels = [
        grid(
            "Availability against SLA",
            "Per target over the time range: availability as the share of time outside "
            "incidents (the worst location counts), the declared SLA, the share of passed "
            "probes (what the SLO counts), incidents, downtime, MTTR (downtime per incident) "
            "and MTBF (time outside incidents per incident).",
            "none",
            [
                Query(availability),
                Query(f"max by (target) (lookout_probe_sla_objective_ratio{{{scope}}})"),
                Query(f"1 - {failure_ratio(scope, 'target', window)}"),
                Query(incidents),
                Query(downtime),
                Query(f"{downtime} / ({incidents} > 0)"),
                Query(
                    f"(1 - {down_rate}) / ({worst('lookout_probe_incidents_total', 'rate')} > 0)"
                ),
            ],
            join_on="target",
            columns={
                "Value #A": ("Availability", "percentunit"),
                "Value #B": ("SLA", "percentunit"),
                "Value #C": ("Probes passed", "percentunit"),
                "Value #D": ("Incidents", "short"),
                "Value #E": ("Downtime", "dtdurations"),
                "Value #F": ("MTTR", "dtdurations"),
                "Value #G": ("MTBF", "dtdurations"),
            },
            links=[to_endpoint("${__data.fields.target}")],
            height=10,
        ),
        timeline(
            "Incidents over time",
            "When each target had an incident open (red).",
            [Query(f"max by (target) (lookout_probe_incident_open{{{scope}}})", "{{target}}")],
            steps=thresholds("green", (1, "red")),
            width=24,
        ),
        graph(
            "Downtime per interval",
            "Seconds in incidents per interval (the worst location): the trend of outage time.",
            "s",
            [
                Query(
                    "max by (target) (increase(lookout_probe_downtime_seconds_total"
                    f"{{{scope}}}[$__rate_interval]))",
                    "{{target}}",
                )
            ],
            bars=True,
        ),
        grid(
            "Open incidents",
            "Incidents open now and when they began.",
            "none",
            [
                Query(
                    f"max by (target) (lookout_probe_incident_start_timestamp_seconds{{{scope}}})"
                ),
                Query(
                    "time() - min by (target) (lookout_probe_incident_start_timestamp_seconds"
                    f"{{{scope}}})"
                ),
            ],
            join_on="target",
            columns={
                "Value #A": ("Began", "dateTimeAsIso"),
                "Value #B": ("Open for", "dtdurations"),
            },
            width=12,
        ),
        *trends(
            "target",
            "lookout_probe",
            'job=~"$job", target=~"$target"',
            f"lookout_probe_incident_open{{{scope}}}",
        ),
    ]
    services_scope = f'{PROBES}, service!=""'

    def per_service(metric: str, function: str) -> str:
        return worst(metric, function, "service, target", services_scope)

    by_service = per_service("lookout_probe_downtime_seconds_total", "rate")
    service_incidents = (
        f"sum by (service) ({per_service('lookout_probe_incidents_total', 'increase')})"
    )
    service_downtime = (
        f"sum by (service) ({per_service('lookout_probe_downtime_seconds_total', 'increase')})"
    )
    services: Panels = [
        by_service_grid(
            "By service",
            "Per `service` label over the time range: the mean availability of its targets, "
            "their incidents and downtime together, and the MTTR of those incidents.",
            by_service,
            service_incidents,
            service_downtime,
        ),
        *trends(
            "service",
            "lookout_probe",
            'job=~"$job"',
            f"lookout_probe_incident_open{{{services_scope}}}",
        ),
    ]
    heartbeat_scope = f'{SCOPE}, heartbeat=~"$heartbeat"'

    def heartbeat_worst(metric: str, function: str, by: str, where: str) -> str:
        # The worst replica counts, as in rules/recording/sla.yml.
        return f"max by ({by}) ({function}({metric}{{{where}}}[{window}]))"

    heartbeat_down_rate = heartbeat_worst(
        "lookout_heartbeat_downtime_seconds_total", "rate", "heartbeat", heartbeat_scope
    )
    heartbeat_incidents = heartbeat_worst(
        "lookout_heartbeat_incidents_total", "increase", "heartbeat", heartbeat_scope
    )
    heartbeat_downtime = heartbeat_worst(
        "lookout_heartbeat_downtime_seconds_total", "increase", "heartbeat", heartbeat_scope
    )
    heartbeat_services_scope = f'{SCOPE}, service!=""'

    def per_heartbeat_service(metric: str, function: str) -> str:
        return heartbeat_worst(metric, function, "service, heartbeat", heartbeat_services_scope)

    heartbeat_service_incidents = (
        "sum by (service) "
        f"({per_heartbeat_service('lookout_heartbeat_incidents_total', 'increase')})"
    )
    heartbeat_service_downtime = (
        "sum by (service) "
        f"({per_heartbeat_service('lookout_heartbeat_downtime_seconds_total', 'increase')})"
    )
    heartbeat_service_down_rate = per_heartbeat_service(
        "lookout_heartbeat_downtime_seconds_total", "rate"
    )
    heartbeat_rows: Panels = [
        grid(
            "Heartbeats",
            "Per heartbeat over the time range: availability as the share of time not late, "
            "down or failed (the worst replica counts), incidents, downtime, MTTR (downtime per "
            "incident) and MTBF (time outside incidents per incident).",
            "none",
            [
                Query(f"clamp(1 - {heartbeat_down_rate}, 0, 1)"),
                Query(heartbeat_incidents),
                Query(heartbeat_downtime),
                Query(f"{heartbeat_downtime} / ({heartbeat_incidents} > 0)"),
                Query(
                    f"(1 - {heartbeat_down_rate}) / ("
                    + heartbeat_worst(
                        "lookout_heartbeat_incidents_total", "rate", "heartbeat", heartbeat_scope
                    )
                    + " > 0)"
                ),
            ],
            join_on="heartbeat",
            columns={
                "Value #A": ("Availability", "percentunit"),
                "Value #B": ("Incidents", "short"),
                "Value #C": ("Downtime", "dtdurations"),
                "Value #D": ("MTTR", "dtdurations"),
                "Value #E": ("MTBF", "dtdurations"),
            },
            links=[to_heartbeat("${__data.fields.heartbeat}")],
        ),
        *trends(
            "heartbeat",
            "lookout_heartbeat",
            'job=~"$job", heartbeat=~"$heartbeat"',
            f"lookout_heartbeat_incident_open{{{heartbeat_scope}}}",
        ),
        by_service_grid(
            "Heartbeats by service",
            "Per `service` label of the heartbeats over the time range: the mean availability "
            "of its heartbeats, their incidents and downtime together, and the MTTR of those "
            "incidents.",
            heartbeat_service_down_rate,
            heartbeat_service_incidents,
            heartbeat_service_downtime,
        ),
    ]
    target = query_variable(
        "target",
        "Target",
        f'label_values({{__name__=~"{DURATION}|{DURATION}_count", {PROBES}}}, target)',
        "The configured target names.",
    )
    heartbeat = query_variable(
        "heartbeat",
        "Heartbeat",
        f"label_values(lookout_heartbeat_status{{{SCOPE}}}, heartbeat)",
        "The configured heartbeat names.",
    )
    return frame(
        "lookout-sla",
        "Lookout / SLA report",
        "The month's availability against each target's SLA, incidents, MTTR and MTBF, by "
        "target, service and heartbeat. Pick another month in the time picker.",
        [*common_variables(), target, heartbeat],
        [("Targets", targets), ("Services", services), ("Heartbeats", heartbeat_rows)],
        # The calendar month so far; `lookout-exporter report` writes a whole month's report.
        since="now/M",
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview.json": overview,
    "endpoint.json": endpoint,
    "heartbeats.json": heartbeats,
    "host.json": host,
    "sla.json": sla,
}


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    """The dashboard as the JSON text that is committed (sorted keys, two-space indent)."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def write(directory: Path, *, check: bool) -> list[str]:
    """Writes (or with ``check`` only compares) every dashboard; returns the stale file names."""
    stale = []
    for name, build in DASHBOARDS.items():
        path = directory / name
        text = render(build)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    stale = write(HERE, check=args.check)
    for name in stale:
        verb = "out of date" if args.check else "written"
        print(f"grafana-dashboards/{name}: {verb}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
