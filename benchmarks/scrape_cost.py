"""Scrape cost and memory with 10,000 targets: Lookout versus prometheus_client's registry, and
Lookout's protobuf exposition (native histograms) versus its text exposition.

Lookout probes 10,000 HTTP targets of a local nginx every 30 s (labels and an SLO on each, so
every probe family is there, histograms included). Once every target has a result, the script
starts ``client_python_peer.py``, which serves exactly the same series the standard way
(labelled ``Gauge``/``Counter``/``Histogram`` objects, ``start_http_server``). Then, every
``--scrape-interval`` seconds as Prometheus would, it scrapes both, interleaved: plain text
first (Lookout re-renders the targets that probed since the previous scrape), then gzip. Each
scrape is timed on the wall clock and in CPU seconds of the serving process. Meanwhile a ticker
asks Lookout's ``/-/healthy`` every 5 ms; its slowest answer during a scrape bounds how long
the scrape blocked Lookout's event loop. Finally the Lookout body is checked with
``promtool check metrics`` and parsed with prometheus_client's parser, and the resident memory
of both processes is read.

Lookout is also scraped as Prometheus with native histograms scrapes it (``Accept`` preferring
the delimited protobuf ``MetricFamily`` format), plain and gzip, in the same rounds. Before its
first protobuf scrape and after it, the script reads Lookout's CPU over one quiet scrape interval:
from the first protobuf scrape on, every completed probe renders its target's protobuf entries
as well as its text. The protobuf body is read back with the protobuf library, and the series a
Prometheus ingests per target are counted for each way of scraping.

    python benchmarks/scrape_cost.py [--targets 10000] [--rounds 4] [--scrape-interval 15]
        [--time-limit SECONDS]

``--in-process`` measures only the rendering, without HTTP, probes or other processes: the
exporter's runtime in this process, each target given five synthetic HTTP results, then the
whole exposition rendered (``Runtime.render_pieces``) as text and as protobuf by turns, with
500 targets probed anew before each pair. Each render's CPU is this process's, and the longest
stretch between two turns of the event loop during it is how long it held the loop. Both
formats share every disturbance of a loaded machine, so their ratio holds up where the full
run's figures do not.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import harness
import psutil
from google.protobuf import proto
from harness import INTERVAL, LOOPBACK, Processes, lookout_config
from prometheus_client.parser import text_string_to_metric_families

from exporter.clock import SystemClock
from exporter.collectors.probes import ProbeCollector
from exporter.config import Source, load_text
from exporter.probes.http import HttpObservation
from exporter.protobuf.metrics_pb2 import HISTOGRAM, MetricFamily
from exporter.results import ProbeResult
from exporter.runtime import Options, Runtime
from exporter.stats import ProbeStats

KINDS = (
    "lookout plain",
    "peer plain",
    "lookout gzip",
    "peer gzip",
    "lookout protobuf",
    "lookout protobuf gzip",
)
# What Prometheus 2.42 sends with --enable-feature=native-histograms.
PROTOBUF_ACCEPT = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
    "application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


# Run in a process of its own, so that nothing this script does delays its answers.
TICKER = """
import http.client, sys, time
connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
while True:
    started = time.monotonic()
    connection.request("GET", "/-/healthy")
    connection.getresponse().read()
    print(started, time.monotonic() - started, flush=True)
    time.sleep(0.005)
"""


class Ticker:
    """Asks ``/-/healthy`` every 5 ms from another process, logging each answer's latency."""

    def __init__(self, procs: Processes, port: int) -> None:
        self._procs = procs
        procs.start("ticker", [sys.executable, "-c", TICKER, LOOPBACK, str(port)])

    def worst(self, start: float, end: float) -> float:
        """The slowest answer among the requests in flight between ``start`` and ``end``."""
        worst = 0.0
        for line in (self._procs.tmp / "ticker.log").read_text().splitlines():
            fields = line.split()
            if len(fields) != 2:
                continue
            at, latency = float(fields[0]), float(fields[1])
            if start <= at + latency and at <= end:
                worst = max(worst, latency)
        return worst


@dataclass
class Scrape:
    seconds: float
    cpu: float
    size: int
    blocked: float = 0.0


