"""``/metrics`` in the protobuf exposition: chosen by the scraper's ``Accept``, holding exactly
the samples of the text exposition (probes of several kinds, hostile label values, heartbeats,
the host, the exporter itself, prometheus_client's process, platform and GC collectors), with
native buckets for the probe durations and the scheduler lag, and sent in pieces like the text.

Every message is read back with the protobuf library (``tests.protobuf_samples``).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import math
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient
from google.protobuf import proto
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import app as app_module
from exporter import config
from exporter import runtime as runtime_module
from exporter.app import create_app, prefers_protobuf
from exporter.collectors import probes as probes_module
from exporter.collectors.probes import ProbeCollector
from exporter.families import Family
from exporter.protobuf import exposition as protobuf
from exporter.protobuf import registry as protobuf_registry
from exporter.protobuf import text as protobuf_text
from exporter.protobuf.metrics_pb2 import GAUGE, HISTOGRAM, MetricFamily
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.runtime import RUNTIME, Options
from exporter.stats import ProbeStats
from tests.protobuf_samples import (
    PROMETHEUS_ACCEPT,
    TYPE_NAMES,
    classic_samples,
    positive_buckets,
    read_families,
    text_metadata,
    text_samples,
)
from tests.test_native_histogram import expected_index
from tests.test_probe_collector import make_target

PROTOBUF_CONTENT_TYPE = (
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)
HOSTILE = 'say "hi" \\ bye\nnext line'


class StoppableClock:
    """The system clock until ``stop()``, then that instant for good: the heartbeat ages and
    the host's refresh stand still, so two scrapes see the same numbers."""

    def __init__(self) -> None:
        self.stopped: tuple[float, float] | None = None

    def time(self) -> float:
        return time.time() if self.stopped is None else self.stopped[0]

    def monotonic(self) -> float:
        return time.monotonic() if self.stopped is None else self.stopped[1]

    def stop(self) -> None:
        self.stopped = (time.time(), time.monotonic())


class Snapshot:
    """What a registry collected once, collected again and again."""

    def __init__(self, registry: Collector) -> None:
        self._metrics = list(registry.collect())

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


