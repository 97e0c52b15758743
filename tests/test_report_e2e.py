"""``lookout-exporter report`` against a real Prometheus holding a month of synthetic history,
backfilled with ``promtool tsdb create-blocks-from openmetrics``: the report's availability,
incident count, MTTR and MTBF equal the ones computed here from the incidents the history was
made of, and its HTML renders in headless Chromium without console errors (screenshot in
``tests/artifacts/``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests import processes
from tests.test_status_browser import (
    DevTools,
    chromium,
    console_errors,
    evaluate,
    navigate,
    open_page,
    screenshot,
)
from tests.tools import require_tool

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parent.parent
NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
MONTH = 30 * 86400
# The history: a scrape every 5 minutes (the step the report reads a month at; probes run every
# minute, so incidents begin and end between scrapes), from an hour before November to its end.
SCRAPE = 300
PROBE = 60
HISTORY_START = NOVEMBER - 3600
SPARSE = 6 * 3600


def at(day: int, hour: int, minute: int) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Outage:
    start: float  # the first failed probe
    end: float  # the first passed probe after it
    reason: str


@dataclass(frozen=True)
class Series:
    """One exporter's view of one target (or heartbeat) and the outages it saw."""

    kind: str  # "target" or "heartbeat"
    name: str
    labels: dict[str, str]
    outages: tuple[Outage, ...]
    sla: float | None = None


SERIES = (
    Series(
        "target",
        "orders-api",
        {"instance": "eu:9471", "location": "eu", "kind": "http", "service": "orders"},
        (
            # Before the period: it must not count.
            Outage(NOVEMBER - 3000, NOVEMBER - 1800, "status"),
            Outage(at(3, 10, 2), at(3, 10, 33), "timeout"),
            Outage(at(12, 2, 14), at(12, 4, 21), "status"),
            Outage(at(25, 18, 0), at(25, 18, 46), "refused"),
        ),
        sla=0.999,
    ),
    # The same target from another location, which saw less: the worst location counts.
    Series(
        "target",
        "orders-api",
        {"instance": "us:9471", "location": "us", "kind": "http", "service": "orders"},
        (Outage(at(12, 2, 30), at(12, 3, 1), "status"),),
        sla=0.999,
    ),
    Series(
        "target",
        "payments-api",
        {"instance": "eu:9471", "location": "eu", "kind": "http", "service": "payments"},
        (),
        sla=0.9995,
    ),
    Series(
        "heartbeat",
        "nightly-billing",
        {"instance": "eu:9471"},
        (Outage(at(8, 3, 30), at(8, 5, 7), ""),),
    ),
)


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def state(series: Series, scrape: float) -> tuple[float, int, float | None, dict[str, int]]:
    """What the exporter exposes at ``scrape``: downtime, incidents, the open incident's start,
    failed probes by reason; the latest probe ran at the scrape."""
    downtime, incidents, start = 0.0, 0, None
    failures: dict[str, int] = {}
    for outage in series.outages:
        if outage.start > scrape:
            continue
        incidents += 1
        failed = int((min(scrape + PROBE, outage.end) - outage.start) // PROBE)
        failures[outage.reason] = failures.get(outage.reason, 0) + failed
        if scrape < outage.end:
            downtime += scrape - outage.start
            start = outage.start
        else:
            downtime += outage.end - outage.start
    return downtime, incidents, start, failures


def openmetrics(series: tuple[Series, ...]) -> Iterator[str]:
    """The history as OpenMetrics. A sample is written where a value changed since the last
    scrape and every 6 hours, the duration histogram only every 6 hours: promtool reads the
    whole file once per 2-hour block, so the file is kept small, and the report reads a
    counter from its latest sample, wherever that is."""
    scrapes = range(int(HISTORY_START), int(NOVEMBER + MONTH) + 1, SCRAPE)
    families: dict[str, tuple[str, list[tuple[str, float, int]]]] = {}
    last: dict[str, float] = {}

    def add(family: str, kind: str, sample: str, value: float, when: int) -> None:
        if last.get(sample) == value and when % SPARSE and when != scrapes[-1]:
            return
        last[sample] = value
        families.setdefault(family, (kind, []))[1].append((sample, value, when))

    for item in series:
        prefix = "lookout_probe" if item.kind == "target" else "lookout_heartbeat"
        base = labels_text({"job": "lookout", item.kind: item.name, **item.labels})
        reasons = sorted({o.reason for o in item.outages if o.reason})
        for scrape in scrapes:
            downtime, incidents, start, failures = state(item, scrape)
            family = f"{prefix}_downtime_seconds"
            add(family, "counter", f"{family}_total{{{base}}}", downtime, scrape)
            family = f"{prefix}_incidents"
            add(family, "counter", f"{family}_total{{{base}}}", incidents, scrape)
            if start is not None:  # the gauge exists while the incident is open
                family = f"{prefix}_incident_start_timestamp_seconds"
                families.setdefault(family, ("gauge", []))[1].append(
                    (f"{family}{{{base}}}", start, scrape)
                )
            if item.kind != "target":
                continue
            for reason in reasons:
                sample = f'lookout_probe_failures_total{{{base},reason="{reason}"}}'
                add("lookout_probe_failures", "counter", sample, failures.get(reason, 0), scrape)
            if scrape % SPARSE and scrape != scrapes[-1]:
                continue
            probes = (scrape - int(HISTORY_START)) // PROBE + 1
            passed = probes - sum(failures.values())
            for le, count in (("0.05", passed), ("0.25", passed), ("+Inf", probes)):
                sample = f'lookout_probe_duration_seconds_bucket{{{base},le="{le}"}}'
                add("lookout_probe_duration_seconds", "histogram", sample, count, scrape)
            sample = f"lookout_probe_duration_seconds_count{{{base}}}"
            add("lookout_probe_duration_seconds", "histogram", sample, probes, scrape)
            if item.sla is not None:
                family = "lookout_probe_sla_objective_ratio"
                add(family, "gauge", f"{family}{{{base}}}", item.sla, scrape)
    for family, (kind, samples) in families.items():
        yield f"# TYPE {family} {kind}\n"
        for sample, value, when in samples:
            yield f"{sample} {value!r} {when}\n"
    yield "# EOF\n"


def expected(name: str) -> tuple[float, int]:
    """(downtime, incidents) within November of the worst location of ``name``."""
    best = (0.0, 0)
    for item in SERIES:
        if item.name != name:
            continue
        inside = [o for o in item.outages if NOVEMBER <= o.start < NOVEMBER + MONTH]
        found = (sum(o.end - o.start for o in inside), len(inside))
        best = max(best, found)
    return best


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TSDB directory with the month's blocks."""
    promtool = require_tool("promtool")
    directory = tmp_path_factory.mktemp("history")
    source = directory / "history.om"
    with source.open("w", encoding="utf-8") as out:
        out.writelines(openmetrics(SERIES))
    tsdb = directory / "prometheus"
    result = processes.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(tsdb)],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    source.unlink()
    return directory


