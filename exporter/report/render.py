"""The report as HTML (a self-contained page: inline style, charts as ``data:`` images, no
script), Markdown, CSV (one row per target and heartbeat) or JSON (everything, in seconds and
ratios)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from exporter.report import charts
from exporter.report.compute import Incident, Report, ServiceFigures, Subject

__all__ = ["FORMATS", "render"]

NONE = "\N{EN DASH}"  # what a cell without a value shows


def percent(value: float | None, digits: int = 3) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """``1d 2h``, ``3h 05m``, ``4m 10s``, ``12s``."""
    if seconds is None:
        return NONE
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def moment(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def milliseconds(seconds: float | None) -> str:
    return NONE if seconds is None else f"{seconds * 1000:.0f} ms"


ENVIRONMENT = Environment(
    loader=PackageLoader("exporter.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters.update(
    percent=percent, duration=duration, moment=moment, milliseconds=milliseconds
)


def html(report: Report) -> str:
    chart_of: dict[tuple[str, str], dict[str, str]] = {}
    if charts.available():
        for target in report.targets:
            drawn = {}
            if target.availability_chart:
                drawn["availability"] = charts.availability_chart(
                    target.availability_chart, target.sla
                )
            if target.latency_chart:
                drawn["latency"] = charts.latency_chart(target.latency_chart)
            chart_of[("target", target.name)] = drawn
    return ENVIRONMENT.get_template("report.html").render(
        report=report,
        charts=chart_of,
        charts_available=charts.available(),
        generated=moment(time.time()),
        style=ENVIRONMENT.loader.get_source(ENVIRONMENT, "report.css")[0],  # type: ignore[union-attr]
    )


def markdown(report: Report) -> str:
    lines = [f"# SLA report: {report.period.title}", ""]
    lines += [
        f"From {moment(report.period.start)} to {moment(report.period.end)}, "
        f"from {_md(report.prometheus)}.",
        "",
    ]
    if report.services:
        lines += [
            "## Services",
            "",
            "| service | targets | availability | incidents | downtime | MTTR | MTBF |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s in report.services:
            lines.append(
                f"| {_md(s.name)} | {s.targets} | {percent(s.availability)} | {s.incidents} | "
                f"{duration(s.downtime)} | {duration(s.mttr)} | {duration(s.mtbf)} |"
            )
        lines.append("")
    for title, subjects in (("Targets", report.targets), ("Heartbeats", report.heartbeats)):
        if not subjects:
            continue
        lines += [
            f"## {title}",
            "",
            "| name | service | availability | SLA | SLA budget used | probes passed | SLO "
            "| SLO budget used | incidents | downtime | MTTR | MTBF | p50 | p95 | p99 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in subjects:
            lines.append(
                f"| {_md(t.name)} | {_md(t.service)} | {percent(t.availability)} | "
                f"{percent(t.sla)} | {percent(t.sla_budget_used, 1)} | "
                f"{percent(t.probes_passed)} | {percent(t.slo)} | "
                f"{percent(t.slo_budget_used, 1)} | {t.incidents} | {duration(t.downtime)} | "
                f"{duration(t.mttr)} | {duration(t.mtbf)} | "
                f"{milliseconds(t.latency.get('p50'))} | {milliseconds(t.latency.get('p95'))} | "
                f"{milliseconds(t.latency.get('p99'))} |"
            )
        lines.append("")
    incidents = _incidents(report)
    lines += ["## Incidents", ""]
    if not incidents:
        lines += ["No incidents in the period.", ""]
    else:
        lines += ["| name | location | start | duration | reason |", "|---|---|---|---:|---|"]
        for i in incidents:
            open_ = " (open)" if i.open else ""
            lines.append(
                f"| {_md(i.name)} | {_md(i.location)} | {moment(i.start)} | "
                f"{duration(i.duration)}{open_} | {_md(i.reason) or NONE} |"
            )
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text in a Markdown table cell: pipes, backslashes and markup characters escaped."""
    out = text.replace("\\", "\\\\").replace("\n", " ")
    for char in "|*_`[]<>#":
        out = out.replace(char, "\\" + char)
    return out


def _incidents(report: Report) -> list[Incident]:
    return sorted(
        (i for s in (*report.targets, *report.heartbeats) for i in s.incident_list),
        key=lambda i: (i.start, i.name),
    )


COLUMNS = (
    "kind", "name", "service", "availability", "sla", "sla_budget_used", "probes_passed", "slo",
    "slo_budget_used", "incidents", "downtime_seconds", "mttr_seconds", "mtbf_seconds",
    "latency_p50_seconds", "latency_p95_seconds", "latency_p99_seconds", "coverage",
)  # fmt: skip


def _row(subject: Subject) -> dict[str, Any]:
    return {
        "kind": subject.subject,
        "name": subject.name,
        "service": subject.service,
        "availability": subject.availability,
        "sla": subject.sla,
        "sla_budget_used": subject.sla_budget_used,
        "probes_passed": subject.probes_passed,
        "slo": subject.slo,
        "slo_budget_used": subject.slo_budget_used,
        "incidents": subject.incidents,
        "downtime_seconds": subject.downtime,
        "mttr_seconds": subject.mttr,
        "mtbf_seconds": subject.mtbf,
        "latency_p50_seconds": subject.latency.get("p50"),
        "latency_p95_seconds": subject.latency.get("p95"),
        "latency_p99_seconds": subject.latency.get("p99"),
        "coverage": subject.coverage,
    }


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for subject in (*report.targets, *report.heartbeats):
        # A cell starting with = + - @ is a formula to spreadsheets: quote it as text.
        row = {
            k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
            for k, v in _row(subject).items()
        }
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def _service(figures: ServiceFigures) -> dict[str, Any]:
    return {
        "name": figures.name,
        "targets": figures.targets,
        "availability": figures.availability,
        "incidents": figures.incidents,
        "downtime_seconds": figures.downtime,
        "mttr_seconds": figures.mttr,
        "mtbf_seconds": figures.mtbf,
    }


def _incident(incident: Incident) -> dict[str, Any]:
    return {
        "kind": incident.subject,
        "name": incident.name,
        "location": incident.location,
        "start": incident.start,
        "duration_seconds": incident.duration,
        "open": incident.open,
        "reason": incident.reason or None,
    }


def json_text(report: Report) -> str:
    document = {
        "period": {
            "title": report.period.title,
            "start": report.period.start,
            "end": report.period.end,
        },
        "prometheus": report.prometheus,
        "step_seconds": report.step,
        "services": [_service(s) for s in report.services],
        "targets": [_row(t) for t in report.targets],
        "heartbeats": [_row(h) for h in report.heartbeats],
        "incidents": [_incident(i) for i in _incidents(report)],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


FORMATS: dict[str, Callable[[Report], str]] = {
    "html": html,
    "markdown": markdown,
    "csv": csv_text,
    "json": json_text,
}


def render(report: Report, form: str) -> str:
    return FORMATS[form](report)
