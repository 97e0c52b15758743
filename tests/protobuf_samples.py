"""Reading a protobuf exposition back in tests, with the protobuf library: the delimited
``MetricFamily`` messages, the samples a Prometheus that keeps classic histograms ingests from
them, and the counts of a native histogram's buckets.

``text_samples`` reads a text exposition (through prometheus_client's parser) into the same
form, so the two formats compare sample for sample.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable

from google.protobuf import proto
from prometheus_client.parser import text_string_to_metric_families

from exporter.protobuf.metrics_pb2 import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    UNTYPED,
    BucketSpan,
    MetricFamily,
    MetricType,
)
from exporter.protobuf.metrics_pb2 import Histogram as HistogramMessage

# What Prometheus 2.42 sends with --enable-feature=native-histograms.
PROMETHEUS_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# (sample name, labels sorted by name with le as a number, value)
Sample = tuple[str, tuple[tuple[str, str | float], ...], float]
TYPE_NAMES: dict[MetricType, str] = {
    COUNTER: "counter",
    GAUGE: "gauge",
    HISTOGRAM: "histogram",
    UNTYPED: "untyped",
}


def read_families(body: bytes) -> list[MetricFamily]:
    """Every delimited message of ``body``; fails unless it ends exactly after the last one."""
    stream = io.BytesIO(body)
    families = []
    while stream.tell() < len(body):
        families.append(proto.parse_length_prefixed(MetricFamily, stream))
    assert stream.tell() == len(body)
    return families


def _labels(pairs: dict[str, str]) -> tuple[tuple[str, str | float], ...]:
    return tuple(
        sorted((name, float(value) if name == "le" else value) for name, value in pairs.items())
    )


def classic_samples(families: list[MetricFamily]) -> set[Sample]:
    """The samples of ``families`` as Prometheus' protobuf parser makes them when it keeps
    classic histograms: ``_bucket`` (with the +Inf bucket from the count), ``_sum``, ``_count``."""
    samples: set[Sample] = set()
    for family in families:
        name = family.name
        for metric in family.metric:
            labels = {label.name: label.value for label in metric.label}
            assert len(labels) == len(metric.label), f"{name}: a label name twice"
            if family.type == HISTOGRAM:
                histogram = metric.histogram
                for bucket in histogram.bucket:
                    le = {**labels, "le": repr(bucket.upper_bound)}
                    samples.add((f"{name}_bucket", _labels(le), bucket.cumulative_count))
                infinite = {**labels, "le": "+Inf"}
                samples.add((f"{name}_bucket", _labels(infinite), histogram.sample_count))
                samples.add((f"{name}_sum", _labels(labels), histogram.sample_sum))
                samples.add((f"{name}_count", _labels(labels), histogram.sample_count))
            else:
                value = {
                    COUNTER: metric.counter.value,
                    GAUGE: metric.gauge.value,
                    UNTYPED: metric.untyped.value,
                }[family.type]
                samples.add((name, _labels(labels), value))
    return samples


def text_samples(text: str) -> set[Sample]:
    samples: set[Sample] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert not math.isnan(sample.value), f"{sample.name}: NaN cannot be compared"
            samples.add((sample.name, _labels(sample.labels), sample.value))
    return samples


def text_metadata(text: str) -> dict[str, tuple[str, str]]:
    """``{family: (type, help)}`` from the ``# TYPE`` and ``# HELP`` lines, help unescaped."""
    helps, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], help_text)
        elif line.startswith("# TYPE "):
            name, _, type_name = line[7:].partition(" ")
            types[name] = type_name
    return {name: (types[name], helps[name]) for name in types}


def native_buckets(spans: Iterable[BucketSpan], deltas: Iterable[int]) -> dict[int, int]:
    """``{bucket index: count}`` of one side of a native histogram, decoded from its spans
    (the first offset is an index, later ones gaps after the previous span) and deltas (each
    count minus the previous bucket's)."""
    counts: dict[int, int] = {}
    index = 0
    count = 0
    delta = iter(deltas)
    for span in spans:
        index += span.offset
        for _ in range(span.length):
            count += next(delta)
            assert count >= 0, "a bucket count below zero"
            if count:
                counts[index] = count
            index += 1
    assert next(delta, None) is None, "more deltas than buckets in the spans"
    return counts


def positive_buckets(histogram: HistogramMessage) -> dict[int, int]:
    return native_buckets(histogram.positive_span, histogram.positive_delta)


def negative_buckets(histogram: HistogramMessage) -> dict[int, int]:
    return native_buckets(histogram.negative_span, histogram.negative_delta)
