"""The compact ring of a target's recent probes: what it keeps, in which order, at what size."""

from __future__ import annotations

import random
import tracemalloc
from collections import deque

from exporter.probes.http import HttpObservation
from exporter.reasons import Reason
from exporter.recent import MAX_PHASES, RecentProbe, RecentProbes
from exporter.results import ProbeResult

PHASES = ("resolve", "connect", "tls", "processing", "transfer")


SOME_PHASES = tuple((phase, 0.001 * (n + 1)) for n, phase in enumerate(PHASES))


def _result(
    at: float,
    duration: float = 0.0123,
    reason: Reason | None = None,
    status: int | None = 200,
    phases: tuple[tuple[str, float], ...] = SOME_PHASES,
) -> ProbeResult:
    message = "" if reason is None else f"{reason} went wrong at {at}"
    seen = None if status is None else HttpObservation(status, "1.1", 0)
    return ProbeResult(
        "t",
        reason is None,
        duration,
        at,
        reason,
        message,
        phase_names=tuple(name for name, _ in phases),
        phase_seconds=tuple(seconds for _, seconds in phases),
        observation=seen,
    )


def _expected(result: ProbeResult) -> RecentProbe:
    return RecentProbe(
        finished_at=result.finished_at,
        success=result.success,
        duration=result.duration,
        reason=result.reason,
        message=result.message,
        status_code=result.status_code,
        phases=tuple((name, round(s, 6)) for name, s in result.phases[:MAX_PHASES]),
    )


def test_the_ring_keeps_the_latest_probes_oldest_first() -> None:
    recent = RecentProbes(3)
    assert list(recent) == []
    assert recent.latest_failure() is None
    results = [_result(1000.5 + i, duration=0.25 * i) for i in range(7)]
    for count, result in enumerate(results, start=1):
        recent.add(result)
        assert list(recent) == [_expected(r) for r in results[max(0, count - 3) : count]]
    assert len(recent) == 3


def test_phases_come_back_to_the_microsecond_and_a_missing_status_stays_missing() -> None:
    recent = RecentProbes(4)
    recent.add(_result(1_763_700_000.123456, duration=29.987654, status=None))
    recent.add(_result(1_763_700_030.5, duration=0.000321, reason=Reason.TIMEOUT, phases=()))
    first, second = recent
    assert first.finished_at == 1_763_700_000.123456
    assert first.duration == 29.987654
    assert first.status_code is None
    assert [name for name, _ in first.phases] == list(PHASES)
    assert [s for _, s in first.phases] == [0.001, 0.002, 0.003, 0.004, 0.005]
    assert (second.success, second.reason, second.duration) == (False, Reason.TIMEOUT, 0.000321)
    assert second.message == "timeout went wrong at 1763700030.5"
    assert (second.status_code, second.phases) == (200, ())


def test_phases_beyond_the_limit_are_not_kept() -> None:
    recent = RecentProbes(2)
    many = tuple((f"step{i}", 0.001) for i in range(MAX_PHASES + 2))
    recent.add(_result(1.0, phases=many))
    (probe,) = recent
    assert [name for name, _ in probe.phases] == [f"step{i}" for i in range(MAX_PHASES)]


def test_summaries_agree_with_the_kept_probes() -> None:
    rng = random.Random(7)
    recent = RecentProbes(20)
    reference: deque[ProbeResult] = deque(maxlen=20)
    for i in range(75):
        reason = rng.choice([None, None, None, Reason.STATUS, Reason.TIMEOUT])
        result = _result(float(i), duration=rng.uniform(0.001, 2.0), reason=reason)
        recent.add(result)
        reference.append(result)
        assert list(recent) == [_expected(r) for r in reference]
        assert sorted(recent.durations()) == sorted(r.duration for r in reference)
        assert recent.failures() == sum(1 for r in reference if not r.success)
        failed = [r for r in reference if not r.success]
        assert recent.latest_failure() == (_expected(failed[-1]) if failed else None)


def test_a_full_ring_takes_little_memory() -> None:
    """20 probes with five phases each cost at most 1.5 KiB per target (a deque of results
    took about seven times that)."""
    targets = 500
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rings = [RecentProbes(20) for _ in range(targets)]
        for i in range(20):
            for ring in rings:
                ring.add(_result(1000.0 + i, duration=0.001 * i))
        per_target = (tracemalloc.get_traced_memory()[0] - before) / targets
    finally:
        tracemalloc.stop()
    assert per_target <= 1536, f"{per_target:.0f} bytes per target"


def test_probes_with_more_phases_than_before_keep_the_earlier_probes_numbers() -> None:
    rng = random.Random(11)
    recent = RecentProbes(6)
    reference: deque[ProbeResult] = deque(maxlen=6)
    for i in range(30):
        count = rng.choice([0, 1, 1, 2, 4, 5, MAX_PHASES + 1])
        phases = tuple((f"p{n}", round(rng.uniform(0.0001, 0.5), 4)) for n in range(count))
        result = _result(float(i), status=rng.choice([None, 200]), phases=phases)
        recent.add(result)
        reference.append(result)
        assert list(recent) == [_expected(r) for r in reference]


def _ring_bytes(phases: int) -> float:
    """Traced bytes per full ring of 20 probes with ``phases`` phases each."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rings = [RecentProbes(20) for _ in range(200)]
        for i in range(20):
            for ring in rings:
                ring.add(_result(1000.0 + i, phases=SOME_PHASES[:phases]))
        return (tracemalloc.get_traced_memory()[0] - before) / len(rings)
    finally:
        tracemalloc.stop()


def test_a_ring_of_one_phase_probes_keeps_room_for_one_phase_only() -> None:
    """A TCP target's ring (one phase per probe) is smaller than an HTTP target's (five)."""
    _ring_bytes(1), _ring_bytes(5)  # the shared shapes of passing probes, made once
    one, five = _ring_bytes(1), _ring_bytes(5)
    # 20 probes x 4 phases x 4 bytes fewer, less the allocator's rounding.
    assert five - one >= 300, (one, five)