async def scrape(
    session: aiohttp.ClientSession,
    url: str,
    proc: psutil.Process,
    gzip: bool,
    ticker: Ticker | None = None,
    accept: str | None = None,
) -> tuple[Scrape, bytes]:
    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    if accept is not None:
        headers["Accept"] = accept
    cpu = harness.cpu_seconds(proc)
    started = time.monotonic()
    async with session.get(url, headers=headers, auto_decompress=False) as response:
        body = await response.read()
        encoding = response.headers.get("Content-Encoding", "identity")
    seconds = time.monotonic() - started
    if encoding != ("gzip" if gzip else "identity"):
        raise SystemExit(f"{url} answered with Content-Encoding {encoding}")
    result = Scrape(seconds, harness.cpu_seconds(proc) - cpu, len(body))
    if ticker is not None:
        await asyncio.sleep(0.1)  # let the ticker log its answers from the scrape's end
        result.blocked = ticker.worst(started, started + seconds)
    return result, b"" if gzip else body


async def wait_for_results(
    session: aiohttp.ClientSession, url: str, targets: int, procs: Processes
) -> None:
    """Wait until every target has probed once."""
    started = time.monotonic()
    while time.monotonic() - started < INTERVAL + 60:
        await asyncio.sleep(5)
        _at, values = await harness.fetch_samples(session, url, ["lookout_probe_runs_total"])
        runs = harness.total(values, "lookout_probe_runs_total")
        print(f"  {time.monotonic() - started:4.0f} s: {runs:.0f} probes run", flush=True)
        if runs >= targets:
            return
    raise SystemExit(f"targets did not all probe in time:\n{procs.log_tail('lookout')}")


async def measure(args: argparse.Namespace, procs: Processes, binaries: dict[str, str]) -> None:
    nginx_ports = [harness.free_port() for _ in range(4)]
    lookout_port, peer_port = harness.free_port(), harness.free_port()
    procs.nginx(binaries["nginx"], nginx_ports)
    started = time.monotonic()
    lookout = procs.lookout(lookout_config(nginx_ports, args.targets), lookout_port)
    lookout_url = f"http://{LOOPBACK}:{lookout_port}/metrics"
    peer_url = f"http://{LOOPBACK}:{peer_port}/metrics"
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await harness.wait_until_up(session, lookout_url, procs, "lookout", patience=120)
        started_rss = harness.rss_mib(lookout)
        print(
            f"Lookout up with {args.targets} targets after {time.monotonic() - started:.1f} s, "
            f"resident {started_rss:.0f} MiB"
        )
        await wait_for_results(session, lookout_url, args.targets, procs)
        _first, body = await scrape(session, lookout_url, lookout, gzip=False)
        exposition = procs.tmp / "lookout.prom"
        exposition.write_bytes(body)
        peer = procs.start(
            "peer",
            [
                sys.executable,
                str(harness.REPO / "benchmarks/client_python_peer.py"),
                str(exposition),
                str(peer_port),
            ],
        )
        await harness.wait_until_up(session, peer_url, procs, "peer", patience=120)
        ticker = Ticker(procs, lookout_port)
        results: dict[str, list[Scrape]] = {key: [] for key in KINDS}
        watch_start = time.monotonic()
        text_only = await quiet_cpu(lookout, args.scrape_interval)
        text_rss = harness.rss_mib(lookout)
        first_protobuf, _ = await scrape(
            session, lookout_url, lookout, False, ticker, PROTOBUF_ACCEPT
        )
        with_protobuf = await quiet_cpu(lookout, args.scrape_interval)
        for n in range(1, args.rounds + 1):
            await asyncio.sleep(args.scrape_interval)
            lookout_plain, body = await scrape(session, lookout_url, lookout, False, ticker)
            text = body.decode()
            results["lookout plain"].append(lookout_plain)
            results["peer plain"].append((await scrape(session, peer_url, peer, False))[0])
            lookout_gzip, _ = await scrape(session, lookout_url, lookout, True, ticker)
            results["lookout gzip"].append(lookout_gzip)
            results["peer gzip"].append((await scrape(session, peer_url, peer, True))[0])
            protobuf, messages = await scrape(
                session, lookout_url, lookout, False, ticker, PROTOBUF_ACCEPT
            )
            results["lookout protobuf"].append(protobuf)
            protobuf_gzip, _ = await scrape(
                session, lookout_url, lookout, True, ticker, PROTOBUF_ACCEPT
            )
            results["lookout protobuf gzip"].append(protobuf_gzip)
            print(
                f"  round {n}: Lookout {lookout_plain.seconds * 1000:.0f} ms plain, "
                f"{lookout_gzip.seconds * 1000:.0f} ms gzip, "
                f"{protobuf.seconds * 1000:.0f} ms protobuf, "
                f"{protobuf_gzip.seconds * 1000:.0f} ms protobuf gzip; peer "
                f"{results['peer plain'][-1].seconds * 1000:.0f} ms plain",
                flush=True,
            )
        worst_tick = ticker.worst(watch_start, time.monotonic())
        lookout_rss, lookout_peak = harness.rss_mib(lookout), _peak_mib(lookout)
        peer_rss = harness.rss_mib(peer)
    memory = (started_rss, lookout_rss, lookout_peak, peer_rss)
    report(results, text, memory, worst_tick, binaries)
    quiet = (text_only, with_protobuf)
    report_protobuf(results, first_protobuf, quiet, (text_rss, lookout_rss), text, messages, args)


