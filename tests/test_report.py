"""The report's pure parts: periods, counter increases across restarts, incidents from the
start gauge, and output that stays inert whatever the label values."""

from __future__ import annotations

import csv
import io
import json

import pytest

from exporter.report.compute import (
    Incident,
    Report,
    Subject,
    _incidents,
    choose_step,
    increase,
    services,
)
from exporter.report.period import Period, between, parse_month, parse_time
from exporter.report.render import csv_text, html, json_text, markdown

NOV = 1793491200.0  # 2026-11-01T00:00:00Z


def test_a_month_runs_from_its_first_midnight_to_the_next_months_in_utc() -> None:
    period = parse_month("2026-11")
    assert (period.start, period.end, period.title) == (NOV, NOV + 30 * 86400, "November 2026")
    assert parse_month("2028-02").seconds == 29 * 86400


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "November", "2026-00"])
def test_a_malformed_month_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="--month"):
        parse_month(text)


def test_times_are_dates_rfc3339_or_unix_seconds() -> None:
    assert parse_time("2026-11-01", "--from") == NOV
    assert parse_time("2026-11-01T01:00:00Z", "--from") == NOV + 3600
    assert parse_time(str(NOV), "--from") == NOV
    with pytest.raises(ValueError, match="--to 'soon'"):
        parse_time("soon", "--to")
    with pytest.raises(ValueError, match="--to must be after --from"):
        between(NOV, NOV)


def test_the_step_is_the_finest_within_prometheus_point_limit() -> None:
    assert choose_step(between(NOV, NOV + 86400)) == 60
    assert choose_step(parse_month("2026-11")) == 300
    assert choose_step(between(NOV, NOV + 365 * 86400)) == 3600


def test_a_counter_drop_is_a_restart_counting_from_zero() -> None:
    points = [(0.0, 10.0), (60.0, 40.0), (120.0, 5.0), (180.0, 25.0)]
    assert increase(points, 0.0, 60) == 30 + 5 + 20
    # A series that first appears within the period counted from 0 at its appearance.
    assert increase([(600.0, 7.0), (660.0, 9.0)], 0.0, 60) == 9


def test_each_run_of_one_start_is_an_incident_lasting_the_downtime_it_added() -> None:
    downtime = [
        (t, v)
        for t, v in zip(range(0, 600, 60), (0, 0, 50, 110, 130, 130, 130, 20, 40, 40), strict=True)
    ]
    starts = [(120.0, 70.0), (180.0, 70.0), (420.0, 400.0), (480.0, 400.0)]
    found = list(_incidents("target", "api", "eu", downtime, starts, 60))
    assert found == [
        Incident("target", "api", "eu", 70.0, 130.0, False, ""),
        # Restarted within (the counter dropped): from its start to the latest step after it.
        Incident("target", "api", "eu", 400.0, 40.0, False, ""),
    ]


HOSTILE = "<script>alert(1)</script>|=cmd|*x*"


def report() -> Report:
    period = Period(NOV, NOV + 86400, "a day")
    target = Subject("target", HOSTILE, "shop", downtime=864.0, incidents=2, period_seconds=86400)
    target.sla = 0.995
    target.incident_list = [Incident("target", HOSTILE, "eu", NOV + 60, 864.0, False, "status")]
    quiet = Subject("target", "quiet", "shop", period_seconds=86400)
    return Report(
        period, "http://127.0.0.1:9090", 60, [target, quiet], [], services([target, quiet], period)
    )


def test_service_figures_pool_their_targets() -> None:
    [shop] = report().services
    assert (shop.availability, shop.incidents, shop.mttr) == ((0.99 + 1.0) / 2, 2, 432.0)
    assert shop.mtbf == (86400 - 864 + 86400) / 2


def test_html_escapes_every_value_and_holds_no_script() -> None:
    text = html(report())
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "99.000%" in text  # availability
    assert "200.0%" in text  # SLA budget used


def test_markdown_cells_cannot_break_the_table_or_add_markup() -> None:
    text = markdown(report())
    assert "\\<script\\>alert(1)\\</script\\>\\|=cmd\\|\\*x\\*" in text


def test_csv_cells_never_start_a_formula_and_json_keeps_the_name() -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(report()))))
    assert rows[0]["name"] == HOSTILE  # starts with <, not a formula
    assert rows[0]["mttr_seconds"] == "432.0"
    assert rows[1]["mttr_seconds"] == ""
    document = json.loads(json_text(report()))
    assert document["incidents"][0]["name"] == HOSTILE
    assert document["targets"][0]["availability"] == 0.99