@pytest.fixture
async def prometheus(history: Path) -> AsyncIterator[str]:
    settings = {"global": {"scrape_interval": "1h"}, "scrape_configs": []}
    async with processes.prometheus(
        settings,
        history,
        "--storage.tsdb.retention.time=100y",
        # Keeps the backfilled 2-hour blocks as they are instead of compacting them at start.
        "--storage.tsdb.max-block-duration=2h",
        "--log.level=warn",
    ) as base:
        yield base


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


async def test_the_report_of_a_backfilled_month_has_the_exact_figures(
    prometheus: str, tmp_path: Path
) -> None:
    done = report("--prometheus.url", prometheus, "--month", "2026-11", "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["period"] == {
        "title": "November 2026",
        "start": NOVEMBER,
        "end": NOVEMBER + MONTH,
    }
    rows = {(row["kind"], row["name"]): row for row in document["targets"] + document["heartbeats"]}
    for kind, name in (
        ("target", "orders-api"),
        ("target", "payments-api"),
        ("heartbeat", "nightly-billing"),
    ):
        downtime, incidents = expected(name)
        row = rows[(kind, name)]
        assert row["downtime_seconds"] == downtime
        assert row["incidents"] == incidents
        assert row["availability"] == 1 - downtime / MONTH
        assert row["mttr_seconds"] == (downtime / incidents if incidents else None)
        assert row["mtbf_seconds"] == ((MONTH - downtime) / incidents if incidents else None)
    assert rows[("target", "orders-api")]["incidents"] == 3
    assert rows[("target", "orders-api")]["downtime_seconds"] == (31 + 127 + 46) * 60
    assert rows[("target", "orders-api")]["sla"] == 0.999
    assert rows[("target", "payments-api")]["availability"] == 1.0
    # Every incident of every location, with its start, its duration and its reason.
    listed = [
        (i["name"], i["location"], i["start"], i["duration_seconds"], i["reason"])
        for i in document["incidents"]
    ]
    assert listed == sorted(
        (
            (
                item.name,
                item.labels.get("location", item.labels["instance"]),
                o.start,
                o.end - o.start,
                o.reason or None,
            )
            for item in SERIES
            for o in item.outages
            if o.start >= NOVEMBER
        ),
        key=lambda i: (i[2], i[0]),
    )
    services = {s["name"]: s for s in document["services"]}
    assert services["orders"]["mttr_seconds"] == expected("orders-api")[0] / 3
    assert services["payments"]["incidents"] == 0

    page = tmp_path / "report.html"
    done = report("--prometheus.url", prometheus, "--month", "2026-11", "--output", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "99.528%" in text  # orders-api: 1 - 12240 s / 30 days
    async with (
        chromium(tmp_path / "profile") as browser_url,
        aiohttp.ClientSession() as http,
        http.ws_connect(browser_url, max_msg_size=0) as ws,
    ):
        devtools = DevTools(ws)
        try:
            session = await open_page(devtools)
            start = await navigate(devtools, session, page.as_uri())
            images = await evaluate(
                devtools,
                session,
                "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)",
            )
            assert images == [True] * 4  # availability and latency of both targets
            assert await evaluate(devtools, session, "document.scripts.length") == 0
            await screenshot(devtools, session, "sla-report.png")
            assert console_errors(devtools, session, start) == []
        finally:
            await devtools.close()

    for form, needle in (
        ("markdown", "| orders-api | orders | 99.528% |"),
        ("csv", "target,orders-api,orders,0.99527"),
    ):
        done = report("--prometheus.url", prometheus, "--month", "2026-11", "--format", form)
        assert done.returncode == 0, done.stderr
        assert needle in done.stdout


async def test_a_period_without_data_exits_1_saying_so(prometheus: str) -> None:
    done = report("--prometheus.url", prometheus, "--month", "2026-09")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no Lookout incident series" in done.stderr
    assert "September 2026" in done.stderr


def test_an_unreachable_prometheus_exits_1_saying_so() -> None:
    url = f"http://127.0.0.1:{processes.free_port()}"
    done = report("--prometheus.url", url, "--from", "2026-11-01", "--to", "2026-11-02")
    assert done.returncode == 1
    assert done.stderr.startswith(f"lookout-exporter report: cannot reach Prometheus at {url}: ")