async def quiet_cpu(proc: psutil.Process, seconds: float) -> float:
    """Lookout's CPU seconds per second over ``seconds`` without a scrape."""
    cpu = harness.cpu_seconds(proc)
    await asyncio.sleep(seconds)
    return (harness.cpu_seconds(proc) - cpu) / seconds


def _peak_mib(proc: psutil.Process) -> float:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(
    results: dict[str, list[Scrape]],
    text: str,
    memory: tuple[float, float, float, float],
    worst_tick: float,
    binaries: dict[str, str],
) -> None:
    started_rss, lookout_rss, lookout_peak, peer_rss = memory

    def med(key: str, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in results[key]))

    rows = [["scrape (median)", "Lookout", "prometheus_client", "ratio", "goal"]]
    for encoding in ("plain", "gzip"):
        for attr, unit, scale in (("seconds", "ms wall", 1000), ("cpu", "ms CPU", 1000)):
            ours, peer = med(f"lookout {encoding}", attr), med(f"peer {encoding}", attr)
            goal = "<= 100 ms" if (encoding, attr) == ("plain", "seconds") else ""
            rows.append(
                [
                    f"{encoding}, {unit}",
                    f"{ours * scale:.0f}",
                    f"{peer * scale:.0f}",
                    f"{ours / peer:.2f}",
                    goal,
                ]
            )
        size_ours, size_peer = med(f"lookout {encoding}", "size"), med(f"peer {encoding}", "size")
        rows.append(
            [
                f"{encoding}, MiB body",
                f"{size_ours / 2**20:.1f}",
                f"{size_peer / 2**20:.1f}",
                f"{size_ours / size_peer:.2f}",
                "",
            ]
        )
    blocked = max(s.blocked for key in ("lookout plain", "lookout gzip") for s in results[key])
    rows.append(["loop blocked, worst ms", f"{blocked * 1000:.0f}", "", "", "<= 50 ms"])
    rows.append(["resident MiB right after start", f"{started_rss:.0f}", "", "", ""])
    rows.append(
        [
            "resident MiB at the end (peak)",
            f"{lookout_rss:.0f} ({lookout_peak:.0f})",
            f"{peer_rss:.0f}",
            f"{lookout_rss / peer_rss:.2f}",
            "<= 150 MiB",
        ]
    )
    print(harness.table(rows))
    print(f"slowest /-/healthy answer over the measured rounds: {worst_tick * 1000:.0f} ms")
    families = list(text_string_to_metric_families(text))
    series = sum(len(f.samples) for f in families)
    print(f"prometheus_client parser: {len(families)} families, {series} samples")
    check = subprocess.run(
        [binaries["promtool"], "check", "metrics"], input=text, capture_output=True, text=True
    )
    verdict = "passed" if check.returncode == 0 else f"FAILED:\n{check.stdout}{check.stderr}"
    print(f"promtool check metrics: {verdict}")


