"""The protobuf exposition of prometheus_client's registry (the process, platform and GC
collectors), converted from the metric objects its ``collect()`` returns.

The families and samples are those prometheus_client's own ``generate_latest`` writes as text:
a counter ``x`` is the family ``x_total`` (its ``x_created`` samples, if any, a gauge family of
their own), an info metric ``x`` the gauge family ``x_info``, a state set a gauge. Those
collectors export nothing else; a histogram or summary in the registry raises ``ValueError``,
so a new kind of family there fails a test rather than vanishing from the protobuf scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.protobuf.exposition import varint
from exporter.protobuf.metrics_pb2 import (
    COUNTER,
    GAUGE,
    UNTYPED,
    LabelPair,
    MetricFamily,
    MetricType,
)

__all__ = ["families"]

# prometheus_client's type -> (suffix of the family's name, protobuf type)
_FORMS: dict[str, tuple[str, MetricType]] = {
    "counter": ("_total", COUNTER),
    "gauge": ("", GAUGE),
    "info": ("_info", GAUGE),
    "stateset": ("", GAUGE),
    "unknown": ("", UNTYPED),
}


def _message(name: str, help_text: str, type_: MetricType, samples: list[Sample]) -> bytes:
    message = MetricFamily(name=name, help=help_text, type=type_)
    for sample in samples:
        metric = message.metric.add()
        metric.label.extend(
            LabelPair(name=label, value=value) for label, value in sample.labels.items()
        )
        if type_ == COUNTER:
            metric.counter.value = sample.value
        elif type_ == GAUGE:
            metric.gauge.value = sample.value
        else:
            metric.untyped.value = sample.value
        if sample.timestamp is not None:
            metric.timestamp_ms = int(float(sample.timestamp) * 1000)
    body = message.SerializeToString()
    return varint(len(body)) + body


def families(registry: Collector) -> Iterator[bytes]:
    """Delimited ``MetricFamily`` messages of everything ``registry`` collects now."""
    for metric in registry.collect():
        if metric.type not in _FORMS:
            raise ValueError(f"{metric.name}: no protobuf form for a {metric.type} here")
        suffix, type_ = _FORMS[metric.type]
        name = metric.name + suffix
        created = metric.name + "_created"
        values = [s for s in metric.samples if s.name != created]
        if values:
            yield _message(name, metric.documentation, type_, values)
        times = [s for s in metric.samples if s.name == created]
        if times:
            yield _message(created, metric.documentation, GAUGE, times)
