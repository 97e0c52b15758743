"""The store contract, against SQLite and PostgreSQL alike: committed pings survive a reopen, facts
are published only when committed, concurrent pings are committed together, the ping ring keeps
the latest pings, and a ping that cannot be applied fails alone."""

from __future__ import annotations

import asyncio

import pytest

from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Ping, Signal, Status, TooManyInstances, derive
from exporter.heartbeats.store import KEEP_PINGS, Store, StoreError
from tests.heartbeats.conftest import T0, Place, every

JOB = every(60, 30, "a")
POOL = every(60, 30, "b", instances=2)


def ping(name: str, signal: Signal = Signal.SUCCESS, at: float = T0, **kwargs: object) -> Ping:
    return Ping(name, signal, at, **kwargs)  # type: ignore[arg-type]


def spec_of(name: str) -> Heartbeat:
    return POOL if name == "b" else every(60, 30, name)


async def record(store: Store, p: Ping) -> object:
    return await store.record(p, spec_of(p.heartbeat))


async def test_recorded_pings_are_in_the_facts_after_a_reopen(place: Place) -> None:
    store = await place.open()
    await record(store, ping("a", Signal.START, rid="r1"))
    facts = await record(store, ping("a", Signal.FAIL, T0 + 7, rid="r1", exit_code=3))
    await record(store, ping("b", instance="w1"))
    assert store.facts["a"] == facts
    await store.close()

    reopened = await place.open()
    try:
        assert reopened.facts["a"] == facts
        assert reopened.facts["a"].last_duration == 7
        assert reopened.facts["a"].last_exit_code == 3
        book = reopened.instances("b")
        assert book is not None
        assert list(book) == ["w1"]
    finally:
        await reopened.close()


async def test_the_facts_are_published_only_when_committed(store: Store) -> None:
    pending = asyncio.ensure_future(record(store, ping("a")))
    assert "a" not in store.facts
    await pending
    assert store.facts["a"].seq == 1


async def test_concurrent_pings_are_all_committed_in_order(store: Store) -> None:
    results = await asyncio.gather(*(store.record(ping(f"hb{n % 10}"), JOB) for n in range(2000)))
    assert sorted(f.seq for f in results) == sorted(list(range(1, 201)) * 10)
    assert {name: f.seq for name, f in store.facts.items()} == {f"hb{n}": 200 for n in range(10)}
    kept = await store.recent("hb3")
    assert [p.seq for p in kept] == list(range(200, 200 - KEEP_PINGS, -1))


async def test_the_ping_log_keeps_the_latest_pings_with_their_bodies(store: Store) -> None:
    for n in range(KEEP_PINGS + 5):
        await record(store, ping("a", at=T0 + n, body=f"line {n}".encode()))
    recent = await store.recent("a")
    assert len(recent) == KEEP_PINGS
    assert recent[0].seq == KEEP_PINGS + 5
    assert recent[0].body == f"line {KEEP_PINGS + 4}".encode()
    assert recent[-1].body == b"line 5"
    assert [p.seq for p in await store.recent("a", 3)] == [105, 104, 103]


async def test_latest_failures_gives_each_heartbeat_its_newest_fail_after_a_seq(
    store: Store,
) -> None:
    for n in range(KEEP_PINGS):  # the ring wraps: seq 101 is in the slot seq 1 had
        await record(store, ping("a", at=T0 + n))
    await record(store, ping("a", Signal.FAIL, T0 + 100, exit_code=2, body=b"boom"))
    await record(store, ping("a", Signal.START, T0 + 101))
    await record(store, ping("c", Signal.FAIL))
    for n in range(20):
        await record(store, ping("c", at=T0 + n))
    await record(store, ping("d", Signal.FAIL, body=b"first"))
    await record(store, ping("d", Signal.FAIL, T0 + 1, body=b"second"))
    after = {"a": 102 - 10, "c": 21 - 10, "e": 0, "d": 0}
    failures = await store.latest_failures(after)
    assert set(failures) == {"a", "d"}
    assert (failures["a"].seq, failures["a"].exit_code, failures["a"].body) == (101, 2, b"boom")
    assert (failures["d"].seq, failures["d"].body) == (2, b"second")
    assert await store.latest_failures({}) == {}


