"""Shared plumbing of the benchmark scripts: Debian peers, loopback processes, CPU and memory.

Every process a benchmark starts goes through ``Processes``, which kills its whole process group
on exit, on error, on Ctrl-C and on the run's time limit. Every address is 127.0.0.1; every
config file lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
# Scripts that run the exporter in their own process import it from this checkout, also when the
# interpreter has another checkout installed in editable mode: its finder would resolve
# ``exporter`` to that one, and a script of an older tree would measure the newer code.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
LOOPBACK = "127.0.0.1"


class RunTimeout(Exception):
    """The benchmark exceeded its time limit."""


def ensure_debian(binaries: dict[str, str]) -> dict[str, str]:
    """Path of each binary, installing its Debian package (``{binary: package}``) when missing."""
    missing = sorted({pkg for name, pkg in binaries.items() if _which(name) is None})
    if missing:
        print(f"installing Debian packages: {' '.join(missing)}", flush=True)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        install = [
            *sudo,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "DPkg::Lock::Timeout=600",
            *missing,
        ]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    paths = {}
    for name in binaries:
        path = _which(name)
        if path is None:
            raise SystemExit(f"{name} is still missing after installing {binaries[name]}")
        paths[name] = path
    return paths


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``RunTimeout`` in the main thread once ``seconds`` have passed (SIGALRM)."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise RunTimeout(f"benchmark exceeded its {seconds:.0f} s limit")

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit("terminated")

    previous = signal.signal(signal.SIGALRM, expire)
    previous_term = signal.signal(signal.SIGTERM, terminate)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGTERM, previous_term)


class Processes:
    """Starts processes in their own process groups and kills every one of them on exit."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="lookout-bench-"))

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in reversed(self._started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._started):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> psutil.Process:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._started.append(proc)
        return psutil.Process(proc.pid)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def nginx(self, binary: str, ports: Sequence[int]) -> psutil.Process:
        """nginx (one worker, no logs) answering ``ok`` on every path on each loopback port."""
        root = self.tmp / "nginx"
        root.mkdir()
        listens = "\n".join(f"    listen {LOOPBACK}:{port} backlog=4096;" for port in ports)
        temp_paths = "\n".join(
            f"  {kind}_temp_path {root}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (root / "nginx.conf").write_text(
            f"""worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  default_type text/plain;
{temp_paths}
  server {{
{listens}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
        )
        return self.start(
            "nginx",
            [binary, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", f"{root}/error.log"],
        )

    def blackbox(self, binary: str, port: int) -> psutil.Process:
        """blackbox_exporter with one ``http_2xx`` module (IPv4, 5 s timeout)."""
        config = self.tmp / "blackbox.yml"
        config.write_text(
            "modules:\n"
            "  http_2xx:\n"
            "    prober: http\n"
            "    timeout: 5s\n"
            "    http:\n"
            "      preferred_ip_protocol: ip4\n"
        )
        return self.start(
            "blackbox",
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn",
            ],
        )

    def lookout(
        self, config_text: str, port: int, flags: Sequence[str] = (), tree: Path = REPO
    ) -> psutil.Process:
        """The exporter of ``tree`` (this checkout unless told), run by the current interpreter,
        with ``config_text``."""
        config = self.tmp / "lookout.yml"
        config.write_text(config_text)
        argv = [sys.executable, "-m", "exporter", "run", "--config", str(config)]
        argv += ["--web.listen-address", f"{LOOPBACK}:{port}", "--log.level", "warning", *flags]
        return self.start("lookout", argv, cwd=tree)


async def wait_until_up(
    session: aiohttp.ClientSession, url: str, procs: Processes, name: str, patience: float = 60
) -> None:
    """Poll ``url`` until it answers 200; fail with the process's log after ``patience`` s."""
    give_up = time.monotonic() + patience
    while time.monotonic() < give_up:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise SystemExit(f"{name} did not answer {url} within {patience} s:\n{procs.log_tail(name)}")


def wait_until_up_blocking(url: str, procs: Processes, name: str, patience: float = 60) -> None:
    """``wait_until_up`` for a script that runs no event loop of its own."""

    async def poll() -> None:
        async with aiohttp.ClientSession() as session:
            await wait_until_up(session, url, procs, name, patience)

    asyncio.run(poll())


@dataclass
class BlackboxDriver:
    """Sends ``/probe`` requests to blackbox_exporter at a fixed rate and counts the answers."""

    session: aiohttp.ClientSession
    url: str
    rate: float
    target_base: str
    done: int = 0
    failed: int = 0

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        try:
            while True:
                due = start + sent / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(self._one(sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
        finally:
            for task in tasks:
                task.cancel()

    async def _one(self, n: int) -> None:
        params = {"module": "http_2xx", "target": f"{self.target_base}/b{n % 1000}"}
        try:
            async with self.session.get(self.url, params=params) as response:
                body = await response.text()
        except aiohttp.ClientError:
            self.failed += 1
            return
        if "\nprobe_success 1\n" in body:
            self.done += 1
        else:
            self.failed += 1


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def rss_mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition as ``{(name, sorted labels): value}``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def fetch_samples(
    session: aiohttp.ClientSession, url: str, families: Sequence[str]
) -> tuple[float, Samples]:
    """Scrape ``url``; returns when the scrape was asked for and the samples of ``families``.

    Lookout writes its own counters at the start of a scrape and then streams the probe
    families for up to a second, so the time of asking is the time the counters were read.
    Only the lines of ``families`` are parsed: parsing all of a 20,000-target exposition would
    keep this process busy for seconds, on the same two cores as the exporter.
    """
    asked = time.monotonic()
    async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        text = await response.text()
    prefixes = tuple(families)
    kept = [
        line
        for line in text.splitlines()
        if line.startswith(prefixes)
        or (line.startswith(("# HELP", "# TYPE")) and line.split(" ", 3)[2].startswith(prefixes))
    ]
    return asked, samples("\n".join(kept) + "\n")


def total(values: Samples, name: str) -> float:
    return sum(v for (n, _labels), v in values.items() if n == name)


def bucket_quantile(values: Samples, name: str, q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of histogram ``name`` (unlabelled)."""
    buckets = sorted(
        (float(dict(labels)["le"]), v) for (n, labels), v in values.items() if n == f"{name}_bucket"
    )
    count = buckets[-1][1]
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound
    return float("inf")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def blackbox_and_nginx() -> dict[str, str]:
    """Install blackbox_exporter and nginx when missing; print the machine and their versions."""
    binaries = ensure_debian(
        {"nginx": "nginx", "prometheus-blackbox-exporter": "prometheus-blackbox-exporter"}
    )
    print(machine())
    print(version_of([binaries["prometheus-blackbox-exporter"], "--version"]))
    print(version_of([binaries["nginx"], "-v"]))
    return binaries


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} x {cpu_model()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def version_of(argv: Sequence[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def table(rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# The probe interval of the 10,000-target benchmarks (scrape_cost, memory_breakdown, status_page).
INTERVAL = 30.0


def trees(before: Path | None) -> dict[str, Path]:
    """The checkouts a script measures by name: this one, or ``before`` and then this one."""
    if before is None:
        return {"this tree": REPO}
    return {"before": before.resolve(), "after": REPO}


def lookout_config(nginx_ports: list[int], targets: int) -> str:
    """The 10,000-target benchmarks' config: http targets spread over the nginx ports, each with
    two labels and an SLO."""
    lines = [
        f"defaults: {{interval: {INTERVAL:g}s, timeout: 5s}}",
        "scheduler: {max_in_flight: 256}",
        "targets:",
    ]
    for i in range(targets):
        port = nginx_ports[i % len(nginx_ports)]
        lines.append(
            f"  - {{name: api-{i:05d}, kind: http, url: 'http://{LOOPBACK}:{port}/health/{i}', "
            f"labels: {{service: svc-{i % 200}, team: team-{i % 17}}}, "
            "slo: {availability: 99.9, latency: {threshold: 250ms, objective: 99}}}"
        )
    return "\n".join(lines) + "\n"
