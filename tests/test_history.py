"""The bucket history: probes land in the bucket of their time, old buckets roll off, quantiles
and the latest failure's reason are kept per bucket, all driven by a controlled clock."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exporter.config import load_text
from exporter.config_source import ConfigError, Source
from exporter.history import (
    DEGRADED,
    DOWN,
    EMPTY,
    HIGHEST,
    LOWEST,
    OPEN_SAMPLES,
    UP,
    History,
    decode,
    encode,
    reason_code,
)
from exporter.reasons import Reason
from tests.clock import FakeClock

WIDTH = 600.0


def history(count: int = 6) -> tuple[History, FakeClock]:
    clock = FakeClock(now=1_800_000_000.0)  # a multiple of 600: a bucket starts here
    return History(WIDTH, count), clock


def test_a_new_history_is_all_empty() -> None:
    h, clock = history()
    assert h.states(clock.time()) == bytes([EMPTY] * 6)
    assert [b.probes for b in h.buckets(clock.time())] == [0] * 6


def test_probes_land_in_the_bucket_of_their_time() -> None:
    h, clock = history()
    h.add(clock.time(), 0.010, failed=False)
    clock.advance(WIDTH)
    h.add(clock.time(), 0.020, failed=True, mark=reason_code(Reason.TIMEOUT))
    h.add(clock.time() + 1, 0.030, failed=False)
    buckets = h.buckets(clock.time())
    assert [b.probes for b in buckets] == [0, 0, 0, 0, 1, 2]
    assert [b.failures for b in buckets] == [0, 0, 0, 0, 0, 1]
    assert buckets[-1].reason is Reason.TIMEOUT
    assert buckets[-2].reason is None
    assert buckets[-1].start == clock.time()
    assert buckets[-1].end == clock.time() + WIDTH
    assert h.states(clock.time()) == bytes([EMPTY] * 4 + [UP, DEGRADED])


def test_a_bucket_where_every_probe_failed_is_down() -> None:
    h, clock = history()
    for _ in range(3):
        h.add(clock.time(), 0.5, failed=True, mark=reason_code(Reason.STATUS))
    assert h.states(clock.time())[-1] == DOWN
    h.add(clock.time(), 0.5, failed=False)
    assert h.states(clock.time())[-1] == DEGRADED


def test_time_without_probes_shows_empty_buckets_at_the_end() -> None:
    h, clock = history()
    h.add(clock.time(), 0.01, failed=False)
    clock.advance(2 * WIDTH)
    assert h.states(clock.time()) == bytes([EMPTY, EMPTY, EMPTY, UP, EMPTY, EMPTY])


def test_buckets_older_than_the_length_roll_off() -> None:
    h, clock = history(count=3)
    for failed in (True, False, False, True):
        h.add(clock.time(), 0.01, failed=failed)
        clock.advance(WIDTH)
    clock.advance(-WIDTH)
    assert h.states(clock.time()) == bytes([UP, UP, DOWN])
    assert sum(b.probes for b in h.buckets(clock.time())) == 3
    clock.advance(10 * WIDTH)  # nothing for longer than the history
    assert h.states(clock.time()) == bytes(3)
    h.add(clock.time(), 0.01, failed=False)
    assert [b.probes for b in h.buckets(clock.time())] == [0, 0, 1]


def test_a_record_older_than_the_history_is_dropped() -> None:
    h, clock = history(count=2)
    h.add(clock.time(), 0.01, failed=False)
    h.add(clock.time() - 5 * WIDTH, 0.01, failed=True)
    assert [b.failures for b in h.buckets(clock.time())] == [0, 0]


def test_quantiles_and_maximum_of_a_bucket() -> None:
    h, clock = history()
    for ms in range(1, 101):  # 1 ms to 100 ms
        h.add(clock.time() + ms, ms / 1000, failed=False)
    open_bucket = h.buckets(clock.time())[-1]
    clock.advance(WIDTH)
    h.add(clock.time(), 2.0, failed=False)  # closes the previous bucket
    closed = h.buckets(clock.time())[-2]
    for bucket in (open_bucket, closed):
        assert bucket.p50 == pytest.approx(0.050, rel=0.03)
        assert bucket.p95 == pytest.approx(0.095, rel=0.03)
        assert bucket.max == pytest.approx(0.100, rel=0.03)
    assert h.buckets(clock.time())[-1].p50 == pytest.approx(2.0, rel=0.03)


def test_the_open_bucket_keeps_its_latest_durations() -> None:
    h, clock = history()
    for _ in range(OPEN_SAMPLES):
        h.add(clock.time(), 5.0, failed=False)
    for _ in range(OPEN_SAMPLES):
        h.add(clock.time(), 0.001, failed=False)
    bucket = h.buckets(clock.time())[-1]
    assert bucket.p95 == pytest.approx(0.001, rel=0.03)
    assert bucket.max == pytest.approx(5.0, rel=0.03)
    assert bucket.probes == 2 * OPEN_SAMPLES


def test_counts_saturate() -> None:
    h, clock = history()
    for _ in range(70000):
        h.add(clock.time(), None, failed=True)
    bucket = h.buckets(clock.time())[-1]
    assert (bucket.probes, bucket.failures, bucket.state) == (65535, 65535, DOWN)
    assert bucket.p50 is None
    assert bucket.max is None


@pytest.mark.parametrize("seconds", [0.0002, 0.004, 0.25, 1.0, 9.5, 60.0])
def test_durations_read_back_within_three_percent(seconds: float) -> None:
    assert decode(encode(seconds)) == pytest.approx(seconds, rel=0.03)


def test_durations_outside_the_scale_are_clamped() -> None:
    assert decode(encode(0.0)) == pytest.approx(LOWEST)
    assert decode(encode(1e6)) == pytest.approx(HIGHEST)
    assert decode(0) is None
    assert decode(encode(math.inf)) == pytest.approx(HIGHEST)


def test_observed_states_only_get_worse_with_keep_worst() -> None:
    h, clock = history()
    h.observe(clock.time(), DEGRADED)
    h.add(clock.time(), 1.0, failed=False, keep_worst=True)
    h.observe(clock.time(), UP)
    assert h.states(clock.time())[-1] == DEGRADED
    h.observe(clock.time(), DOWN)
    assert h.states(clock.time())[-1] == DOWN


def test_runs_group_equal_buckets() -> None:
    h, clock = history()
    for failed in (False, False, True, False):
        h.add(clock.time(), 0.01, failed=failed)
        clock.advance(WIDTH)
    clock.advance(-WIDTH)
    assert list(h.runs(clock.time())) == [(0, 2, EMPTY), (2, 2, UP), (4, 1, DOWN), (5, 1, UP)]


def test_resizing_keeps_the_buckets_only_when_nothing_changed() -> None:
    h, clock = history()
    h.add(clock.time(), 0.01, failed=False)
    assert h.resized(WIDTH, 6) is h
    assert h.resized(WIDTH, 7).states(clock.time()) == bytes(7)


def config(section: str) -> str:
    return f"targets:\n  - {{name: api, kind: tcp, address: '127.0.0.1:1'}}\n{section}"


def test_the_history_settings_come_from_the_config() -> None:
    text = config("status_page: {history: {length: 12h, bucket: 10m}, refresh: 0s}\n")
    page = load_text(text, Source("t.yml", Path(".")), {}).status_page
    assert (page.bucket, page.buckets, page.length, page.refresh) == (600.0, 72, 43200.0, 0.0)
    default = load_text(config(""), Source("t.yml", Path(".")), {}).status_page
    assert (default.bucket, default.buckets, default.group_by) == (900.0, 96, "service")


@pytest.mark.parametrize(
    ("section", "error"),
    [
        pytest.param(
            "{history: {length: 1h, bucket: 25m}}",
            "status_page.history.length: must be a whole number of buckets of 25m",
            id="not-whole",
        ),
        pytest.param(
            "{history: {length: 30d, bucket: 1m}}",
            "status_page.history: 43200 buckets; at most 2016",
            id="too-many",
        ),
        pytest.param("{refresh: 1s}", "status_page.refresh: must be 0s (off) or at least 5s"),
        pytest.param(
            "{public: {groups: [{name: shop, targets: [apj]}]}}",
            "status_page.public.groups[0].targets[0]: no target named 'apj'",
            id="unknown-target",
        ),
        pytest.param(
            "{public: {groups: [{name: shop}, {name: shop}]}}",
            "status_page.public.groups[1].name: group 'shop' is listed twice",
            id="twice",
        ),
    ],
)
def test_bad_status_page_settings_say_where(section: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(config(f"status_page: {section}\n"), Source("t.yml", Path(".")), {})
    assert error in str(caught.value)
