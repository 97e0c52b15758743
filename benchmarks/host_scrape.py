"""CPU and wall time per ``/metrics`` scrape: Lookout with host metrics vs Debian's node_exporter.

Run from the repository root (under a minute with the defaults; every process it starts is
stopped at the end, also on Ctrl-C)::

    .venv/bin/python benchmarks/host_scrape.py

It installs ``prometheus-node-exporter`` with apt-get when missing (on a machine with systemd the
package also enables its own service on port 9100, which the benchmark neither uses nor stops),
then measures, one server at a time on a free loopback port started with explicit flags:

- Lookout with only host metrics (no targets), and with ``host: {enabled: false}`` as baseline;
- node_exporter with its default collectors, and with only the collectors that produce what
  Lookout's host metrics cover (cpu, loadavg, stat, meminfo, pressure, filesystem, diskstats,
  netdev, filefd).

Each server gets warm-up scrapes, then ``--scrapes`` back-to-back scrapes over one keep-alive
connection, once with ``Accept-Encoding: gzip`` (as Prometheus asks) and once without. The
server's CPU time (user + system, all threads, from /proc) over those scrapes divided by their
number is its CPU per scrape; the client's mean round trip is the wall time per scrape.

Lookout runs with ``host.max_age: 0s`` so that every scrape reads the host, as every
node_exporter scrape does (the default 1s would serve most back-to-back scrapes from the
cache and flatter the figures).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import harness
import psutil
from harness import LOOPBACK, Processes

NODE_EXPORTER = "prometheus-node-exporter"
NODE_HOST_COLLECTORS = (
    "cpu",
    "loadavg",
    "stat",
    "meminfo",
    "pressure",
    "filesystem",
    "diskstats",
    "netdev",
    "filefd",
)
HEADERS = {"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}

# Starts one server, in the given Processes, on the given loopback port.
Start = Callable[[Processes, int], psutil.Process]


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    log: str
    start: Start


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    series: int
    cpu_gzip_ms: float
    wall_gzip_ms: float
    cpu_plain_ms: float
    wall_plain_ms: float


def get(conn: http.client.HTTPConnection, gzip: bool) -> bytes:
    headers = dict(HEADERS, **({"Accept-Encoding": "gzip"} if gzip else {}))
    conn.request("GET", "/metrics", headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"/metrics answered {response.status}")
    return body


def measure(server: Server, scrapes: int) -> Result:
    with Processes() as procs:
        port = harness.free_port()
        process = server.start(procs, port)
        harness.wait_until_up_blocking(f"http://{LOOPBACK}:{port}/metrics", procs, server.log)
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            plain = get(conn, gzip=False).decode()
            series = sum(1 for line in plain.splitlines() if line and not line.startswith("#"))
            figures: dict[bool, tuple[float, float]] = {}
            for gzip in (True, False):
                for _ in range(20):
                    get(conn, gzip)
                cpu_before = harness.cpu_seconds(process)
                started = time.perf_counter()
                for _ in range(scrapes):
                    get(conn, gzip)
                wall = (time.perf_counter() - started) / scrapes
                cpu = (harness.cpu_seconds(process) - cpu_before) / scrapes
                figures[gzip] = (cpu * 1000, wall * 1000)
        finally:
            conn.close()
    return Result(server.name, series, *figures[True], *figures[False])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scrapes", type=int, default=300, help="measured scrapes per server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    args = parser.parse_args()
    node = harness.ensure_debian({NODE_EXPORTER: NODE_EXPORTER})[NODE_EXPORTER]
    servers = [*lookout_servers(), *node_servers(node)]
    rounds: dict[str, list[Result]] = {server.name: [] for server in servers}
    # Start-up, warm-up and 2 x ``--scrapes`` scrapes per server, with plenty of room.
    limit = 120 + args.rounds * len(servers) * (60 + 2 * args.scrapes * 0.05)
    with harness.time_limit(limit):
        for _ in range(args.rounds):  # interleaved, so that a busy moment hits every server
            for server in servers:
                rounds[server.name].append(measure(server, args.scrapes))
    report([median(results) for results in rounds.values()], args, node)
    return 0


def lookout_servers() -> list[Server]:
    def lookout(host: str) -> Start:
        return lambda procs, port: procs.lookout(f"targets: []\nhost: {host}\n", port)

    return [
        Server("Lookout, host metrics on", "lookout", lookout("{max_age: 0s}")),
        Server("Lookout, host off", "lookout", lookout("{enabled: false}")),
    ]


def node_servers(node: str) -> list[Server]:
    def node_exporter(*flags: str) -> Start:
        argv = [node, "--log.level=warn", *flags]
        return lambda procs, port: procs.start(
            "node_exporter", [*argv, f"--web.listen-address={LOOPBACK}:{port}"]
        )

    only = ["--collector.disable-defaults", *(f"--collector.{c}" for c in NODE_HOST_COLLECTORS)]
    return [
        Server("node_exporter, default collectors", "node_exporter", node_exporter()),
        Server("node_exporter, host-equivalent collectors", "node_exporter", node_exporter(*only)),
    ]


def median(results: list[Result]) -> Result:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    return Result(
        results[0].name,
        results[0].series,
        mid([r.cpu_gzip_ms for r in results]),
        mid([r.wall_gzip_ms for r in results]),
        mid([r.cpu_plain_ms for r in results]),
        mid([r.wall_plain_ms for r in results]),
    )


def report(results: list[Result], args: argparse.Namespace, node: str) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {harness.cpu_model()}")
    print(f"Linux {platform.release()}, Python {platform.python_version()}, ", end="")
    print(f"psutil {psutil.__version__}, {harness.version_of([node, '--version'])}")
    print(
        f"median of {args.rounds} rounds of {args.scrapes} scrapes per server and encoding, "
        "one keep-alive connection\n"
    )
    print(
        "| server | series | CPU ms/scrape gzip | wall ms/scrape gzip "
        "| CPU ms/scrape plain | wall ms/scrape plain | CPU µs/series gzip |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.series} | {r.cpu_gzip_ms:.2f} | {r.wall_gzip_ms:.2f} | "
            f"{r.cpu_plain_ms:.2f} | {r.wall_plain_ms:.2f} | "
            f"{r.cpu_gzip_ms * 1000 / r.series:.1f} |"
        )
    on, off, *peers = results
    print(f"\nhost series in Lookout's exposition: {on.series - off.series}")
    for peer in peers:
        per_series = (on.cpu_gzip_ms / on.series) / (peer.cpu_gzip_ms / peer.series)
        print(
            f"Lookout / {peer.name}: {on.cpu_gzip_ms / peer.cpu_gzip_ms:.2f}x CPU per scrape, "
            f"{per_series:.2f}x CPU per exported series"
        )


if __name__ == "__main__":
    raise SystemExit(main())
