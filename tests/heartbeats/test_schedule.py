"""Next expected pings for period and cron schedules, across daylight saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from exporter.heartbeats.schedule import Period, parse_cron

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_period_expects_the_next_ping_one_period_later() -> None:
    assert Period(60).next_after(1000.0) == 1060.0


def test_cron_expects_the_next_matching_minute_in_its_time_zone() -> None:
    nightly = parse_cron("0 2 * * *", BERLIN)
    # 2026-01-15 03:00 Berlin (02:00 UTC): next run is 2026-01-16 02:00 Berlin (01:00 UTC).
    assert nightly.next_after(utc("2026-01-15T02:00:00")) == utc("2026-01-16T01:00:00")


def test_cron_next_is_strictly_after_a_ping_at_the_scheduled_second() -> None:
    hourly = parse_cron("0 * * * *", ZoneInfo("UTC"))
    assert hourly.next_after(utc("2026-01-15T02:00:00")) == utc("2026-01-15T03:00:00")


def test_cron_in_a_skipped_hour_runs_at_the_first_minute_after_it() -> None:
    """Berlin skips 02:00-03:00 on 2026-03-29; a 02:30 job is expected at 03:00 CEST."""
    job = parse_cron("30 2 * * *", BERLIN)
    after = utc("2026-03-28T01:31:00")  # 02:31 CET on the day before
    assert job.next_after(after) == utc("2026-03-29T01:00:00")  # 03:00 CEST


def test_cron_in_a_repeated_hour_runs_once() -> None:
    """Berlin repeats 02:00-03:00 on 2026-10-25; a 02:30 job runs at the first 02:30 only."""
    job = parse_cron("30 2 * * *", BERLIN)
    first = job.next_after(utc("2026-10-24T12:00:00"))
    assert first == utc("2026-10-25T00:30:00")  # 02:30 CEST
    assert job.next_after(first) == utc("2026-10-26T01:30:00")  # 02:30 CET the next day


def test_a_day_across_the_spring_change_is_23_hours() -> None:
    job = parse_cron("0 12 * * *", BERLIN)
    noon = utc("2026-03-28T11:00:00")  # 12:00 CET
    assert job.next_after(noon) - noon == 23 * 3600


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        pytest.param("0 2 * *", "must have 5 fields", id="four-fields"),
        pytest.param("0 25 * * *", "Bad hour", id="bad-hour"),
        pytest.param("0 0 30 2 *", "Bad day-of-month", id="impossible-day"),
        pytest.param("0 0 0 * * *", "must have 5 fields", id="seconds-field"),
    ],
)
def test_invalid_cron_expressions_are_refused_with_the_reason(
    expression: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cron(expression, BERLIN)
