"""The heartbeat metric families as Prometheus parses them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.heartbeats import HeartbeatCollector
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.state import Ping, Signal
from tests.heartbeats.conftest import T0, FakeClock, MakeHeartbeats, every

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(heartbeats: Heartbeats) -> Samples:
    text = "".join(HeartbeatCollector(heartbeats.views).expose())
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_a_pinged_heartbeat_has_every_family(
    make_heartbeats: MakeHeartbeats, clock: FakeClock
) -> None:
    spec = every(60, 30, "billing", max_runtime=120, labels=(("team", "ops"),))
    heartbeats = await make_heartbeats([spec])
    await heartbeats.record(spec, Ping("billing", Signal.START, T0, rid="r"))
    await heartbeats.record(spec, Ping("billing", Signal.SUCCESS, T0 + 9, rid="r", exit_code=0))
    clock.now = T0 + 70
    samples = scrape(heartbeats)
    labels = {"heartbeat": "billing", "team": "ops"}
    assert samples[key("lookout_heartbeats")] == 1
    assert samples[key("lookout_heartbeat_last_success_timestamp_seconds", **labels)] == T0 + 9
    assert samples[key("lookout_heartbeat_age_seconds", **labels)] == 61
    assert samples[key("lookout_heartbeat_deadline_timestamp_seconds", **labels)] == T0 + 99
    assert samples[key("lookout_heartbeat_status", **labels, status="late")] == 1
    assert samples[key("lookout_heartbeat_status", **labels, status="up")] == 0
    assert samples[key("lookout_heartbeat_pings_total", **labels, signal="start")] == 1
    assert samples[key("lookout_heartbeat_pings_total", **labels, signal="success")] == 1
    assert samples[key("lookout_heartbeat_pings_total", **labels, signal="fail")] == 0
    assert samples[key("lookout_heartbeat_last_start_timestamp_seconds", **labels)] == T0
    assert samples[key("lookout_heartbeat_last_duration_seconds", **labels)] == 9
    assert samples[key("lookout_heartbeat_last_exit_code", **labels)] == 0
    assert samples[key("lookout_heartbeat_last_run_success", **labels)] == 1
    assert samples[key("lookout_heartbeat_max_runtime_seconds", **labels)] == 120
    assert sum(1 for (name, _) in samples if name == "lookout_heartbeat_status") == 6
    # Late since T0 + 69 (one period after the success): an incident open for a second.
    assert samples[key("lookout_heartbeat_incidents_total", **labels)] == 1
    assert samples[key("lookout_heartbeat_incident_open", **labels)] == 1
    assert samples[key("lookout_heartbeat_incident_start_timestamp_seconds", **labels)] == T0 + 69
    assert samples[key("lookout_heartbeat_downtime_seconds_total", **labels)] == 1


async def test_a_new_heartbeat_has_only_its_status_counters_and_config(
    make_heartbeats: MakeHeartbeats, clock: FakeClock
) -> None:
    heartbeats = await make_heartbeats([every(60, 30, "pool", instances=3)])
    names = {name for name, _ in scrape(heartbeats)}
    assert names == {
        "lookout_heartbeats",
        "lookout_heartbeat_status",
        "lookout_heartbeat_pings_total",
        "lookout_heartbeat_instances_alive",
        "lookout_heartbeat_instances_expected",
        "lookout_heartbeat_incidents_total",
        "lookout_heartbeat_downtime_seconds_total",
        "lookout_heartbeat_incident_open",
    }
    samples = scrape(heartbeats)
    assert samples[key("lookout_heartbeat_incidents_total", heartbeat="pool")] == 0
    assert samples[key("lookout_heartbeat_incident_open", heartbeat="pool")] == 0
    assert samples[key("lookout_heartbeat_status", heartbeat="pool", status="new")] == 1
    assert samples[key("lookout_heartbeat_instances_alive", heartbeat="pool")] == 0
    assert samples[key("lookout_heartbeat_instances_expected", heartbeat="pool")] == 3


async def test_a_heartbeat_removed_from_the_config_has_no_series(
    make_heartbeats: MakeHeartbeats, clock: FakeClock
) -> None:
    kept, removed = every(60, 30, "kept"), every(60, 30, "removed")
    heartbeats = await make_heartbeats([kept, removed])
    await heartbeats.record(removed, Ping("removed", Signal.SUCCESS, T0))
    heartbeats.configure([kept])
    samples = scrape(heartbeats)
    assert samples[key("lookout_heartbeats")] == 1
    assert not any(dict(labels).get("heartbeat") == "removed" for _, labels in samples)
    heartbeats.configure([kept, removed])
    assert (
        scrape(heartbeats)[
            key("lookout_heartbeat_pings_total", heartbeat="removed", signal="success")
        ]
        == 1
    )


async def test_the_last_run_failure_stays_exported_while_the_next_run_is_open(
    make_heartbeats: MakeHeartbeats, clock: FakeClock
) -> None:
    """A start after a failed run leaves lookout_heartbeat_last_run_success at 0."""
    spec = every(60, 30, "cron")
    heartbeats = await make_heartbeats([spec])
    await heartbeats.record(spec, Ping("cron", Signal.START, T0))
    await heartbeats.record(spec, Ping("cron", Signal.FAIL, T0 + 5, exit_code=3))
    await heartbeats.record(spec, Ping("cron", Signal.START, T0 + 60))
    clock.now = T0 + 61
    samples = scrape(heartbeats)
    assert samples[key("lookout_heartbeat_last_run_success", heartbeat="cron")] == 0
    assert samples[key("lookout_heartbeat_status", heartbeat="cron", status="running")] == 1
    await heartbeats.record(spec, Ping("cron", Signal.SUCCESS, T0 + 65, exit_code=0))
    clock.now = T0 + 66
    assert scrape(heartbeats)[key("lookout_heartbeat_last_run_success", heartbeat="cron")] == 1


async def test_each_instance_of_a_worker_pool_has_its_last_ping_and_whether_it_is_alive(
    make_heartbeats: MakeHeartbeats, clock: FakeClock
) -> None:
    """The instance that stopped is named, so the alert can say which one."""
    spec = every(60, 30, "pool", instances=3)
    heartbeats = await make_heartbeats([spec])
    for name, at in (("w1", T0), ("w2", T0 + 50), ("w3", T0 + 60)):
        await heartbeats.record(spec, Ping("pool", Signal.SUCCESS, at, instance=name))
    clock.now = T0 + 100
    samples = scrape(heartbeats)
    up = "lookout_heartbeat_instance_up"
    seen = "lookout_heartbeat_instance_last_seen_timestamp_seconds"
    assert samples[key(up, heartbeat="pool", instance_name="w1")] == 0
    assert samples[key(up, heartbeat="pool", instance_name="w2")] == 1
    assert samples[key(up, heartbeat="pool", instance_name="w3")] == 1
    assert samples[key(seen, heartbeat="pool", instance_name="w1")] == T0
    assert samples[key(seen, heartbeat="pool", instance_name="w3")] == T0 + 60
    assert samples[key("lookout_heartbeat_instances_alive", heartbeat="pool")] == 2
