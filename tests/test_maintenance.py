"""Maintenance windows: recurring ones by cron in their time zone (across daylight saving
changes), one-off ones by start and end, their scope, and what the exporter exports for them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exporter.collectors.maintenance import MaintenanceCollector
from exporter.config import ConfigError, Source, load_text
from exporter.maintenance import Window, build_window
from exporter.stats import ProbeStats
from tests.clock import FakeClock
from tests.metrics import sample_value

UTC = ZoneInfo("UTC")


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def window(**raw: Any) -> Window:
    return build_window({"name": "w", **raw}, ("maintenance", 0))


def test_a_nightly_window_in_berlin_is_open_for_its_duration_in_local_time() -> None:
    nightly = window(cron="0 2 * * *", duration="2h", timezone="Europe/Berlin")
    # Winter: 02:00 CET is 01:00 UTC.
    assert not nightly.active(at("2026-01-15T00:59:59+00:00"))
    assert nightly.active(at("2026-01-15T01:00:00+00:00"))
    assert nightly.active(at("2026-01-15T02:59:59+00:00"))
    assert not nightly.active(at("2026-01-15T03:00:00+00:00"))
    # Summer: 02:00 CEST is 00:00 UTC.
    assert nightly.active(at("2026-07-15T00:30:00+00:00"))
    assert not nightly.active(at("2026-07-15T02:00:00+00:00"))


def test_on_the_night_clocks_go_forward_the_window_starts_at_the_first_minute_after_the_gap() -> (
    None
):
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; the 02:00 run moves to 03:00 CEST (01:00 UTC).
    nightly = window(cron="0 2 * * *", duration="2h", timezone="Europe/Berlin")
    assert not nightly.active(at("2026-03-29T00:59:00+00:00"))
    assert nightly.active(at("2026-03-29T01:00:00+00:00"))
    assert nightly.active(at("2026-03-29T02:59:00+00:00"))
    assert not nightly.active(at("2026-03-29T03:00:00+00:00"))


def test_on_the_night_clocks_go_back_the_window_opens_once() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, the window opens at
    # the first (00:30 UTC) and stays open for its one hour only.
    nightly = window(cron="30 2 * * *", duration="1h", timezone="Europe/Berlin")
    assert nightly.active(at("2026-10-25T00:30:00+00:00"))
    assert nightly.active(at("2026-10-25T01:29:00+00:00"))
    assert not nightly.active(at("2026-10-25T01:30:00+00:00"))
    assert not nightly.active(at("2026-10-25T02:00:00+00:00"))


def test_a_one_off_window_is_open_from_start_until_end() -> None:
    migration = window(start="2026-12-05T22:00:00Z", end="2026-12-06T02:00:00+00:00")
    assert not migration.active(at("2026-12-05T21:59:59+00:00"))
    assert migration.active(at("2026-12-05T22:00:00+00:00"))
    assert not migration.active(at("2026-12-06T02:00:00+00:00"))


def test_scope_by_names_globs_labels_or_everything() -> None:
    assert window(cron="0 0 * * *", duration="1h").covers_target("any", ())
    assert window(cron="0 0 * * *", duration="1h").covers_heartbeat("any", ())
    by_name = window(cron="0 0 * * *", duration="1h", targets=["orders-*"])
    assert by_name.covers_target("orders-db", ())
    assert not by_name.covers_target("billing", ())
    assert not by_name.covers_heartbeat("orders-db", ())
    by_label = window(cron="0 0 * * *", duration="1h", labels={"service": "orders"})
    assert by_label.covers_target("x", (("service", "orders"), ("team", "a")))
    assert by_label.covers_heartbeat("y", (("service", "orders"),))
    assert not by_label.covers_target("x", (("service", "billing"),))
    both = window(cron="0 0 * * *", duration="1h", targets=["a*"], labels={"tier": "1"})
    assert both.covers_target("ab", (("tier", "1"),))
    assert not both.covers_target("ab", ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            "{name: w, cron: '0 2 * * *'}",
            "t.yml:2: maintenance[0]: a recurring window needs a duration",
            id="no-duration",
        ),
        pytest.param(
            "{name: w, start: '2026-12-05T22:00:00'}",
            "t.yml:2: maintenance[0].start: time '2026-12-05T22:00:00' has no offset "
            "(add Z or +01:00)",
            id="no-offset",
        ),
        pytest.param(
            "{name: w, start: '2026-12-05T22:00:00Z', end: '2026-12-05T21:00:00Z'}",
            "t.yml:2: maintenance[0].end: end is not after start",
            id="end-before-start",
        ),
        pytest.param(
            "{name: w, cron: '0 2 * *', duration: 1h}",
            "t.yml:2: maintenance[0].cron: cron expression '0 2 * *' must have 5 fields "
            "(minute hour day month weekday)",
            id="bad-cron",
        ),
        pytest.param(
            "{name: w, cron: '0 2 * * *', duration: 1h, timezone: Mars/Olympus}",
            "t.yml:2: maintenance[0].timezone: unknown time zone 'Mars/Olympus'",
            id="bad-zone",
        ),
        pytest.param(
            f"{{name: w, cron: '0 2 * * *', duration: 1h, timezone: '{'9' * 400}s'}}",
            f"t.yml:2: maintenance[0].timezone: unknown time zone '{'9' * 400}s'",
            id="zone-name-longer-than-a-file-name",
        ),
    ],
)
def test_a_wrong_window_is_a_config_problem_naming_its_key(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_text(f"maintenance:\n  - {raw}\ntargets: []\n", Source("t.yml", Path(".")), {})
    assert [str(p) for p in raised.value.problems] == [message]


def test_the_collector_exports_covered_targets_and_heartbeats_and_each_window() -> None:
    text = """
targets:
  - {name: orders-db, kind: tcp, address: '127.0.0.1:5432', labels: {service: orders}}
  - {name: billing, kind: tcp, address: '127.0.0.1:5433'}
heartbeats:
  - {name: orders-export, period: 1h, grace: 5m, labels: {service: orders}}
  - {name: other, period: 1h, grace: 5m}
maintenance:
  - {name: orders-patching, cron: '0 3 * * 0', duration: 2h, labels: {service: orders}}
"""
    config = load_text(text, Source("t.yml", Path(".")), {})
    clock = FakeClock(now=at("2027-01-03T03:30:00+00:00"))  # a Sunday
    stats = [ProbeStats(t) for t in config.targets]
    collector = MaintenanceCollector(
        lambda: config.maintenance, lambda: stats, lambda: config.heartbeats, lambda: "lab", clock
    )
    exposed = "".join(collector.expose())
    assert sample_value(exposed, "lookout_maintenance_window_active", window="orders-patching") == 1
    assert (
        sample_value(exposed, "lookout_maintenance_active", target="orders-db", location="lab") == 1
    )
    assert sample_value(exposed, "lookout_maintenance_active", heartbeat="orders-export") == 1
    assert sample_value(exposed, "lookout_maintenance_active", target="billing") is None
    assert sample_value(exposed, "lookout_maintenance_active", heartbeat="other") is None
    assert collector.active("orders-db", (("service", "orders"),)) == ["orders-patching"]
    clock.advance(2 * 3600)
    exposed = "".join(collector.expose())
    assert sample_value(exposed, "lookout_maintenance_active", target="orders-db") == 0
    assert collector.active("orders-db", (("service", "orders"),)) == []
