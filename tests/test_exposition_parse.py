"""Lookout's hand-written exposition parses exactly like prometheus_client's own rendering of the
same data, and a scrape sent in many small pieces (plain or gzip) parses like one piece."""

from __future__ import annotations

import asyncio
import gzip
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient, AiohttpServer

from exporter import app as app_module
from exporter import config
from exporter import runtime as runtime_module
from exporter.app import create_app
from exporter.collectors import probes as probes_module
from exporter.collectors.probes import FAMILIES
from exporter.exposition import format_value
from exporter.probes.http import HttpObservation
from exporter.runtime import RUNTIME, Options
from exporter.stats import ProbeStats

# A label value with every character the text format escapes.
HOSTILE = 'say "hi" \\ bye\nnext line'
Parsed = dict[str, tuple[str, str, set[tuple[str, tuple[tuple[str, str], ...], float]]]]


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> str:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config_text(upstream: str, count: int) -> str:
    slo = "slo: {availability: 99.5, latency: {threshold: 1ms, objective: 90}}"
    lines = ["location: lab", "defaults: {interval: 100ms, timeout: 100ms}", "targets:"]
    lines.append(
        f"  - {{name: ok, kind: http, url: '{upstream}/ok', labels: {{team: core}}, {slo}}}"
    )
    lines.append(f"  - {{name: broken, kind: http, url: '{upstream}/broken', {slo}}}")
    lines.append(f"  - {{name: refused, kind: http, url: 'http://127.0.0.1:{closed_port()}/'}}")
    hostile = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append(f'  - name: hostile\n    kind: http\n    url: "{upstream}/ok"')
    lines.append(f'    labels: {{note: "{hostile}"}}')
    lines += [f"  - {{name: extra-{i}, kind: http, url: '{upstream}/ok'}}" for i in range(count)]
    return "\n".join(lines) + "\n"


# Families that hold still once the scheduler stopped (host and process figures move on).
STILL = ("lookout_probe", "lookout_http", "lookout_tls", "lookout_build", "lookout_targets")


