"""Native buckets of ``exporter.histogram.Histogram`` and their protobuf encoding: every
observation lands in the bucket of schema 3 whose bounds hold it, and the spans and deltas
written decode back to exactly those counts."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.histogram import NATIVE_ZERO_THRESHOLD, Histogram, native_index
from exporter.protobuf import exposition as protobuf
from exporter.protobuf.metrics_pb2 import MetricFamily
from exporter.stats import DURATION_BUCKETS
from tests.protobuf_samples import negative_buckets, positive_buckets

# Magnitudes a duration or lag can have, from a nanosecond to a day.
MAGNITUDES = st.floats(min_value=1e-9, max_value=86_400.0, allow_nan=False)


def expected_index(magnitude: float) -> int:
    """The bucket of schema 3 holding ``magnitude``: (2^((i-1)/8), 2^(i/8)], found from the
    bounds themselves rather than the way the histogram finds it."""
    index = math.ceil(math.log2(magnitude) * 8)
    while magnitude > 2.0 ** (index / 8):
        index += 1
    while magnitude <= 2.0 ** ((index - 1) / 8):
        index -= 1
    return index


def encoded(histogram: Histogram) -> MetricFamily:
    entries = MetricFamily()
    protobuf.add_histogram(entries, protobuf.labelled([("target", "t")]), histogram)
    return MetricFamily.FromString(entries.SerializeToString())


@pytest.mark.parametrize(
    ("value", "index"),
    [
        pytest.param(1.0, 0, id="one ends bucket 0"),
        pytest.param(2.0, 8, id="two ends bucket 8"),
        pytest.param(0.5, -8, id="a half ends bucket -8"),
        pytest.param(1.0000001, 1, id="just above one"),
        pytest.param(0.001, -79, id="a millisecond"),
        pytest.param(2.0**-10, -80, id="2^-10 s ends bucket -80"),
        pytest.param(30.0, 40, id="thirty seconds"),
    ],
)
def test_a_value_lands_in_the_bucket_whose_bounds_hold_it(value: float, index: int) -> None:
    assert native_index(value) == index
    assert 2.0 ** ((index - 1) / 8) < value <= 2.0 ** (index / 8)


@given(MAGNITUDES)
def test_every_magnitude_lands_in_the_bucket_of_schema_3_that_holds_it(magnitude: float) -> None:
    assert native_index(magnitude) == expected_index(magnitude)


@given(st.lists(MAGNITUDES | st.just(0.0) | MAGNITUDES.map(lambda m: -m), max_size=60))
def test_the_encoded_buckets_hold_every_observation(values: list[float]) -> None:
    histogram = Histogram(DURATION_BUCKETS, native=True)
    for value in values:
        histogram.observe(value)
    message = encoded(histogram).metric[0].histogram
    assert message.sample_count == len(values)
    assert message.sample_sum == pytest.approx(math.fsum(values), abs=1e-6)
    assert message.schema == 3
    assert message.zero_threshold == NATIVE_ZERO_THRESHOLD
    assert message.zero_count == sum(1 for v in values if v == 0)
    assert positive_buckets(message) == Counter(expected_index(v) for v in values if v > 0)
    assert negative_buckets(message) == Counter(expected_index(-v) for v in values if v < 0)
    classic = [bucket.cumulative_count for bucket in message.bucket]
    assert classic == [sum(1 for v in values if v <= bound) for bound in DURATION_BUCKETS]
    assert [bucket.upper_bound for bucket in message.bucket] == list(DURATION_BUCKETS)


def test_far_apart_buckets_go_in_separate_spans_and_near_ones_share_a_span() -> None:
    histogram = Histogram(DURATION_BUCKETS, native=True)
    for value in (1.0, 2.0**0.25, 2.0**0.375, 8.0):  # buckets 0, 2, 3 and 24
        histogram.observe(value)
    message = encoded(histogram).metric[0].histogram
    spans = [(span.offset, span.length) for span in message.positive_span]
    assert spans == [(0, 4), (20, 1)]  # bucket 1 empty inside the span, 4..23 left out
    assert list(message.positive_delta) == [1, -1, 1, 0, 0]
    assert positive_buckets(message) == {0: 1, 2: 1, 3: 1, 24: 1}


def test_a_histogram_without_observations_is_still_native() -> None:
    message = encoded(Histogram(DURATION_BUCKETS, native=True)).metric[0].histogram
    assert message.schema == 3
    assert [(span.offset, span.length) for span in message.positive_span] == [(0, 0)]
    assert list(message.positive_delta) == []


def test_a_classic_histogram_carries_no_native_part() -> None:
    histogram = Histogram(DURATION_BUCKETS)
    histogram.observe(0.2)
    message = encoded(histogram).metric[0].histogram
    assert not message.HasField("schema")
    assert not message.positive_span
    assert message.sample_count == 1


def test_values_that_are_not_finite_count_but_fill_no_native_bucket() -> None:
    histogram = Histogram(DURATION_BUCKETS, native=True)
    for value in (math.inf, math.nan, 0.25):
        histogram.observe(value)
    message = encoded(histogram).metric[0].histogram
    assert message.sample_count == 3
    assert positive_buckets(message) == {-16: 1}
