"""CPU and wall time per ``/metrics`` scrape: Lookout with host metrics vs Debian's node_exporter.

Run from the repository root (about a minute; every process it starts is stopped at the end)::

    .venv/bin/python benchmarks/host_scrape.py

It installs ``prometheus-node-exporter`` with apt-get when missing, then measures, one server at
a time on a free loopback port:

- Lookout with only host metrics (no targets), and with ``host: {enabled: false}`` as baseline;
- node_exporter with its default collectors, and with only the collectors that produce what
  Lookout's host metrics cover (cpu, loadavg, stat, meminfo, pressure, filesystem, diskstats,
  netdev, filefd).

Each server gets warm-up scrapes, then ``--scrapes`` back-to-back scrapes over one keep-alive
connection, once with ``Accept-Encoding: gzip`` (as Prometheus asks) and once without. The
server's CPU time (user + system, all threads, from /proc) over those scrapes divided by their
number is its CPU per scrape; the client's mean round trip is the wall time per scrape.

Lookout reads the host in a background refresh, not during the scrape, so the cost of one
refresh is measured separately (``HostCollector.refresh`` run in this process, the exact code
the exporter's refresher thread runs) and added to the scrape cost for a 15 s scrape interval
with the default 5 s refresh interval (three refreshes per scrape).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import shutil
import socket
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
sys.path.insert(0, str(ROOT))

from exporter.collectors.host import HostCollector  # noqa: E402

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
SCRAPE_INTERVAL = 15.0
REFRESH_INTERVAL = 5.0
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
        try:
            get(http.client.HTTPConnection("127.0.0.1", port, timeout=5), gzip=False)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{proc.args!r} did not answer in {START_TIMEOUT:g}s") from None
            time.sleep(0.05)


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


def refresh_cost(rounds: int) -> tuple[float, float]:
    """CPU and wall milliseconds of one ``HostCollector.refresh`` on this machine."""
    collector = HostCollector()
    collector.refresh()
    cpu_before = time.process_time()
    started = time.perf_counter()
    for _ in range(rounds):
        collector.refresh()
    wall = (time.perf_counter() - started) / rounds
    cpu = (time.process_time() - cpu_before) / rounds
    return cpu * 1000, wall * 1000


def node_version(path: str) -> str:
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    return (out.stdout or out.stderr).splitlines()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scrapes", type=int, default=300, help="measured scrapes per server")
    args = parser.parse_args()
    node = ensure_node_exporter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, host in (
            ("Lookout, host metrics on", "{}"),
            ("Lookout, host off", "{enabled: false}"),
        ):
            cfg = Path(tmp) / "lookout.yml"
            cfg.write_text(f"targets: []\nhost: {host}\n")
            port = free_port()
            command = [
                sys.executable,
                "-m",
                "exporter",
                "run",
                "--config",
                str(cfg),
                "--web.listen-address",
                f"127.0.0.1:{port}",
                "--log.level",
                "warning",
            ]
            results.append(measure(name, command, port, args.scrapes))
    for name, collectors in (
        ("node_exporter, default collectors", ()),
        ("node_exporter, host-equivalent collectors", NODE_HOST_COLLECTORS),
    ):
        port = free_port()
        command = [node, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        if collectors:
            command += ["--collector.disable-defaults", *(f"--collector.{c}" for c in collectors)]
        results.append(measure(name, command, port, args.scrapes))
    refresh_cpu, refresh_wall = refresh_cost(200)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {cpu_model()}, Linux {platform.release()}"
    )
    print(f"Python {platform.python_version()}, psutil {psutil.__version__}, {node_version(node)}")
    print(f"{args.scrapes} scrapes per server and encoding, one keep-alive connection\n")
    print(
        "| server | series | CPU ms/scrape (gzip) | wall ms/scrape (gzip) | CPU ms/scrape (plain) | wall ms/scrape (plain) | CPU µs/series (gzip) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        per_series = r.cpu_gzip_ms * 1000 / r.series
        print(
            f"| {r.name} | {r.series} | {r.cpu_gzip_ms:.2f} | {r.wall_gzip_ms:.2f} | "
            f"{r.cpu_plain_ms:.2f} | {r.wall_plain_ms:.2f} | {per_series:.1f} |"
        )
    on, off, node_default, node_host = results
    per_scrape = REFRESH_INTERVAL and SCRAPE_INTERVAL / REFRESH_INTERVAL
    amortized = on.cpu_gzip_ms + per_scrape * refresh_cpu
    print(
        f"\nLookout background refresh: {refresh_cpu:.2f} ms CPU, {refresh_wall:.2f} ms wall each"
    )
    print(
        f"Lookout per {SCRAPE_INTERVAL:g}s scrape interval with the default {REFRESH_INTERVAL:g}s "
        f"refresh: {on.cpu_gzip_ms:.2f} + {per_scrape:g} x {refresh_cpu:.2f} = {amortized:.2f} ms CPU"
    )
    host_series = on.series - off.series
    for peer in (node_default, node_host):
        ratio = (amortized / on.series) / (peer.cpu_gzip_ms / peer.series)
        print(
            f"vs {peer.name}: {peer.cpu_gzip_ms:.2f} ms CPU per scrape; Lookout/peer "
            f"{amortized / peer.cpu_gzip_ms:.2f}x per scrape, {ratio:.2f}x per exported series"
        )
    print(f"host series in Lookout's exposition: {host_series}")
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