@pytest.fixture
async def upstreams(aiohttp_server: AiohttpServer, ca: trustme.CA) -> dict[str, str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    plain = await aiohttp_server(app)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    secure = await aiohttp_server(app, ssl=context)
    return {"plain": f"http://127.0.0.1:{plain.port}", "secure": f"https://127.0.0.1:{secure.port}"}


@pytest.fixture
async def still(
    aiohttp_client: AiohttpClient, upstreams: dict[str, str], ca_file: Path, tmp_path: Path
) -> TestClient[web.Request, web.Application]:
    """An exporter whose targets (http, https, failing, hostile labels) each probed twice and
    whose heartbeats pinged; then its scheduler stopped and its clock stood still."""
    hostile = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    slo = "slo: {availability: 99.5, latency: {threshold: 1ms, objective: 90}}"
    text = f"""
location: lab
defaults: {{interval: 200ms, timeout: 200ms}}
targets:
  - {{name: ok, kind: http, url: '{upstreams["plain"]}/ok', labels: {{team: core}}, {slo}}}
  - {{name: broken, kind: http, url: '{upstreams["plain"]}/broken', {slo}}}
  - {{name: secure, kind: http, url: '{upstreams["secure"]}/ok',
      http: {{tls: {{ca_file: {ca_file}}}}}}}
  - {{name: untrusted, kind: tls, address: '{upstreams["secure"].removeprefix("https://")}'}}
  - name: hostile
    kind: http
    url: "{upstreams["plain"]}/ok"
    labels: {{note: "{hostile}"}}
heartbeats:
  - {{name: hb-ok, period: 1h, grace: 10m}}
  - {{name: hb-failed, period: 1h, grace: 10m}}
  - {{name: hb-workers, period: 1h, grace: 10m, instances: 2}}
"""
    loaded = config.load_text(text, config.Source("t", tmp_path), {})
    clock = StoppableClock()
    app = create_app(Options(storage_path=tmp_path / "data"), loaded, clock)
    client = await aiohttp_client(app)
    for ping in ("/ping/hb-ok", "/ping/hb-failed/1", "/ping/hb-workers?instance=w1"):
        assert (await client.post(ping)).status == 200
    runtime = app[RUNTIME]
    deadline = time.monotonic() + 10
    while any(s.probes < 2 for s in runtime.scheduler.all_stats()):
        assert time.monotonic() < deadline, "every target probes twice within 10 s"
        await asyncio.sleep(0.05)
    await runtime.scheduler.close()
    clock.stop()
    runtime.registry = Snapshot(runtime.registry)  # type: ignore[assignment]
    return client


async def scrape(
    client: TestClient[web.Request, web.Application], accept: str | None
) -> tuple[str, bytes]:
    headers = {"Accept": accept} if accept is not None else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200
    return response.headers["Content-Type"], await response.read()


async def test_the_protobuf_scrape_holds_exactly_the_samples_of_the_text_scrape(
    still: TestClient[web.Request, web.Application],
) -> None:
    content_type, text = await scrape(still, None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    content_type, body = await scrape(still, PROMETHEUS_ACCEPT)
    assert content_type == PROTOBUF_CONTENT_TYPE
    families = read_families(body)
    expected = text_samples(text.decode())
    assert classic_samples(families) == expected
    metadata = text_metadata(text.decode())
    assert {f.name: (TYPE_NAMES[f.type], f.help) for f in families} == {
        name: metadata[name] for name in (f.name for f in families)
    }
    names = {name for name, _labels, _value in expected}
    assert {
        "lookout_probe_duration_seconds_bucket",
        "lookout_probe_failures_total",
        "lookout_tls_cert_info",
        "lookout_heartbeat_status",
        "lookout_heartbeat_instances_alive",
        "lookout_scheduler_lag_seconds_count",
        "lookout_build_info",
        "lookout_host_cpu_seconds_total",
        "process_cpu_seconds_total",
        "python_info",
        "python_gc_objects_collected_total",
    } <= names
    notes = {dict(labels).get("note") for name, labels, _ in expected if name.startswith("lookout")}
    assert HOSTILE in notes


async def test_probe_durations_and_scheduler_lag_are_native_histograms_of_every_observation(
    still: TestClient[web.Request, web.Application],
) -> None:
    """Each native histogram counts every observation once, in a bucket that agrees with the
    classic buckets of the same message."""
    _type, body = await scrape(still, PROMETHEUS_ACCEPT)
    histograms = {f.name: f for f in read_families(body) if f.type == HISTOGRAM}
    duration = histograms["lookout_probe_duration_seconds"]
    assert len(duration.metric) == 5
    for metric in [*duration.metric, *histograms["lookout_scheduler_lag_seconds"].metric]:
        histogram = metric.histogram
        assert histogram.schema == 3
        buckets = positive_buckets(histogram)
        assert sum(buckets.values()) + histogram.zero_count == histogram.sample_count >= 2
        for bucket in histogram.bucket:
            bound = bucket.upper_bound
            surely_below = sum(n for i, n in buckets.items() if 2.0 ** (i / 8) <= bound)
            maybe_below = sum(n for i, n in buckets.items() if 2.0 ** ((i - 1) / 8) < bound)
            below = bucket.cumulative_count - histogram.zero_count
            assert surely_below <= below <= maybe_below
        low = sum(n * 2.0 ** ((i - 1) / 8) for i, n in buckets.items())
        high = sum(n * 2.0 ** (i / 8) for i, n in buckets.items())
        assert low <= histogram.sample_sum <= high


def test_the_native_buckets_of_a_target_hold_its_probe_durations_exactly() -> None:
    stats = ProbeStats(make_target())
    durations = [0.0, 0.0011, 0.0042, 0.0042, 0.125, 0.5, 0.71, 3.2, 9.99]
    for number, duration in enumerate(durations):
        reason = Reason.TIMEOUT if number % 3 == 0 else None
        stats.record(
            ProbeResult("api", reason is None, duration, 1_800_000_000.0 + number, reason, "")
        )
    collector = ProbeCollector(lambda: [stats], lambda: None)
    families = {f.name: f for f in read_families(b"".join(collector.expose_protobuf()))}
    (metric,) = families["lookout_probe_duration_seconds"].metric
    histogram = metric.histogram
    assert histogram.sample_count == len(durations)
    assert histogram.sample_sum == pytest.approx(sum(durations))
    assert histogram.zero_count == 1
    assert positive_buckets(histogram) == Counter(expected_index(d) for d in durations if d)
    assert {label.name: label.value for label in metric.label} == {"target": "api", "kind": "http"}
    (failures,) = families["lookout_probe_failures_total"].metric
    assert failures.counter.value == 3


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        pytest.param(PROMETHEUS_ACCEPT, True, id="prometheus-2-native-histograms"),
        pytest.param(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
            "encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,"
            "text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
            True,
            id="prometheus-3-proto-first",
        ),
        pytest.param(
            "application/openmetrics-text;version=1.0.0;q=0.5,"
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
            "encoding=delimited;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            True,
            id="openmetrics-first-then-proto",
        ),
        pytest.param(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            False,
            id="prometheus-2-default",
        ),
        pytest.param("", False, id="no-accept"),
        pytest.param("*/*", False, id="anything"),
        pytest.param(
            "text/plain;q=0.9,application/vnd.google.protobuf;"
            "proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8",
            False,
            id="text-weighs-more",
        ),
        pytest.param(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
            "encoding=delimited;q=0",
            False,
            id="protobuf-refused",
        ),
        pytest.param(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            False,
            id="protobuf-text-encoding",
        ),
        pytest.param(
            "application/vnd.google.protobuf;encoding=delimited", False, id="protobuf-no-proto"
        ),
        pytest.param(
            'Application/Vnd.Google.Protobuf; proto="io.prometheus.client.MetricFamily"; '
            "encoding=delimited",
            True,
            id="case-and-quotes",
        ),
    ],
)
def test_accept_chooses_the_format(accept: str, protobuf: bool) -> None:
    assert prefers_protobuf(accept) is protobuf


