"""A real Prometheus scrapes native histograms from a real exporter over protobuf.

The exporter probes a loopback endpoint that answers after a known delay, 100 to 299 ms in a
shuffled cycle. Debian's ``prometheus`` (2.42) with ``--enable-feature=native-histograms``
negotiates the protobuf exposition and ingests the probe durations as one native histogram;
another Prometheus without the flag scrapes the text and keeps the classic buckets. Both load
the bundled rules. The 90th percentile Prometheus computes from the native histogram must be the
one of the delays served, within the resolution of schema 3 (one bucket, 9.05 %) and the
probe's own overhead; the classic estimate lands in the classic bucket of that percentile.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.runtime import Options
from tests import processes
from tests.test_dashboards_prometheus import rule_files

pytestmark = pytest.mark.tools

# The delays the endpoint answers after, in a shuffled order (37 is prime to 200).
DELAYS = [0.100 + (k * 37 % 200) / 1000 for k in range(200)]
# A bucket of schema 3 spans a factor 2^(1/8).
BUCKET_FACTOR = 2.0 ** (1 / 8)
# Seconds a loopback HTTP probe may add to the delay it waits for, on a busy machine.
OVERHEAD = 0.05
QUANTILE = 0.9
WATCH_SECONDS = 60.0


@dataclass
class Endpoint:
    url: str = ""
    # (when the answer went out, the delay it waited), one per request
    served: list[tuple[float, float]] = field(default_factory=list)


@pytest.fixture
async def endpoint(aiohttp_server: AiohttpServer) -> Endpoint:
    served = Endpoint()

    async def delayed(_request: web.Request) -> web.Response:
        delay = DELAYS[len(served.served) % len(DELAYS)]
        await asyncio.sleep(delay)
        served.served.append((time.time(), delay))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/delayed", delayed)
    server = await aiohttp_server(app)
    served.url = f"http://127.0.0.1:{server.port}/delayed"
    return served


@pytest.fixture
async def exporter(aiohttp_server: AiohttpServer, endpoint: Endpoint, tmp_path: Path) -> str:
    text = f"""
defaults: {{interval: 400ms, timeout: 400ms}}
targets:
  - name: delayed
    kind: http
    url: {endpoint.url}
    slo: {{availability: 99, latency: {{threshold: 250ms, objective: 90}}}}
"""
    loaded = config.load_text(text, config.Source("t", tmp_path), {})
    app = create_app(Options(storage_path=tmp_path / "data"), loaded)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"127.0.0.1:{server.port}"


def settings(exporter: str, directory: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files(directory),
        "scrape_configs": [{"job_name": "lookout", "static_configs": [{"targets": [exporter]}]}],
    }


@pytest.fixture
async def native(exporter: str, tmp_path: Path) -> AsyncIterator[str]:
    directory = tmp_path / "native"
    directory.mkdir()
    flags = ("--log.level=warn", "--enable-feature=native-histograms")
    async with processes.prometheus(settings(exporter, directory), directory, *flags) as base:
        yield base


@pytest.fixture
async def classic(exporter: str, tmp_path: Path) -> AsyncIterator[str]:
    directory = tmp_path / "classic"
    directory.mkdir()
    async with processes.prometheus(
        settings(exporter, directory), directory, "--log.level=warn"
    ) as base:
        yield base


async def query(session: aiohttp.ClientSession, base: str, expr: str, at: float) -> list[Any]:
    params = {"query": expr, "time": f"{at:.3f}"}
    async with session.post(f"{base}/api/v1/query", data=params) as response:
        body = await response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[Any] = body["data"]["result"]
    return result


async def value(session: aiohttp.ClientSession, base: str, expr: str, at: float) -> float | None:
    result = await query(session, base, expr, at)
    assert len(result) <= 1, f"{expr}: {result}"
    if not result or "value" not in result[0]:
        return None
    number = float(result[0]["value"][1])
    return None if math.isnan(number) else number


def served_quantile(served: list[tuple[float, float]], start: float, end: float) -> float:
    """The ``QUANTILE`` of the delays answered between two scrapes (rank interpolated)."""
    delays = sorted(delay for at, delay in served if start < at <= end)
    assert len(delays) >= 20, f"only {len(delays)} probes between the scrapes"
    rank = QUANTILE * (len(delays) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(delays) - 1)
    return delays[low] + (delays[high] - delays[low]) * (rank - low)


async def test_prometheus_computes_the_percentile_from_native_buckets_and_keeps_classic_ones(
    endpoint: Endpoint, native: str, classic: str
) -> None:
    expr = f"histogram_quantile({QUANTILE}, rate(lookout_probe_duration_seconds[1m]))"
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + WATCH_SECONDS
        while True:
            now = time.time()
            scrapes = await query(session, native, 'up{job="lookout"}[1m]', now)
            count = len(scrapes[0]["values"]) if scrapes else 0
            estimate = await value(session, native, expr, now)
            if count >= 20 and estimate is not None:
                break
            assert time.monotonic() < deadline, f"{count} scrapes, estimate {estimate}"
            await asyncio.sleep(1)
        first, last = (float(scrapes[0]["values"][i][0]) for i in (0, -1))
        expected = served_quantile(endpoint.served, first, last)
        assert expected / BUCKET_FACTOR <= estimate <= (expected + OVERHEAD) * BUCKET_FACTOR

        (series,) = await query(session, native, "lookout_probe_duration_seconds", now)
        assert "histogram" in series, "stored as a native histogram"
        assert await query(session, native, "lookout_probe_duration_seconds_bucket", now) == []
        rate = await value(
            session, native, "histogram_count(rate(lookout_probe_duration_seconds[1m]))", now
        )
        assert rate is not None
        assert rate > 0

        bucket = f"histogram_quantile({QUANTILE}, rate(lookout_probe_duration_seconds_bucket[1m]))"
        by_buckets = await value(session, classic, bucket, now)
        assert by_buckets is not None
        assert 0.25 < by_buckets <= 0.5  # the classic bucket holding 0.28 s
        assert await value(session, classic, "lookout_probe_duration_seconds_count", now)

        # The bundled rules work on either: the same recorded series from both Prometheus.
        recorded = (
            "target:lookout_probes:rate5m",
            "target_location:lookout_probe_duration_seconds:p95_rate10m",
            'target_slo:lookout_probe_errors:ratio_rate5m{slo="latency"}',
        )
        for base in (native, classic):
            for name in recorded:
                assert await value(session, base, name, time.time()) is not None, (base, name)
