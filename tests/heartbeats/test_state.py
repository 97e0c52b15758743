"""The heartbeat state machine, travelling in time with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import (
    DURATION_BUCKETS,
    MAX_OPEN_RUNS,
    Facts,
    Instances,
    Ping,
    Signal,
    Status,
    Track,
    View,
    derive,
    judge,
)
from tests.heartbeats.conftest import T0, FakeClock, cron, every


class Job:
    """One heartbeat's facts and instances, pinged and read at the fake clock's time."""

    def __init__(self, spec: Heartbeat, clock: FakeClock) -> None:
        self.spec = spec
        self.clock = clock
        self.facts = Facts()
        self.instances = Instances()

    def ping(self, signal: Signal = Signal.SUCCESS, **kwargs: object) -> None:
        ping = Ping("job", signal, self.clock.time(), **kwargs)  # type: ignore[arg-type]
        judged = judge(ping, self.facts, self.spec)
        self.facts = self.facts.apply(judged, self.spec)
        if ping.instance is not None:
            evict = self.instances.make_room(self.spec, ping.at)
            if evict is not None:
                self.instances.remove(evict)
            track = self.instances.get(ping.instance) or Track()
            self.instances.put(ping.instance, track.apply(judged, self.spec))

    @property
    def view(self) -> View:
        return derive(self.spec, self.facts, self.instances, self.clock.time())

    @property
    def status(self) -> Status:
        return self.view.status


def test_it_is_new_until_the_first_ping(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    clock.advance(10_000)
    assert job.status is Status.NEW
    assert job.view.deadline is None
    assert job.view.age is None


def test_a_declared_heartbeat_that_never_pings_goes_late_and_then_down_from_its_declaration(
    clock: FakeClock,
) -> None:
    job = Job(every(60, 30), clock)
    job.facts = Facts(declared_at=clock.now)
    declared = clock.now
    assert (job.status, job.view.deadline) == (Status.NEW, declared + 90)
    assert job.view.incident_start is None
    clock.advance(61)
    assert job.status is Status.LATE
    clock.advance(30)
    assert job.status is Status.DOWN
    assert job.view.deadline == declared + 90
    assert job.view.incident_start == declared + 60


def test_the_first_success_of_a_heartbeat_that_never_pinged_closes_its_incident(
    clock: FakeClock,
) -> None:
    job = Job(every(60, 30), clock)
    job.facts = Facts(declared_at=clock.now)
    clock.advance(100)
    job.ping()
    assert job.status is Status.UP
    assert (job.facts.incidents, job.facts.downtime) == (1, 40)
    assert job.facts.declared_at == T0
    assert job.view.deadline == clock.now + 90


def test_a_cron_heartbeat_that_never_pings_expects_the_first_match_after_its_declaration(
    clock: FakeClock,
) -> None:
    job = Job(cron("0 4 * * *", "Europe/Berlin", 1800), clock)
    job.facts = Facts(declared_at=clock.now)  # 13:00 in Berlin
    expected = datetime(2026, 3, 29, 2, 0, tzinfo=UTC).timestamp()  # 04:00 CEST
    assert job.view.deadline == expected + 1800
    clock.now = expected + 1801
    assert job.status is Status.DOWN


def test_facts_keep_their_declaration_time_through_json() -> None:
    facts = Facts(declared_at=T0)
    assert Facts.from_json(facts.to_json()) == facts
    assert Facts.from_json({**facts.to_json(), "declared_at": None}).declared_at is None
    without = facts.to_json()
    del without["declared_at"]  # written before it was kept
    assert Facts.from_json(without).declared_at is None
    with pytest.raises(ValueError, match=r"facts\.declared_at"):
        Facts.from_json({**facts.to_json(), "declared_at": "yesterday"})


def test_it_is_up_after_a_success(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    assert job.status is Status.UP
    assert job.view.deadline == clock.now + 90


def test_it_goes_late_after_the_period(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    clock.advance(60)
    assert job.status is Status.UP
    clock.advance(1)
    assert job.status is Status.LATE


def test_it_goes_down_after_grace(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    clock.advance(90)
    assert job.status is Status.LATE
    clock.advance(1)
    assert job.status is Status.DOWN
    assert job.view.age == 91


def test_a_new_success_brings_it_back_up_and_moves_the_deadline(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    clock.advance(500)
    job.ping()
    assert job.status is Status.UP
    assert job.view.deadline == clock.now + 90


def test_it_is_failed_after_a_fail_until_the_next_success(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    job.ping(Signal.FAIL)
    assert job.status is Status.FAILED
    clock.advance(10)
    job.ping()
    assert job.status is Status.UP


def test_a_failure_before_any_success_expects_a_success_one_period_after_the_first_ping(
    clock: FakeClock,
) -> None:
    job = Job(every(60, 30), clock)
    job.ping(Signal.FAIL, exit_code=3)
    assert job.status is Status.FAILED
    assert job.view.deadline == clock.now + 90
    assert job.facts.last_exit_code == 3
    assert job.facts.track.last_run_failed is True


def test_a_job_failing_on_every_run_stays_down_after_its_deadline(clock: FakeClock) -> None:
    """The wrapper's start pings do not move the deadline once it has passed, and the failed
    last run stays visible while the next one runs."""
    job = Job(every(60, 30), clock)
    job.ping()
    deadline = clock.now + 90
    last_run_failed = False
    for _ in range(7):
        clock.advance(60)
        job.ping(Signal.START)
        if clock.now > deadline:
            assert job.status is Status.DOWN
        assert job.facts.track.last_run_failed is last_run_failed
        assert job.view.deadline == deadline
        last_run_failed = True
        clock.advance(5)
        job.ping(Signal.FAIL, exit_code=3)
        assert job.facts.track.last_run_failed is True
        assert job.view.deadline == deadline
    clock.advance(60)
    job.ping(Signal.START)
    clock.advance(5)
    job.ping()
    assert job.status is Status.UP
    assert job.facts.track.last_run_failed is False
    assert job.view.deadline == clock.now + 90


def test_a_start_within_the_deadline_still_gives_the_run_its_allowance(
    clock: FakeClock,
) -> None:
    job = Job(every(60, 30, max_runtime=600), clock)
    job.ping()
    clock.advance(60)
    job.ping(Signal.START)
    assert job.status is Status.RUNNING
    assert job.view.deadline == clock.now + 600


def test_it_is_running_after_a_start_within_max_runtime(clock: FakeClock) -> None:
    job = Job(every(3600, 60, max_runtime=600), clock)
    job.ping()
    clock.advance(3600)
    job.ping(Signal.START)
    clock.advance(600)
    assert job.status is Status.RUNNING
    assert job.view.deadline == clock.now


def test_a_run_longer_than_max_runtime_is_down(clock: FakeClock) -> None:
    job = Job(every(3600, 60, max_runtime=600), clock)
    job.ping(Signal.START)
    clock.advance(601)
    assert job.status is Status.DOWN


def test_without_max_runtime_a_run_may_take_the_grace(clock: FakeClock) -> None:
    job = Job(every(3600, 120), clock)
    job.ping(Signal.START)
    clock.advance(120)
    assert job.status is Status.RUNNING
    clock.advance(1)
    assert job.status is Status.DOWN


def test_max_runtime_is_separate_from_grace(clock: FakeClock) -> None:
    """A long run is fine within max_runtime even when that is far beyond the grace."""
    job = Job(every(86400, 60, max_runtime=7200), clock)
    job.ping(Signal.START)
    clock.advance(7000)
    assert job.status is Status.RUNNING


def test_a_finished_run_records_its_duration_and_exit_code(clock: FakeClock) -> None:
    job = Job(every(3600, 60), clock)
    job.ping(Signal.START)
    clock.advance(42)
    job.ping(Signal.SUCCESS, exit_code=0)
    assert job.status is Status.UP
    assert job.facts.last_duration == 42
    assert job.facts.last_exit_code == 0
    assert job.facts.last_start_at == clock.now - 42


def test_rid_pairs_overlapping_runs_with_their_own_start(clock: FakeClock) -> None:
    job = Job(every(60, 600), clock)
    job.ping(Signal.START, rid="a")
    clock.advance(10)
    job.ping(Signal.START, rid="b")
    clock.advance(5)
    job.ping(Signal.SUCCESS, rid="a")
    assert job.facts.last_duration == 15
    assert job.status is Status.RUNNING  # b is still open
    clock.advance(20)
    job.ping(Signal.FAIL, rid="b", exit_code=2)
    assert job.facts.last_duration == 25
    assert job.status is Status.FAILED


def test_a_finish_without_a_matching_start_has_no_duration(clock: FakeClock) -> None:
    job = Job(every(60, 60), clock)
    job.ping(Signal.START, rid="a")
    clock.advance(5)
    job.ping(Signal.SUCCESS, rid="zzz")
    assert job.facts.last_duration is None
    assert job.status is Status.RUNNING


def test_a_duration_sent_by_the_job_wins_over_the_measured_one(clock: FakeClock) -> None:
    job = Job(every(60, 60), clock)
    job.ping(Signal.START, rid="a")
    clock.advance(5)
    job.ping(Signal.SUCCESS, rid="a", duration=4.25)
    assert job.facts.last_duration == 4.25


def test_open_runs_are_bounded(clock: FakeClock) -> None:
    job = Job(every(60, 60), clock)
    for n in range(MAX_OPEN_RUNS + 10):
        job.ping(Signal.START, rid=f"r{n}")
        clock.advance(1)
    assert len(job.facts.runs) == MAX_OPEN_RUNS
    job.ping(Signal.SUCCESS, rid="r0")  # forgotten: no duration
    assert job.facts.last_duration is None
    job.ping(Signal.SUCCESS, rid=f"r{MAX_OPEN_RUNS + 9}")
    assert job.facts.last_duration == 1


def test_pings_are_counted_by_signal(clock: FakeClock) -> None:
    job = Job(every(60, 60), clock)
    for signal in (Signal.START, Signal.SUCCESS, Signal.START, Signal.FAIL, Signal.SUCCESS):
        job.ping(signal)
    assert dict(job.facts.counts) == {Signal.START: 2, Signal.SUCCESS: 2, Signal.FAIL: 1}
    assert job.facts.seq == 5


def test_instances_alive_counts_workers_pinging_on_time(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=3), clock)
    for worker in ("w1", "w2", "w3"):
        job.ping(instance=worker)
    assert job.view.instances_alive == 3
    clock.advance(60)
    job.ping(instance="w1")
    clock.advance(60)  # w2 and w3 are 120 s past their last ping: down
    assert job.view.instances_alive == 1
    assert job.status is Status.UP  # the heartbeat as a whole still gets pings


def test_a_failing_instance_is_not_alive(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=2), clock)
    job.ping(instance="w1")
    job.ping(Signal.FAIL, instance="w2")
    assert job.view.instances_alive == 1


def test_a_running_instance_is_alive(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=2, max_runtime=900), clock)
    job.ping(Signal.START, instance="w1")
    clock.advance(600)
    assert job.view.instances_alive == 1


def test_a_start_of_one_instance_is_not_finished_by_another(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=2, max_runtime=900), clock)
    job.ping(Signal.START, instance="w1")
    clock.advance(5)
    job.ping(Signal.SUCCESS, instance="w2")
    assert job.status is Status.RUNNING
    assert job.facts.last_duration is None


def test_instance_names_of_replaced_pods_make_room_for_new_ones(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=2), clock)
    for n in range(20):
        job.ping(instance=f"pod-{n}")
        clock.advance(100)  # each pod is down by the time the next one starts
    assert sorted(job.instances) == sorted(f"pod-{n}" for n in range(12, 20))


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_a_nightly_cron_job_is_late_after_its_run_time_and_down_after_grace(
    clock: FakeClock,
) -> None:
    job = Job(cron("0 2 * * *", "Europe/Berlin", grace=1800), clock)
    clock.now = utc("2026-01-15T01:00:30")  # 02:00:30 Berlin
    job.ping()
    clock.now = utc("2026-01-16T01:00:00")  # 02:00 Berlin the next day: due now
    assert job.status is Status.UP
    clock.advance(1)
    assert job.status is Status.LATE
    clock.now = utc("2026-01-16T01:30:01")
    assert job.status is Status.DOWN
    assert job.view.deadline == utc("2026-01-16T01:30:00")


def test_the_cron_deadline_follows_the_spring_dst_change(clock: FakeClock) -> None:
    """Berlin moves to CEST on 2026-03-29: the 02:00 run is expected at 03:00 CEST (01:00 UTC)."""
    job = Job(cron("0 2 * * *", "Europe/Berlin", grace=1800), clock)
    clock.now = utc("2026-03-28T01:00:10")  # 02:00:10 CET
    job.ping()
    assert job.view.deadline == utc("2026-03-29T01:30:00")
    clock.now = utc("2026-03-29T00:59:00")  # 01:59 CET, then clocks jump to 03:00
    assert job.status is Status.UP
    clock.now = utc("2026-03-29T01:10:00")  # 03:10 CEST
    assert job.status is Status.LATE
    job.ping()
    assert job.status is Status.UP
    assert job.view.deadline == utc("2026-03-30T00:30:00")  # 02:00 CEST + 30m


def test_the_cron_deadline_follows_the_autumn_dst_change(clock: FakeClock) -> None:
    """On 2026-10-25 02:00-03:00 happens twice in Berlin; the job is due at the first 02:00."""
    job = Job(cron("0 2 * * *", "Europe/Berlin", grace=600), clock)
    clock.now = utc("2026-10-24T00:00:30")  # 02:00:30 CEST
    job.ping()
    assert job.view.deadline == utc("2026-10-25T00:10:00")  # 02:00 CEST + 10m
    clock.now = utc("2026-10-25T00:05:00")
    job.ping()
    assert job.view.deadline == utc("2026-10-26T01:10:00")  # 02:00 CET + 10m


def test_facts_survive_a_json_round_trip(clock: FakeClock) -> None:
    job = Job(every(60, 30, instances=2), clock)
    job.ping(Signal.START, rid="a", instance="w1")
    clock.advance(3)
    job.ping(Signal.FAIL, rid="b", instance="w2", exit_code=4)
    job.ping(Signal.START, instance="w2")
    assert Facts.from_json(job.facts.to_json()) == job.facts
    for _, track in job.instances.items():
        assert Track.from_json(track.to_json()) == track


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"seq": "7"}, "facts.seq: expected a count", id="seq-text"),
        pytest.param({"counts": {"success": -1}}, "facts.counts", id="negative-count"),
        pytest.param({"counts": {"retry": 1}}, "facts.counts", id="unknown-signal"),
        pytest.param({"runs": [["", "r", "yesterday"]]}, "facts.runs", id="run-time"),
        pytest.param({"durations": [1, 2]}, "facts.durations", id="buckets"),
        pytest.param({"last_exit_code": 1.5}, "facts.last_exit_code", id="exit-code"),
        pytest.param(
            {"track": {"failed": "no", "last_ping_at": None}}, "track.failed", id="failed-text"
        ),
        pytest.param(
            {"track": {"failed": False, "successes": ["noon"]}}, "track.successes", id="success"
        ),
        pytest.param({"last_duration": float("inf")}, "facts.last_duration", id="infinite"),
    ],
)
def test_facts_with_a_wrongly_typed_value_are_refused_when_read(
    clock: FakeClock, change: dict[str, object], message: str
) -> None:
    job = Job(every(60, 30), clock)
    job.ping()
    data = {**job.facts.to_json(), **change}
    with pytest.raises(ValueError, match=message):
        Facts.from_json(data)


def test_facts_written_before_pings_per_period_are_read(clock: FakeClock) -> None:
    old = {
        "track": {"last_ping_at": 5.0, "last_success_at": 5.0, "failed": False,
                  "open_start_at": None, "open_start_key": None},
        "seq": 1, "counts": {"success": 1}, "last_start_at": None, "last_duration": None,
        "last_exit_code": None, "runs": [], "instances": {},
    }  # fmt: skip
    facts = Facts.from_json(old)
    assert facts.track.successes == (5.0,)
    assert facts.durations == Facts().durations


def test_a_job_finishing_faster_than_min_runtime_failed(clock: FakeClock) -> None:
    job = Job(every(3600, 600, min_runtime=60), clock)
    job.ping(Signal.START)
    clock.advance(2)
    job.ping(Signal.SUCCESS, exit_code=0)
    assert job.status is Status.FAILED
    assert job.facts.counts == {Signal.START: 1, Signal.FAIL: 1}
    job.ping(Signal.START)
    clock.advance(61)
    job.ping(Signal.SUCCESS)
    assert job.status is Status.UP


def test_min_runtime_also_judges_a_reported_duration(clock: FakeClock) -> None:
    job = Job(every(3600, 600, min_runtime=60), clock)
    job.ping(Signal.SUCCESS, duration=3)
    assert job.status is Status.FAILED
    job.ping(Signal.SUCCESS)  # no start, no duration: nothing to judge
    assert job.status is Status.UP


def test_max_runtime_is_its_own_allowance_for_a_started_run(clock: FakeClock) -> None:
    """A short grace for the schedule, a long one for the run: a started run is running until
    max_runtime, whatever the grace."""
    job = Job(every(3600, 60, max_runtime=7200), clock)
    job.ping()
    clock.advance(3600)
    job.ping(Signal.START)
    clock.advance(5000)
    assert job.status is Status.RUNNING
    assert job.view.deadline == clock.now - 5000 + 7200
    clock.advance(2201)
    assert job.status is Status.DOWN


def test_a_heartbeat_expecting_three_pings_per_period_is_late_with_two(
    clock: FakeClock,
) -> None:
    job = Job(every(3600, 300, pings_per_period=3), clock)
    for _ in range(3):
        job.ping()
        clock.advance(1200)
    # successes at 0, 1200 and 2400 s; now 3600 s: the oldest of them is one period old
    assert job.status is Status.UP
    clock.advance(1)
    assert job.status is Status.LATE
    assert job.view.deadline == clock.now - 1 + 300
    job.ping()
    assert job.status is Status.UP
    assert job.view.deadline == T0 + 1200 + 3600 + 300  # the oldest kept is now 1200 s


def test_run_durations_are_counted_in_buckets(clock: FakeClock) -> None:
    job = Job(every(3600, 600), clock)
    for seconds in (0.5, 3, 3, 700, 100_000):
        job.ping(Signal.SUCCESS, duration=seconds)
    durations = dict(zip((*DURATION_BUCKETS, "+Inf"), job.facts.durations, strict=True))
    assert durations[1] == 1
    assert durations[5] == 2
    assert durations[1200] == 1
    assert durations["+Inf"] == 1
    assert job.facts.duration_sum == 100_706.5