async def test_a_protobuf_scrape_sent_in_many_pieces_parses_like_one_piece_plain_and_gzip(
    still: TestClient[web.Request, web.Application], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "PIECE_BYTES", 700)
    monkeypatch.setattr(probes_module, "CHUNK_BYTES", 300)
    monkeypatch.setattr(app_module, "GZIP_MIN_BYTES", 1)
    monkeypatch.setattr(probes_module, "BATCH", 2)
    runtime = still.app[RUNTIME]
    await scrape(still, None)  # reads the host once, as any scrape does
    pieces = [piece async for piece in runtime.render_pieces(protobuf=True)]
    assert len(pieces) > 10
    whole = b"".join(pieces)
    for stats in runtime.scheduler.all_stats():
        stats.retarget(stats.target)  # rendered afresh by the next scrape
    _type, plain = await scrape(still, PROMETHEUS_ACCEPT)
    response = await still.get(
        "/metrics",
        headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
        auto_decompress=False,
    )
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    unzipped = gzip.decompress(await response.read())
    expected = classic_samples(read_families(whole))
    assert len(expected) > 200
    assert classic_samples(read_families(plain)) == expected
    assert classic_samples(read_families(unzipped)) == expected


@pytest.mark.parametrize("size", [0, 1, 100, 127, 128, 300, 16_383, 16_384, 2_097_152])
def test_the_length_in_front_of_a_message_is_the_one_the_protobuf_library_writes(
    size: int,
) -> None:
    family = Family("x", "gauge", "h" * size)
    header = MetricFamily(name="x", help="h" * size, type=GAUGE)
    framed = io.BytesIO()
    proto.serialize_length_prefixed(header, framed)
    assert protobuf.delimited(family, b"") == framed.getvalue()


