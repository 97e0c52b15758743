"""Capacity: 20,000 HTTP targets every 30 s in one Lookout process, on time, none skipped.

nginx answers on several loopback ports; every target has its own name and path. After Lookout
is up, the script lets the first interval pass (every target's first run is spread over it),
then reads Lookout's own metrics at the start and the end of a measured window of whole
intervals: ``lookout_probe_runs_total`` must grow by exactly one run per target per interval,
every target must have run once per elapsed interval, and the p99 of
``lookout_scheduler_lag_seconds`` (how late probes started) must stay under 1 s.

The peer figure comes from the same run: before Lookout starts, blackbox_exporter is driven
with ``/probe`` requests at the same rate (targets / interval per second) for ``--peer-seconds``,
and the CPU of both exporters per second of that load is compared.

    python benchmarks/capacity.py [--targets 20000] [--intervals 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import harness
from harness import LOOPBACK, Processes

INTERVAL = 30.0
PORTS = 8


def lookout_config(nginx_ports: list[int], targets: int) -> str:
    lines = [f"defaults: {{interval: {INTERVAL:g}s, timeout: 5s}}", "targets:"]
    for i in range(targets):
        port = nginx_ports[i % len(nginx_ports)]
        lines.append(
            f"  - {{name: cap-{i:05d}, kind: http, url: 'http://{LOOPBACK}:{port}/c/{i}', "
            f"labels: {{service: svc-{i % 100}}}}}"
        )
    return "\n".join(lines) + "\n"


FAMILIES = (
    "lookout_probe_runs_total",
    "lookout_scheduler_lag_seconds",
    "lookout_probe_duration_seconds_count",
    "lookout_probe_failures_total",
)


async def peer_phase(
    args: argparse.Namespace, procs: Processes, binaries: dict[str, str], nginx_port: int
) -> tuple[float, float, float, int]:
    """blackbox_exporter at the same rate: (CPU cores, probes per second, MiB, failures)."""
    port = harness.free_port()
    blackbox = procs.blackbox(binaries["prometheus-blackbox-exporter"], port)
    rate = args.targets / INTERVAL
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        await harness.wait_until_up(session, f"http://{LOOPBACK}:{port}/", procs, "blackbox")
        driver = harness.BlackboxDriver(
            session, f"http://{LOOPBACK}:{port}/probe", rate, f"http://{LOOPBACK}:{nginx_port}"
        )
        driving = asyncio.create_task(driver.run())
        try:
            await asyncio.sleep(3)
            cpu, done, started = harness.cpu_seconds(blackbox), driver.done, time.monotonic()
            await asyncio.sleep(args.peer_seconds)
            elapsed = time.monotonic() - started
            cores = (harness.cpu_seconds(blackbox) - cpu) / elapsed
            achieved = (driver.done - done) / elapsed
        finally:
            driving.cancel()
        rss = harness.rss_mib(blackbox)
    blackbox.terminate()
    return cores, achieved, rss, driver.failed


async def measure(args: argparse.Namespace, procs: Processes, binaries: dict[str, str]) -> None:
    nginx_ports = [harness.free_port() for _ in range(PORTS)]
    procs.nginx(binaries["nginx"], nginx_ports)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await harness.wait_until_up(session, f"http://{LOOPBACK}:{nginx_ports[0]}/", procs, "nginx")
    rate = args.targets / INTERVAL
    print(f"blackbox_exporter driven at {rate:.0f} probes/s for {args.peer_seconds:g} s")
    peer_cores, peer_rate, peer_rss, peer_failed = await peer_phase(
        args, procs, binaries, nginx_ports[0]
    )
    port = harness.free_port()
    started = time.monotonic()
    lookout = procs.lookout(lookout_config(nginx_ports, args.targets), port)
    url = f"http://{LOOPBACK}:{port}/metrics"
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await harness.wait_until_up(session, url, procs, "lookout", patience=180)
        up = time.monotonic()
        print(f"Lookout up with {args.targets} targets after {up - started:.1f} s")
        await asyncio.sleep(INTERVAL + 2)
        window_start, first = await harness.fetch_samples(session, url, FAMILIES)
        cpu = harness.cpu_seconds(lookout)
        print(f"first interval done; measuring {args.intervals} intervals", flush=True)
        await asyncio.sleep(args.intervals * INTERVAL - (time.monotonic() - window_start))
        window_end, last = await harness.fetch_samples(session, url, FAMILIES)
        cores = (harness.cpu_seconds(lookout) - cpu) / (time.monotonic() - window_start)
        rss = harness.rss_mib(lookout)
    window = window_end - window_start
    since_up = window_end - up
    runs = harness.total(last, "lookout_probe_runs_total") - harness.total(
        first, "lookout_probe_runs_total"
    )
    expected = args.targets * window / INTERVAL
    per_target = [
        v for (name, _labels), v in last.items() if name == "lookout_probe_duration_seconds_count"
    ]
    failures = harness.total(last, "lookout_probe_failures_total")
    p99 = harness.bucket_quantile(last, "lookout_scheduler_lag_seconds", 0.99)
    lag_count = harness.total(last, "lookout_scheduler_lag_seconds_count")
    lag_sum = harness.total(last, "lookout_scheduler_lag_seconds_sum")
    rows = [
        ["figure", "Lookout", "blackbox_exporter", "ratio", "goal"],
        ["targets", f"{args.targets}", "", "", ">= 20,000"],
        [
            "probes per second",
            f"{runs / window:.0f}",
            f"{peer_rate:.0f}",
            "",
            f"{rate:.0f}",
        ],
        [
            "runs in window / expected",
            f"{runs:.0f} / {expected:.0f}",
            "",
            "",
            "equal (+-1%)",
        ],
        [
            "fewest runs of one target",
            f"{min(per_target):.0f} (needs {since_up // INTERVAL:.0f})",
            "",
            "",
            "none skipped",
        ],
        ["scheduler lag p99", f"<= {p99:g} s", "", "", "< 1 s"],
        ["scheduler lag mean", f"{1000 * lag_sum / lag_count:.1f} ms", "", "", ""],
        ["failed probes", f"{failures:.0f}", f"{peer_failed}", "", "0"],
        ["CPU cores used", f"{cores:.2f}", f"{peer_cores:.2f}", f"{cores / peer_cores:.2f}", ""],
        ["resident MiB", f"{rss:.0f}", f"{peer_rss:.0f}", f"{rss / peer_rss:.2f}", ""],
    ]
    print(harness.table(rows))
    if len(per_target) != args.targets:
        print(f"warning: {len(per_target)} targets exposed, {args.targets} configured")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20_000)
    parser.add_argument("--intervals", type=int, default=2, help="measured intervals")
    parser.add_argument("--peer-seconds", type=float, default=20)
    args = parser.parse_args()
    binaries = harness.blackbox_and_nginx()
    limit = args.peer_seconds + 60 + 180 + (args.intervals + 1) * INTERVAL + 60
    with harness.time_limit(limit), Processes() as procs:
        asyncio.run(measure(args, procs, binaries))


if __name__ == "__main__":
    main()
