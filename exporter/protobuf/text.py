"""The protobuf exposition of a collector that writes only text (host, heartbeats).

Such a collector renders its families with ``exporter.exposition`` and has no protobuf writer
of its own; its text is read back here, family by family, into the same ``MetricFamily``
messages, so both formats carry exactly the same samples without a second renderer to keep
in step. A collector with native histograms, or with so many series that the conversion would
cost more than writing protobuf (the probe collector), implements ``expose_protobuf`` instead.

Only the text ``exporter.exposition`` writes is understood: ``# HELP`` and ``# TYPE`` before
each family's samples, gauges, counters and classic histograms, no timestamps. Anything else
raises ``ValueError`` naming the line: a collector writing it is a bug to see, not to hide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from exporter.protobuf.exposition import TYPES, parse_label_pairs, unescape, varint
from exporter.protobuf.metrics_pb2 import HISTOGRAM, LabelPair, Metric, MetricFamily

__all__ = ["families"]

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_SUFFIXES = ("_bucket", "_sum", "_count")


class _Family:
    """One family being read: its message, and for a histogram its metrics by label set."""

    def __init__(self, name: str, help_text: str) -> None:
        self.message = MetricFamily(name=name, help=help_text)
        self.histograms: dict[tuple[tuple[str, str], ...], Metric] = {}

    def typed(self, type_name: str, line: str) -> None:
        if type_name not in TYPES:
            raise ValueError(f"unsupported family type in {line!r}")
        self.message.type = TYPES[type_name]

    def add(self, name: str, labels: str, value: str, line: str) -> None:
        family = self.message.name
        if not self.message.HasField("type"):
            raise ValueError(f"sample before the # TYPE of {family}: {line!r}")
        pairs = parse_label_pairs(labels) if labels else []
        number = float(value)
        if self.message.type != HISTOGRAM:
            if name != family:
                raise ValueError(f"sample of another family than {family}: {line!r}")
            metric = self.message.metric.add()
            metric.label.extend(LabelPair(name=n, value=v) for n, v in pairs)
            if self.message.type == TYPES["counter"]:
                metric.counter.value = number
            else:
                metric.gauge.value = number
            return
        suffix = name.removeprefix(family)
        if suffix not in _SUFFIXES:
            raise ValueError(f"sample of another family than {family}: {line!r}")
        bound = None
        if suffix == "_bucket":
            bound = dict(pairs).get("le")
            if bound is None:
                raise ValueError(f"histogram bucket without le: {line!r}")
            pairs = [pair for pair in pairs if pair[0] != "le"]
        key = tuple(pairs)
        found = self.histograms.get(key)
        if found is None:
            found = self.histograms[key] = self.message.metric.add()
            found.label.extend(LabelPair(name=n, value=v) for n, v in pairs)
        histogram = found.histogram
        if suffix == "_sum":
            histogram.sample_sum = number
        elif suffix == "_count":
            histogram.sample_count = int(number)
        elif bound is not None and bound != "+Inf":  # the +Inf bucket is implied by the count
            histogram.bucket.add(upper_bound=float(bound), cumulative_count=int(number))

    def delimited(self) -> bytes:
        body = self.message.SerializeToString()
        return varint(len(body)) + body


def families(chunks: Iterable[str]) -> Iterator[bytes]:
    """The delimited messages of the families in the text ``chunks``, each as soon as it is
    complete; an empty chunk passes through as ``b""`` (the slice protocol)."""
    current: _Family | None = None
    rest = ""
    for chunk in chunks:
        if not chunk:
            yield b""
            continue
        *lines, rest = (rest + chunk).split("\n")
        for line in lines:
            if line.startswith("# HELP "):
                name, _, help_text = line[7:].partition(" ")
                if current is not None and current.message.metric:
                    yield current.delimited()
                current = _Family(name, unescape(help_text))
            elif line.startswith("# TYPE "):
                name, _, type_name = line[7:].partition(" ")
                if current is None or current.message.name != name:
                    raise ValueError(f"# TYPE without its # HELP: {line!r}")
                current.typed(type_name, line)
            elif line:
                found = _SAMPLE.fullmatch(line)
                if found is None or current is None:
                    raise ValueError(f"not a sample line of a family: {line!r}")
                current.add(found.group(1), found.group(2) or "", found.group(3), line)
    if rest:
        raise ValueError(f"exposition text ends inside a line: {rest!r}")
    if current is not None and current.message.metric:
        yield current.delimited()