def test_text_a_collector_should_never_write_is_refused_naming_the_line() -> None:
    cases = {
        "# HELP x a summary\n# TYPE x summary\nx_sum 1\n": "unsupported family type",
        "# HELP x a gauge\n# TYPE x gauge\ny 1\n": "sample of another family",
        "# TYPE x gauge\nx 1\n": "# TYPE without its # HELP",
        "# HELP x a gauge\nx 1\n": "sample before the # TYPE",
        "# HELP x a gauge\n# TYPE x gauge\nx{a=1} 1\n": "not a label pair",
        "# HELP x a gauge\n# TYPE x gauge\nx 1": "ends inside a line",
    }
    for text, message in cases.items():
        with pytest.raises(ValueError, match=message):
            list(protobuf_text.families([text]))


def test_text_families_without_samples_are_left_out_and_pauses_pass_through() -> None:
    chunks = ["# HELP a none\n# TYPE a gauge\n", "", "# HELP b one\n# TYPE b counter\n", "b 2\n"]
    out = list(protobuf_text.families(chunks))
    assert out[0] == b""
    (family,) = read_families(b"".join(out))
    assert (family.name, family.metric[0].counter.value) == ("b", 2)


def test_a_registry_family_without_a_protobuf_form_here_is_refused() -> None:
    registry = CollectorRegistry()
    Histogram("request_seconds", "a histogram", registry=registry)
    with pytest.raises(ValueError, match="request_seconds: no protobuf form"):
        list(protobuf_registry.families(registry))


def test_a_registry_counter_is_its_total_and_its_created_time_a_gauge_family() -> None:
    class Counted:
        def collect(self) -> Iterator[Metric]:
            metric = Metric("jobs", "Jobs run.", "counter")
            metric.add_sample("jobs_total", {"queue": "a"}, 3)
            metric.add_sample("jobs_created", {"queue": "a"}, 1_700_000_000.5)
            yield metric

    families = read_families(b"".join(protobuf_registry.families(Counted())))
    assert [(f.name, TYPE_NAMES[f.type]) for f in families] == [
        ("jobs_total", "counter"),
        ("jobs_created", "gauge"),
    ]
    assert families[0].metric[0].counter.value == 3
    assert math.isclose(families[1].metric[0].gauge.value, 1_700_000_000.5)


def test_probes_render_protobuf_as_they_complete_once_a_protobuf_scrape_asked_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen through the slice protocol: a pause after every target rendered during a scrape,
    besides the pauses between a family's chunks, which every scrape has."""
    monkeypatch.setattr(probes_module, "PROTOBUF_BATCH", 1)
    targets = [ProbeStats(make_target(name=f"api-{n}")) for n in range(3)]
    collector = ProbeCollector(lambda: targets, lambda: None)

    def probed(stats: ProbeStats, success: bool) -> None:
        stats.record(ProbeResult(stats.target.name, success, 0.01, 1_800_000_000.0))
        collector.refresh(stats)

    def scrape() -> tuple[int, dict[str, float]]:
        chunks = list(collector.expose_protobuf())
        families = {f.name: f for f in read_families(b"".join(chunks))}
        success = {
            m.label[0].value: m.gauge.value for m in families["lookout_probe_success"].metric
        }
        return chunks.count(b""), success

    for stats in targets:
        probed(stats, True)  # text only: nothing has asked for protobuf yet
    first, success = scrape()
    assert success == {"api-0": 1, "api-1": 1, "api-2": 1}
    assert first - scrape()[0] == 3  # the first scrape rendered all three, the next none
    probed(targets[1], False)  # rendered in protobuf too now
    second, success = scrape()
    assert success == {"api-0": 1, "api-1": 0, "api-2": 1}
    assert scrape()[0] == second  # nothing was left to render in the scrape before either