def parse(text: str) -> Parsed:
    """``{family: (type, help, {(sample name, sorted labels, value)})}`` for ``STILL`` families."""
    return {
        family.name: (
            family.type,
            family.documentation,
            {(s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples},
        )
        for family in text_string_to_metric_families(text)
        if family.name.startswith(STILL)
    }


class ReferenceCollector:
    """The probe families of ``stats`` as prometheus_client ``Metric`` samples, so that
    prometheus_client does the escaping, the value formatting and the family layout."""

    def __init__(self, stats: list[ProbeStats], location: str) -> None:
        self._stats = stats
        self._location = location

    def collect(self) -> Iterator[Metric]:
        kinds = {family.name: (family.type, family.help) for family in FAMILIES}
        families: dict[str, Metric] = {}

        def add(family: str, sample: str, labels: dict[str, str], value: float) -> None:
            if family not in families:
                kind, help_text = kinds[family]
                families[family] = Metric(family.removesuffix("_total"), help_text, kind)
            families[family].add_sample(sample, labels, value)

        for stats in self._stats:
            target = stats.target
            base = {"target": target.name, "kind": target.kind.name, "location": self._location}
            base.update(target.labels)
            name = "lookout_probe_duration_seconds"
            running = 0
            durations = stats.durations
            for bound, count in zip(durations.bounds, durations.counts, strict=True):
                running += count
                add(name, f"{name}_bucket", {**base, "le": format_value(bound)}, running)
            add(name, f"{name}_bucket", {**base, "le": "+Inf"}, durations.total)
            add(name, f"{name}_sum", base, durations.sum)
            add(name, f"{name}_count", base, durations.total)
            for reason, count in stats.failures.items():
                name = "lookout_probe_failures_total"
                add(name, name, {**base, "reason": reason.value}, count)
            last = stats.last
            assert last is not None
            add("lookout_probe_success", "lookout_probe_success", base, int(last.success))
            name = "lookout_probe_last_run_timestamp_seconds"
            add(name, name, base, last.finished_at)
            for phase, seconds in last.phases:
                name = "lookout_probe_phase_seconds"
                add(name, name, {**base, "phase": phase}, seconds)
            seen = last.observation
            if isinstance(seen, HttpObservation):
                name = "lookout_http_status_code"
                add(name, name, base, seen.status_code)
                if seen.response_size is not None:
                    name = "lookout_http_response_size_bytes"
                    add(name, name, base, seen.response_size)
            slo = target.slo
            if slo is not None:
                assert slo.availability is not None
                assert slo.latency_objective is not None
                assert slo.latency_threshold is not None
                name = "lookout_probe_slo_objective_ratio"
                add(name, name, {**base, "slo": "availability"}, slo.availability)
                add(name, name, {**base, "slo": "latency"}, slo.latency_objective)
                name = "lookout_probe_latency_threshold_seconds"
                add(name, name, base, slo.latency_threshold)
                add("lookout_probe_slow_total", "lookout_probe_slow_total", base, stats.slow)
        yield from families.values()


async def probed_app(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path, extra: int = 0
) -> tuple[TestClient[web.Request, web.Application], list[ProbeStats]]:
    loaded = config.load_text(config_text(upstream, extra), config.Source("t", tmp_path), {})
    app = create_app(Options(), loaded)
    client = await aiohttp_client(app)
    runtime = app[RUNTIME]
    for _ in range(100):
        if all(s.probes >= 2 for s in runtime.scheduler.all_stats()):
            break
        await asyncio.sleep(0.05)
    await runtime.scheduler.close()  # the stats hold still from here on
    stats = list(runtime.scheduler.all_stats())
    assert len(stats) == 4 + extra
    assert all(s.probes >= 2 for s in stats), "every target probed twice within 5 s"
    return client, stats


async def test_probe_families_parse_like_prometheus_client_renders_the_same_data(
    aiohttp_client: AiohttpClient, upstream: str, tmp_path: Path
) -> None:
    client, stats = await probed_app(aiohttp_client, upstream, tmp_path)
    response = await client.get("/metrics")
    ours = parse(await response.text())
    registry = CollectorRegistry()
    registry.register(ReferenceCollector(stats, "lab"))
    reference = parse(generate_latest(registry).decode())
    assert {"lookout_probe_failures", "lookout_probe_duration_seconds"} <= set(reference)
    probe_families = {name: family for name, family in ours.items() if name in reference}
    assert probe_families == reference
    notes = {dict(labels).get("note") for _n, labels, _v in ours["lookout_probe_success"][2]}
    assert HOSTILE in notes


async def test_a_scrape_sent_in_many_pieces_parses_like_one_piece_plain_and_gzip(
    aiohttp_client: AiohttpClient,
    upstream: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "PIECE_BYTES", 700)
    monkeypatch.setattr(probes_module, "CHUNK_BYTES", 300)
    monkeypatch.setattr(app_module, "GZIP_MIN_BYTES", 1)
    monkeypatch.setattr(probes_module, "BATCH", 3)
    client, stats = await probed_app(aiohttp_client, upstream, tmp_path, extra=20)
    for s in stats:
        s.retarget(s.target)  # every target is rendered afresh, in batches of 3
    pieces = [piece async for piece in client.app[RUNTIME].render_pieces()]
    assert len(pieces) > 10
    whole = b"".join(pieces).decode()
    plain = await client.get("/metrics")
    assert plain.headers["Transfer-Encoding"] == "chunked"  # sent piece by piece
    zipped = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    unzipped = gzip.decompress(await zipped.read()).decode()
    expected = parse(whole)
    assert len(expected["lookout_probe_success"][2]) == 24
    assert parse(await plain.text()) == expected
    assert parse(unzipped) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (True, "1"),
        (False, "0"),
        (2.0, "2"),
        (-0.0, "0"),
        (0.25, "0.25"),
        (1e15, "1000000000000000.0"),
        (1.5e300, "1.5e+300"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_sample_values_are_written_as_prometheus_reads_them(value: float, text: str) -> None:
    assert format_value(value) == text
