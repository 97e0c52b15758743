"""Prometheus' protobuf exposition format: delimited ``MetricFamily`` messages.

Prometheus scrapes native histograms only in this format. ``metrics.proto`` declares the
messages of Prometheus' client_model; ``metrics_pb2`` is generated from it (never edited);
``exposition`` builds the messages the collectors write; ``text`` converts the families of a
collector that writes only text; ``registry`` converts prometheus_client's metric objects.

Those modules and the protobuf library (about 2 MiB resident) are imported at the first scrape
that asks for protobuf; what the app and the collectors need before that is here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

__all__ = ["CONTENT_TYPE", "ProtobufCollector"]

CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)


@runtime_checkable
class ProtobufCollector(Protocol):
    def expose_protobuf(self) -> Iterable[bytes]:
        """Delimited ``MetricFamily`` messages in chunks, with the text collectors' slice
        protocol (``exposition.TextCollector.expose``): an empty chunk is a point where the
        caller may let other tasks run. A message may span several chunks."""
        ...
