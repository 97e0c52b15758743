"""Prometheus' protobuf exposition format: delimited ``MetricFamily`` messages.

Prometheus scrapes native histograms only in this format. ``metrics.proto`` declares the
messages of Prometheus' client_model; ``metrics_pb2`` is generated from it (never edited);
``exposition`` builds the messages the collectors write; ``text`` converts the families of a
collector that writes only text; ``registry`` converts prometheus_client's metric objects.
"""