async def test_a_run_finished_too_fast_is_recorded_as_a_failure(store: Store) -> None:
    spec = every(60, 30, "a", min_runtime=10)
    await store.record(ping("a", Signal.START, rid="r"), spec)
    facts = await store.record(ping("a", Signal.SUCCESS, T0 + 2, rid="r", exit_code=0), spec)
    assert derive(spec, facts, None, T0 + 3).status is Status.FAILED
    assert (await store.recent("a", 1))[0].signal is Signal.FAIL
    assert facts.durations[:2] == (0, 1)  # 2 s: in the bucket up to 5 s


async def test_a_new_instance_name_is_refused_while_all_remembered_ones_are_alive(
    store: Store,
) -> None:
    for n in range(8):  # instances: 2 remembers 4 x 2 names
        await store.record(ping("b", instance=f"w{n}"), POOL)
    with pytest.raises(TooManyInstances, match="already tracks 8 instances"):
        await store.record(ping("b", at=T0 + 1, instance="intruder"), POOL)
    book = store.instances("b")
    assert book is not None
    assert "intruder" not in book
    assert len(book) == 8


async def test_a_new_instance_name_replaces_the_least_recent_one_that_is_down(
    store: Store,
) -> None:
    for n in range(8):
        await store.record(ping("b", at=T0 + n, instance=f"w{n}"), POOL)
    await store.record(ping("b", at=T0 + 200, instance="w5"), POOL)
    await store.record(ping("b", at=T0 + 200, instance="fresh"), POOL)  # w0 is down by now
    book = store.instances("b")
    assert book is not None
    assert sorted(book) == sorted(["w1", "w2", "w3", "w4", "w6", "w7", "w5", "fresh"])


async def test_a_ping_that_cannot_be_applied_fails_alone(store: Store) -> None:
    broken = every(60, 30, "a", pings_per_period="many")
    results = await asyncio.gather(
        store.record(ping("a"), broken),
        store.record(ping("c"), spec_of("c")),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError)
    assert "could not be applied" in str(results[0])
    assert store.facts["c"].seq == 1
    assert store.health.errors == 1
    assert store.running
    assert (await store.record(ping("a"), JOB)).seq == 1


async def test_a_declaration_is_kept_for_heartbeats_without_facts(place: Place) -> None:
    store = await place.open()
    await store.declare({"a", "new-job"}, T0)
    await record(store, ping("a", at=T0 + 5))
    await store.declare({"a", "new-job"}, T0 + 60)  # a reload: nothing moves
    assert store.facts["new-job"].declared_at == T0
    assert store.facts["new-job"].seq == 0
    assert store.facts["a"].declared_at == T0
    assert store.facts["a"].seq == 1
    await store.close()

    reopened = await place.open()
    try:
        assert reopened.facts["new-job"].declared_at == T0
        assert reopened.facts["a"].declared_at == T0
        status, deadline = reopened.facts["new-job"].status(JOB, T0 + 100)
        assert (status, deadline) == (Status.DOWN, T0 + 90)
    finally:
        await reopened.close()


async def test_a_heartbeat_no_longer_declared_is_forgotten_only_if_it_never_pinged(
    place: Place,
) -> None:
    store = await place.open()
    await store.declare({"a", "never"}, T0)
    await record(store, ping("a", at=T0 + 5))
    await store.declare(set(), T0 + 60)
    assert "never" not in store.facts
    assert store.facts["a"].seq == 1
    await store.declare({"never"}, T0 + 120)  # declared again: its first period starts now
    assert store.facts["never"].declared_at == T0 + 120
    await store.close()

    reopened = await place.open()
    try:
        assert reopened.facts["never"].declared_at == T0 + 120
        assert reopened.facts["a"].seq == 1
    finally:
        await reopened.close()
