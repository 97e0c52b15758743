"""Heartbeat incidents: open while the heartbeat is late, down or failed, dated from when it
turned so, closed by the next success; settled into the stored facts by every ping, so they
survive a reload and a restart. The clock is a fake one."""

from __future__ import annotations

from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Facts, Ping, Signal, View, derive, judge
from tests.heartbeats.conftest import T0, FakeClock, MakeHeartbeats, Place, every


class Job:
    """One heartbeat's facts, pinged and read at the fake clock's time."""

    def __init__(self, spec: Heartbeat, clock: FakeClock) -> None:
        self.spec = spec
        self.clock = clock
        self.facts = Facts()

    def ping(self, signal: Signal = Signal.SUCCESS, **kwargs: object) -> None:
        ping = Ping("job", signal, self.clock.time(), **kwargs)  # type: ignore[arg-type]
        self.facts = self.facts.apply(judge(ping, self.facts, self.spec), self.spec)

    def at(self, offset: float) -> View:
        self.clock.now = T0 + offset
        return derive(self.spec, self.facts, None, self.clock.time())


def counters(view: View) -> tuple[int, float, float | None]:
    return view.incidents, view.downtime, view.incident_start


def test_a_late_heartbeat_has_an_incident_from_its_expected_ping_until_its_next_success(
    clock: FakeClock,
) -> None:
    job = Job(every(60, 30), clock)
    job.ping()  # T0: next expected at T0 + 60
    assert counters(job.at(60)) == (0, 0.0, None)
    assert counters(job.at(75)) == (1, 15.0, T0 + 60)  # late: the incident is open
    assert counters(job.at(200)) == (1, 140.0, T0 + 60)  # down: the same incident
    job.ping()  # T0 + 200
    assert counters(job.at(210)) == (1, 140.0, None)
    assert (job.facts.incidents, job.facts.downtime) == (1, 140.0)


def test_a_failure_opens_an_incident_at_its_ping_and_a_success_closes_it(
    clock: FakeClock,
) -> None:
    job = Job(every(3600, 60), clock)
    job.ping()
    job.at(100)
    job.ping(Signal.FAIL)
    assert job.facts.incident_start == T0 + 100
    job.at(130)
    job.ping(Signal.FAIL)  # still the same incident
    assert counters(job.at(150)) == (1, 50.0, T0 + 100)
    job.ping()
    assert counters(job.at(400)) == (1, 50.0, None)


def test_flapping_counts_each_failure_run_once(clock: FakeClock) -> None:
    job = Job(every(3600, 60), clock)
    offset = 0.0
    for signal in (Signal.SUCCESS, Signal.FAIL, Signal.SUCCESS, Signal.FAIL, Signal.FAIL) * 2:
        job.at(offset)
        job.ping(signal)
        offset += 10
    job.at(offset)
    job.ping()
    # Failure runs: [10, 20), [30, 50), [60, 70), [80, 100).
    assert counters(job.at(offset + 5)) == (4, 10.0 + 20.0 + 10.0 + 20.0, None)


def test_a_late_job_that_starts_stays_in_its_incident_until_it_succeeds(clock: FakeClock) -> None:
    job = Job(every(60, 30, max_runtime=600), clock)
    job.ping()
    job.at(80)
    job.ping(Signal.START)  # late since T0 + 60; running now, still in the incident
    assert job.facts.incident_start == T0 + 60
    assert counters(job.at(100)) == (1, 40.0, T0 + 60)
    job.ping()
    assert counters(job.at(101)) == (1, 40.0, None)


def test_a_run_that_overruns_its_window_opens_an_incident_when_the_window_ends(
    clock: FakeClock,
) -> None:
    job = Job(every(3600, 60, max_runtime=120), clock)
    job.ping()
    job.at(10)
    job.ping(Signal.START)
    assert counters(job.at(130)) == (0, 0.0, None)
    assert counters(job.at(150)) == (1, 20.0, T0 + 130)


def test_a_heartbeat_that_never_pinged_has_no_incident(clock: FakeClock) -> None:
    job = Job(every(60, 30), clock)
    assert counters(job.at(10_000)) == (0, 0.0, None)


def test_facts_written_before_incidents_read_as_none_closed() -> None:
    old = Facts().to_json()
    for key in ("incidents", "downtime", "incident_start"):
        del old[key]
    facts = Facts.from_json(old)
    assert (facts.incidents, facts.downtime, facts.incident_start) == (0, 0.0, None)
    assert Facts.from_json(Facts(incidents=3, downtime=9.5, incident_start=7.0).to_json()) == (
        Facts(incidents=3, downtime=9.5, incident_start=7.0)
    )


async def test_an_open_incident_survives_a_reload_and_a_restart(
    make_heartbeats: MakeHeartbeats, clock: FakeClock, place: Place
) -> None:
    spec = every(3600, 60, "billing")
    heartbeats = await make_heartbeats([spec])
    await heartbeats.record(spec, Ping("billing", Signal.SUCCESS, T0))
    await heartbeats.record(spec, Ping("billing", Signal.FAIL, T0 + 100))
    heartbeats.configure([every(3600, 120, "billing")])  # a reload with another grace
    clock.now = T0 + 160
    assert counters(heartbeats.views()[0]) == (1, 60.0, T0 + 100)
    await heartbeats.close()
    restarted = await make_heartbeats([spec])  # the same store, opened again
    assert counters(restarted.views()[0]) == (1, 60.0, T0 + 100)
    await restarted.record(spec, Ping("billing", Signal.SUCCESS, T0 + 300))
    clock.now = T0 + 400
    assert counters(restarted.views()[0]) == (1, 200.0, None)
