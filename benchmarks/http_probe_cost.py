"""CPU cost of an HTTP probe: Lookout versus blackbox_exporter, side by side, same rate.

Both probe the same local nginx with a fresh connection per probe, at the same steady rate and at
the same time, so other load on the machine hits both alike. Lookout runs its own schedule
(``--rate`` x 30 targets every 30 s, the default interval); blackbox_exporter is driven by this
script with ``/probe`` requests at that rate, as Prometheus would. Lookout is scraped (gzip) at
every round boundary, every 15 s by default, as Prometheus would, and that scrape is part of
its cost, as answering ``/probe`` is part of blackbox_exporter's. The figure is the CPU time
(user + system, read from /proc) of each exporter process per 1,000 probes, per round and over
the whole run. The driver's own CPU is not counted.

    python benchmarks/http_probe_cost.py [--rate 200] [--rounds 4] [--round-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import harness
import psutil
from harness import LOOPBACK, Processes

# The default interval; first runs are spread over it, so the rate is steady from the start.
INTERVAL = 30.0


async def lookout_runs(session: aiohttp.ClientSession, url: str) -> float:
    _at, values = await harness.fetch_samples(session, url, ["lookout_probe_runs_total"])
    return harness.total(values, "lookout_probe_runs_total")


def lookout_config(nginx_port: int, targets: int) -> str:
    lines = [f"defaults: {{interval: {INTERVAL:g}s, timeout: 1s}}", "targets:"]
    lines += [
        f"  - {{name: probe-{i:05d}, kind: http, url: 'http://{LOOPBACK}:{nginx_port}/t{i}'}}"
        for i in range(targets)
    ]
    return "\n".join(lines) + "\n"


async def measure(args: argparse.Namespace, procs: Processes, binaries: dict[str, str]) -> None:
    nginx_port, blackbox_port, lookout_port = (harness.free_port() for _ in range(3))
    targets = round(args.rate * INTERVAL)
    procs.nginx(binaries["nginx"], [nginx_port])
    blackbox = procs.blackbox(binaries["prometheus-blackbox-exporter"], blackbox_port)
    lookout = procs.lookout(lookout_config(nginx_port, targets), lookout_port)
    metrics_url = f"http://{LOOPBACK}:{lookout_port}/metrics"
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await harness.wait_until_up(session, f"http://{LOOPBACK}:{nginx_port}/", procs, "nginx")
        await harness.wait_until_up(
            session, f"http://{LOOPBACK}:{blackbox_port}/", procs, "blackbox"
        )
        await harness.wait_until_up(session, metrics_url, procs, "lookout")
        driver = harness.BlackboxDriver(
            session,
            f"http://{LOOPBACK}:{blackbox_port}/probe",
            args.rate,
            f"http://{LOOPBACK}:{nginx_port}",
        )
        driving = asyncio.create_task(driver.run())
        try:
            print(f"warming up {args.warmup:g} s ({targets} Lookout targets every {INTERVAL:g} s)")
            await asyncio.sleep(args.warmup)
            rows = [["round", "Lookout ms/probe", "blackbox ms/probe", "ratio", "probes L / B"]]
            totals = [0.0, 0.0, 0.0, 0.0]
            for n in range(1, args.rounds + 1):
                before = await _reading(session, metrics_url, lookout, blackbox, driver)
                await asyncio.sleep(args.round_seconds)
                after = await _reading(session, metrics_url, lookout, blackbox, driver)
                delta = [a - b for a, b in zip(after, before, strict=True)]
                totals = [t + d for t, d in zip(totals, delta, strict=True)]
                rows.append(_row(str(n), delta))
            rows.append(_row("all", totals))
        finally:
            driving.cancel()
        if driver.failed:
            print(f"warning: {driver.failed} blackbox probes failed")
    print(harness.table(rows))
    lookout_ms, blackbox_ms = (1000 * totals[0] / totals[2], 1000 * totals[1] / totals[3])
    print(
        f"\nCPU seconds per 1,000 probes: Lookout {lookout_ms:.3f}, "
        f"blackbox_exporter {blackbox_ms:.3f}, ratio {lookout_ms / blackbox_ms:.2f} "
        f"(goal <= 0.50)"
    )
    print(
        f"resident memory: Lookout {harness.rss_mib(lookout):.0f} MiB, "
        f"blackbox_exporter {harness.rss_mib(blackbox):.0f} MiB"
    )


async def _reading(
    session: aiohttp.ClientSession,
    metrics_url: str,
    lookout: psutil.Process,
    blackbox: psutil.Process,
    driver: harness.BlackboxDriver,
) -> list[float]:
    runs = await lookout_runs(session, metrics_url)
    return [harness.cpu_seconds(lookout), harness.cpu_seconds(blackbox), runs, driver.done]


def _row(label: str, delta: list[float]) -> list[str]:
    lookout_cpu, blackbox_cpu, lookout_probes, blackbox_probes = delta
    lookout_ms = 1000 * lookout_cpu / lookout_probes
    blackbox_ms = 1000 * blackbox_cpu / blackbox_probes
    return [
        label,
        f"{lookout_ms:.3f}",
        f"{blackbox_ms:.3f}",
        f"{lookout_ms / blackbox_ms:.2f}",
        f"{lookout_probes:.0f} / {blackbox_probes:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="probes per second, each side")
    parser.add_argument("--warmup", type=float, default=8, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--round-seconds", type=float, default=15)
    args = parser.parse_args()
    binaries = harness.blackbox_and_nginx()
    limit = args.warmup + args.rounds * (args.round_seconds + 5) + 120
    with harness.time_limit(limit), Processes() as procs:
        asyncio.run(measure(args, procs, binaries))


if __name__ == "__main__":
    main()
