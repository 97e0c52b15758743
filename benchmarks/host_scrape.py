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
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

ROOT = Path(__file__).resolve().parent.parent
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
START_TIMEOUT = 15.0
HEADERS = {"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    series: int
    cpu_gzip_ms: float
    wall_gzip_ms: float
    cpu_plain_ms: float
    wall_plain_ms: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_node_exporter() -> str:
    path = shutil.which(NODE_EXPORTER)
    if path:
        return path
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"installing {NODE_EXPORTER} with apt-get", flush=True)
    install = [
        *sudo,
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=600",
        NODE_EXPORTER,
    ]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, timeout=900, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, timeout=900, check=True)
        subprocess.run(install, env=env, timeout=900, check=True)
    path = shutil.which(NODE_EXPORTER)
    if path is None:
        raise SystemExit(f"{NODE_EXPORTER} is still not on PATH after apt-get install")
    return path


@contextmanager
def server(command: Sequence[str], port: int) -> Iterator[psutil.Process]:
    """Start ``command``, wait until /metrics answers on ``port``, stop it afterwards."""
    # A file, not a pipe: node_exporter logs a line per scrape here and would block on a full pipe.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_until_serving(proc, log, port)
            yield psutil.Process(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_until_serving(proc: subprocess.Popen[bytes], log: IO[str], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{proc.args!r} exited at start:\n{log.read()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            get(conn, gzip=False)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{proc.args!r} did not answer in {START_TIMEOUT:g}s") from None
            time.sleep(0.05)
        finally:
            conn.close()


def get(conn: http.client.HTTPConnection, gzip: bool) -> bytes:
    headers = dict(HEADERS, **({"Accept-Encoding": "gzip"} if gzip else {}))
    conn.request("GET", "/metrics", headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"/metrics answered {response.status}")
    return body


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(name: str, command: Sequence[str], port: int, scrapes: int) -> Result:
    with server(command, port) as process:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            plain = get(conn, gzip=False).decode()
            series = sum(1 for line in plain.splitlines() if line and not line.startswith("#"))
            figures: dict[bool, tuple[float, float]] = {}
            for gzip in (True, False):
                for _ in range(20):
                    get(conn, gzip)
                cpu_before = cpu_seconds(process)
                started = time.perf_counter()
                for _ in range(scrapes):
                    get(conn, gzip)
                wall = (time.perf_counter() - started) / scrapes
                cpu = (cpu_seconds(process) - cpu_before) / scrapes
                figures[gzip] = (cpu * 1000, wall * 1000)
        finally:
            conn.close()
    return Result(name, series, *figures[True], *figures[False])


def node_version(path: str) -> str:
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    return (out.stdout or out.stderr).splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scrapes", type=int, default=300, help="measured scrapes per server")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    args = parser.parse_args()
    node = ensure_node_exporter()
    with tempfile.TemporaryDirectory() as tmp:
        servers = [*lookout_servers(Path(tmp)), *node_servers(node)]
        rounds: dict[str, list[Result]] = {name: [] for name, _ in servers}
        for _ in range(args.rounds):  # interleaved, so that a busy moment hits every server
            for name, command in servers:
                port = free_port()
                argv = [arg.format(port=port) for arg in command]
                rounds[name].append(measure(name, argv, port, args.scrapes))
    report([median(results) for results in rounds.values()], args, node)
    return 0


def lookout_servers(tmp: Path) -> list[tuple[str, list[str]]]:
    out = []
    for name, host in (
        ("Lookout, host metrics on", "{max_age: 0s}"),
        ("Lookout, host off", "{enabled: false}"),
    ):
        path = tmp / f"{len(out)}.yml"
        path.write_text(f"targets: []\nhost: {host}\n")
        run = [sys.executable, "-m", "exporter", "run", "--config", str(path)]
        out.append(
            (name, [*run, "--web.listen-address", "127.0.0.1:{port}", "--log.level", "warning"])
        )
    return out


def node_servers(node: str) -> list[tuple[str, list[str]]]:
    base = [node, "--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    only = ["--collector.disable-defaults", *(f"--collector.{c}" for c in NODE_HOST_COLLECTORS)]
    return [
        ("node_exporter, default collectors", base),
        ("node_exporter, host-equivalent collectors", [*base, *only]),
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
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"Linux {platform.release()}, Python {platform.python_version()}, ", end="")
    print(f"psutil {psutil.__version__}, {node_version(node)}")
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


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