def read_families(body: bytes) -> list[MetricFamily]:
    stream = io.BytesIO(body)
    families = []
    while stream.tell() < len(body):
        families.append(proto.parse_length_prefixed(MetricFamily, stream))
    return families


def series_per_target(families: list[MetricFamily], targets: int) -> tuple[float, float]:
    """Series a Prometheus ingests per target from the protobuf body: with native histograms
    only (a native histogram is one series, its classic buckets dropped), and keeping the
    classic buckets too (13 bucket series, _sum and _count besides the native one)."""
    native = with_classic = 0
    for family in families:
        for metric in family.metric:
            if not any(label.name == "target" for label in metric.label):
                continue
            if family.type != HISTOGRAM:
                native += 1
                with_classic += 1
                continue
            classic = len(metric.histogram.bucket) + 3  # the +Inf bucket, _sum, _count
            is_native = metric.histogram.HasField("schema")
            native += 1 if is_native else classic
            with_classic += classic + (1 if is_native else 0)
    return native / targets, with_classic / targets


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "n/a"


def report_protobuf(
    results: dict[str, list[Scrape]],
    first: Scrape,
    quiet: tuple[float, float],
    rss: tuple[float, float],
    text: str,
    messages: bytes,
    args: argparse.Namespace,
) -> None:
    def med(key: str, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in results[key]))

    rows = [["scrape (median)", "protobuf", "text", "ratio", "goal"]]
    for encoding, proto_key, text_key in (
        ("plain", "lookout protobuf", "lookout plain"),
        ("gzip", "lookout protobuf gzip", "lookout gzip"),
    ):
        for attr, unit, scale, goal in (
            ("seconds", "ms wall", 1000, ""),
            ("cpu", "ms CPU", 1000, "<= 1.5"),
            ("size", "MiB body", 2**-20, ""),
        ):
            ours, theirs = med(proto_key, attr), med(text_key, attr)
            digits = 2 if attr == "size" else 0
            rows.append(
                [
                    f"{encoding}, {unit}",
                    f"{ours * scale:.{digits}f}",
                    f"{theirs * scale:.{digits}f}",
                    ratio(ours, theirs),
                    goal,
                ]
            )
    blocked_proto = max(s.blocked for k in KINDS[4:] for s in results[k])
    blocked_text = max(s.blocked for k in ("lookout plain", "lookout gzip") for s in results[k])
    rows.append(
        [
            "loop blocked, worst ms",
            f"{blocked_proto * 1000:.0f}",
            f"{blocked_text * 1000:.0f}",
            ratio(blocked_proto, blocked_text),
            "<= text",
        ]
    )
    print(harness.table(rows))
    print(
        f"first protobuf scrape (renders every target's messages): {first.seconds * 1000:.0f} ms "
        f"wall, {first.cpu * 1000:.0f} ms CPU, loop blocked at most {first.blocked * 1000:.0f} ms"
    )
    probes_per_second = args.targets / INTERVAL
    extra = (quiet[1] - quiet[0]) / probes_per_second
    print(
        f"CPU between scrapes: {quiet[0] * 100:.1f} % of a core rendering text only, "
        f"{quiet[1] * 100:.1f} % rendering protobuf too ({extra * 1e6:.0f} us more per probe)"
    )
    print(
        f"resident MiB: {rss[0]:.0f} before the first protobuf scrape, {rss[1]:.0f} at the end "
        "(each target's protobuf entries kept beside its text)"
    )
    families = read_families(messages)
    text_series = sum(
        1
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "target" in sample.labels
    )
    native, with_classic = series_per_target(families, args.targets)
    print(f"protobuf body read back with the protobuf library: {len(families)} families")
    print(
        f"series per target: text {text_series / args.targets:.1f}, protobuf with native "
        f"histograms {native:.1f}, protobuf keeping the classic buckets too {with_classic:.1f}"
    )


PHASE_NAMES = ("resolve", "connect", "request", "first_byte")
PHASE_SECONDS = (1e-05, 0.0002, 0.0003, 0.001)


