"""Building the protobuf exposition's messages, as ``exporter.exposition`` writes the text.

On the wire a family is one delimited message: its length as a varint, then the serialized
``MetricFamily``. Its ``metric`` field repeats, and serialized entries of a repeated field
concatenate into a valid message, so a collector builds, per family, a ``MetricFamily`` that
holds only ``metric`` entries (``add_sample``, ``add_histogram``), keeps its serialized bytes,
and ``frame`` puts the family's length, name, help and type in front of the concatenated
entries. The probe collector caches those entries per target, so a scrape of 10,000 targets
mostly concatenates bytes, as the text scrape mostly concatenates text.

Every message is built by the protobuf library from the generated ``metrics_pb2``; only the
varint length in front of each message (the "delimited" framing, not part of any message) is
written here.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections.abc import Iterable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from exporter.families import Family, FamilyType
from exporter.histogram import NATIVE_SCHEMA, NATIVE_ZERO_THRESHOLD, BucketRun, Histogram
from exporter.protobuf.metrics_pb2 import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    Bucket,
    BucketSpan,
    LabelPair,
    Metric,
    MetricFamily,
    MetricType,
)
from exporter.protobuf.metrics_pb2 import Histogram as HistogramMessage

__all__ = [
    "MAX_GAP",
    "TYPES",
    "add_histogram",
    "add_sample",
    "delimited",
    "frame",
    "label_list",
    "labelled",
    "parse_label_pairs",
    "unescape",
    "varint",
]

# Empty native buckets written as zero deltas inside a span rather than starting a new span:
# up to two cost fewer bytes than another span (Prometheus' Go client does the same).
MAX_GAP = 2

TYPES: dict[FamilyType, MetricType] = {"gauge": GAUGE, "counter": COUNTER, "histogram": HISTOGRAM}

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_ESCAPE = re.compile(r"\\(.)")


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint: seven bits a byte, lowest first."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _header(family: Family) -> bytes:
    return MetricFamily(
        name=family.name, help=family.help, type=TYPES[family.type]
    ).SerializeToString()


def frame(family: Family, size: int) -> bytes:
    """The start of ``family``'s delimited message whose ``metric`` entries take ``size``
    bytes: the message's length, then its name, help and type."""
    header = _header(family)
    return varint(len(header) + size) + header


def delimited(family: Family, entries: bytes) -> bytes:
    """``family``'s whole delimited message around its serialized ``metric`` entries."""
    return frame(family, len(entries)) + entries


def unescape(text: str) -> str:
    """Undo the text format's escapes (``\\\\``, ``\\n``, and in label values ``\\"``)."""
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse_label_pairs(text: str) -> list[tuple[str, str]]:
    """The pairs of a label-pairs text (``a="1",b="2"``, as ``exposition.label_pairs`` writes
    it), values unescaped."""
    pairs = []
    position = 0
    while position < len(text):
        found = _LABEL.match(text, position)
        if found is None:
            raise ValueError(f"not a label pair at {text[position:]!r}")
        pairs.append((found.group(1), unescape(found.group(2))))
        position = found.end()
    return pairs


@functools.lru_cache(maxsize=4096)
def label_list(text: str) -> tuple[LabelPair, ...]:
    """``parse_label_pairs(text)`` as messages, kept for the texts that recur in every target
    (``reason="timeout"``, ``phase="connect"``); ``extend`` copies them into a metric."""
    return tuple(LabelPair(name=name, value=value) for name, value in parse_label_pairs(text))


def labelled(pairs: Iterable[tuple[str, str]]) -> Metric:
    """A metric holding only the labels ``pairs``: what every sample of one label set starts
    from (merging a made message is several times faster than adding its labels anew)."""
    metric = Metric()
    for name, value in pairs:
        label = metric.label.add()  # setting fields costs less than keyword arguments
        label.name = name
        label.value = value
    return metric


def add_sample(
    entries: MetricFamily, family: Family, base: Metric, extra: str, value: float
) -> None:
    """Add a sample of the gauge or counter ``family``: ``base``'s labels, then those of the
    label-pairs text ``extra`` (may be empty)."""
    metric = entries.metric.add()
    metric.MergeFrom(base)
    if extra:
        metric.label.extend(label_list(extra))
    if family.type == "counter":
        metric.counter.value = value
    elif family.type == "gauge":
        metric.gauge.value = value
    else:
        raise ValueError(f"{family.name} is a {family.type}, not a gauge or counter")


@functools.cache
def _classic_buckets(bounds: tuple[float, ...]) -> HistogramMessage:
    """A histogram message holding only the classic buckets' upper bounds, to merge from."""
    return HistogramMessage(bucket=[Bucket(upper_bound=bound) for bound in bounds])


def add_histogram(entries: MetricFamily, base: Metric, histogram: Histogram) -> None:
    """Add ``histogram`` with ``base``'s labels: its count, sum and classic buckets (the +Inf
    bucket is implied by the count), and its native buckets if it keeps them."""
    metric = entries.metric.add()
    metric.MergeFrom(base)
    message = metric.histogram
    message.sample_count = histogram.total
    message.sample_sum = histogram.sum
    message.MergeFrom(_classic_buckets(histogram.bounds))
    running = 0
    for bucket, count in zip(message.bucket, histogram.counts, strict=True):
        running += count
        bucket.cumulative_count = running
    if histogram.positive is None:
        return
    message.schema = NATIVE_SCHEMA
    message.zero_threshold = NATIVE_ZERO_THRESHOLD
    message.zero_count = histogram.zero
    if histogram.negative is not None:
        message.negative_delta.extend(_add_spans(message.negative_span, histogram.negative))
    message.positive_delta.extend(_add_spans(message.positive_span, histogram.positive))
    if not message.positive_span and not message.negative_span:
        message.positive_span.add()  # offset 0, length 0: native even without a bucket


def _add_spans(spans: RepeatedCompositeFieldContainer[BucketSpan], run: BucketRun) -> list[int]:
    """Write ``run``'s buckets as spans into the repeated field ``spans``; return their deltas.

    A span is a stretch of buckets, empty ones allowed inside when no more than ``MAX_GAP``
    follow each other; each delta is a bucket's count minus the count of the bucket written
    before it, across spans.
    """
    counts = run.counts
    if not counts:
        return []
    if 0 in counts:
        filled = [position for position, count in enumerate(counts) if count]
        stretches = []
        start = previous = filled[0]
        for position in filled[1:]:
            if position - previous > MAX_GAP + 1:
                stretches.append((start, previous + 1))
                start = position
            previous = position
        stretches.append((start, previous + 1))
    else:  # the usual case: every bucket from the lowest to the highest value filled
        stretches = [(0, len(counts))]
    deltas: list[int] = []
    written = 0
    end = 0
    for number, (start, stop) in enumerate(stretches):
        span = spans.add()
        span.offset = run.first + start if number == 0 else start - end
        span.length = stop - start
        stretch = counts[start:stop]
        deltas.extend(map(operator.sub, stretch, itertools.chain((written,), stretch)))
        written = stretch[-1]
        end = stop
    return deltas
