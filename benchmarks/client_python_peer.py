"""The scrape-cost peer: the same series as a Lookout exposition, served the standard way.

Reads an exposition file, declares every family as a labelled prometheus_client ``Gauge``,
``Counter`` or ``Histogram`` in the default registry, sets each series to the file's values (a
histogram gets observations at its bucket bounds, so its buckets match), and serves it with
``prometheus_client.start_http_server`` on loopback until terminated. That is how a Python
exporter is usually written, and what ``benchmarks/scrape_cost.py`` compares Lookout against.

    python benchmarks/client_python_peer.py EXPOSITION_FILE PORT
"""

from __future__ import annotations

import math
import signal
import sys
from collections import defaultdict
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = "127.0.0.1"


def declare(family: Metric) -> None:
    """Register ``family`` with prometheus_client and set every series of it."""
    if family.name.startswith(("process_", "python_")):
        return  # the peer's own default collectors export these
    if family.type == "histogram":
        _histogram(family)
        return
    labels = [k for k in family.samples[0].labels] if family.samples else []
    if family.type == "counter":
        counter = Counter(family.name, family.documentation, labels)
        for sample in family.samples:
            if sample.name.endswith("_total"):
                (counter.labels(**sample.labels) if labels else counter).inc(sample.value)
        return
    gauge = Gauge(family.name, family.documentation, labels)
    for sample in family.samples:
        (gauge.labels(**sample.labels) if labels else gauge).set(sample.value)


def _histogram(family: Metric) -> None:
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
    for sample in family.samples:
        if sample.name.endswith("_bucket"):
            key = tuple((k, v) for k, v in sample.labels.items() if k != "le")
            buckets[key].append((float(sample.labels["le"]), sample.value))
    if not buckets:
        return
    labels = [k for k, _v in next(iter(buckets))]
    bounds = sorted(b for b, _c in next(iter(buckets.values())))
    histogram = Histogram(family.name, family.documentation, labels, buckets=bounds)
    for key, counts in buckets.items():
        child = histogram.labels(**dict(key)) if labels else histogram
        below = 0.0
        for bound, cumulative in sorted(counts):
            value = bound if not math.isinf(bound) else 1e9
            for _ in range(int(cumulative - below)):
                child.observe(value)
            below = cumulative


def main() -> None:
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the server thread starts
    text = Path(sys.argv[1]).read_text()
    for family in text_string_to_metric_families(text):
        declare(family)
    start_http_server(int(sys.argv[2]), addr=LOOPBACK)
    signal.sigwait(stop)


if __name__ == "__main__":
    main()