async def render_once(runtime: Runtime, protobuf: bool) -> tuple[float, float, int]:
    """CPU seconds of one whole exposition, the longest stretch the event loop waited for a
    turn meanwhile, and the exposition's bytes."""
    stretches: list[float] = []
    done = False

    async def turns() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            stretches.append(now - last)
            last = now

    watcher = asyncio.ensure_future(turns())
    await asyncio.sleep(0)
    cpu = time.process_time()
    size = 0
    async for piece in runtime.render_pieces(protobuf):
        size += len(piece)
    cpu = time.process_time() - cpu
    done = True
    await watcher
    return cpu, max(stretches), size


async def render_in_process(args: argparse.Namespace) -> None:
    text = lookout_config([harness.free_port() for _ in range(4)], args.targets)
    config = load_text(text, Source("scrape_cost", Path(".")), {})
    with tempfile.TemporaryDirectory() as storage:
        runtime = Runtime(Options(storage_path=Path(storage)), config, SystemClock())
        runtime.scheduler.stats = {target.name: ProbeStats(target) for target in config.targets}
        stats = list(runtime.scheduler.stats.values())
        (collector,) = [c for c in runtime.collectors if isinstance(c, ProbeCollector)]
        rng = random.Random(1)

        def probe(target: ProbeStats) -> None:
            duration = rng.uniform(0.0005, 0.004)
            observation = HttpObservation(200, "1.1", 2)
            finished = time.time()
            target.record(
                ProbeResult(
                    target.target.name,
                    True,
                    duration,
                    finished,
                    phase_names=PHASE_NAMES,
                    phase_seconds=PHASE_SECONDS,
                    observation=observation,
                )
            )
            collector.refresh(target)

        for _ in range(5):
            for target in stats:
                probe(target)
        first = await render_once(runtime, True)  # renders every target's messages
        gc.collect()
        gc.freeze()
        results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
        for n in range(args.rounds):
            start = n * 500 % len(stats)
            for target in stats[start : start + 500]:
                probe(target)
            for protobuf in (False, True):
                results[protobuf].append(await render_once(runtime, protobuf))
    rows = [[f"render (median of {args.rounds})", "protobuf", "text", "ratio", "goal"]]
    for index, label, goal in ((0, "ms CPU", "<= 1.5"), (1, "ms loop held", "<= text")):
        ours = statistics.median(r[index] for r in results[True])
        theirs = statistics.median(r[index] for r in results[False])
        rows.append(
            [label, f"{ours * 1000:.1f}", f"{theirs * 1000:.1f}", ratio(ours, theirs), goal]
        )
    worst = [max(r[1] for r in results[key]) for key in (True, False)]
    rows.append(
        [
            "ms loop held, worst",
            f"{worst[0] * 1000:.1f}",
            f"{worst[1] * 1000:.1f}",
            ratio(*worst),
            "",
        ]
    )
    sizes = [results[key][0][2] / 2**20 for key in (True, False)]
    rows.append(["MiB", f"{sizes[0]:.2f}", f"{sizes[1]:.2f}", ratio(*sizes), ""])
    print(harness.table(rows))
    print(
        f"first protobuf render (every target's messages): {first[0] * 1000:.0f} ms CPU, "
        f"loop held at most {first[1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scrape-interval", type=float, default=15)
    parser.add_argument(
        "--time-limit",
        type=float,
        help="seconds before the run gives up (default: enough for an idle machine; a loaded "
        "one, where the peer's scrapes take several times longer, needs more)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure only the rendering of both formats, in this process (module docstring)",
    )
    args = parser.parse_args()
    if args.in_process:
        print(harness.machine())
        asyncio.run(render_in_process(args))
        return
    binaries = harness.ensure_debian({"nginx": "nginx", "promtool": "prometheus"})
    print(harness.machine())
    print(harness.version_of([binaries["nginx"], "-v"]))
    limit = args.time_limit or 120 + INTERVAL + 60 + args.rounds * (args.scrape_interval + 20) + 60
    with harness.time_limit(limit), Processes() as procs:
        asyncio.run(measure(args, procs, binaries))


if __name__ == "__main__":
    main()
