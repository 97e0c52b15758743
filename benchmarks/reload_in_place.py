"""A reload that changes 10,000 targets in place: resident memory and scrape CPU after it.

The exporter probes the 10,000 HTTP targets of ``scrape_cost.py`` (a local nginx, every 30 s).
Once every target has a result, the script rewrites the config with every interval at 1 h (the
same names and series: each target is changed in place, and probing stops for the hour) and
reloads it with SIGHUP. Then, with nothing but the scrapes running, it reads the exporter's
resident memory and CPU over ``--rounds`` windows of ``--scrapes`` scrapes by ``curl`` (plain,
or gzip with ``--gzip``), each window followed by as long a window without scrapes, whose CPU is
subtracted: the first window holds whatever the reload left for the scrapes to do.

With ``--before DIR`` (another checkout of the repository), that tree's exporter runs beside
this one's (each with its own nginx and the current interpreter), and their windows take turns,
round after round: run one after the other, a tree's windows moved with the machine's speed by
more than the trees differed. The ratio printed is the median of the per-round ratios, leaving
out the first round.

    python benchmarks/reload_in_place.py [--before DIR] [--gzip] [--rounds 3] [--scrapes 25]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

import harness
from harness import INTERVAL, LOOPBACK, Processes, lookout_config

TARGETS = 10_000
GAP = 0.2  # seconds between two scrapes of a window


def probed(url: str) -> int:
    """The targets with a result, by their ``lookout_probe_success`` samples."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return int(response.read().count(b"\nlookout_probe_success{"))


class Quiet:
    """One tree's exporter, its targets probed once and then reloaded with every interval at
    1 h, ready to be scraped in windows."""

    def __init__(self, procs: Processes, tree: Path, nginx: str, curl: str, gzip: bool) -> None:
        ports = [harness.free_port() for _ in range(4)]
        procs.nginx(nginx, ports)
        port = harness.free_port()
        self.procs = procs
        self.text = lookout_config(ports, TARGETS)
        self.lookout = procs.lookout(self.text, port, tree=tree)
        self.url = f"http://{LOOPBACK}:{port}/metrics"
        harness.wait_until_up_blocking(
            f"http://{LOOPBACK}:{port}/-/healthy", procs, "lookout", patience=120
        )
        self.command = [curl, "-sf", "-o", os.devnull, self.url]
        if gzip:
            self.command[1:1] = ["-H", "Accept-Encoding: gzip"]

    def reload_quiet(self, give_up: float) -> None:
        """Once every target has a result: every interval at 1 h, reloaded in place."""
        while probed(self.url) < TARGETS:
            if time.monotonic() > give_up:
                raise SystemExit("not every target probed in time")
            time.sleep(2)
        (self.procs.tmp / "lookout.yml").write_text(
            self.text.replace(f"interval: {INTERVAL:g}s", "interval: 1h")
        )
        os.kill(self.lookout.pid, signal.SIGHUP)

    def window(self, scrapes: int) -> tuple[float, float]:
        """CPU ms per scrape over ``scrapes`` scrapes (the quiet CPU of as long a window
        after them subtracted) and resident MiB after them."""
        lookout = self.lookout
        cpu, started = harness.cpu_seconds(lookout), time.monotonic()
        for _ in range(scrapes):
            subprocess.run(self.command, check=True, timeout=60)
            time.sleep(GAP)
        busy, length = harness.cpu_seconds(lookout) - cpu, time.monotonic() - started
        cpu, started = harness.cpu_seconds(lookout), time.monotonic()
        time.sleep(length)
        quiet = (harness.cpu_seconds(lookout) - cpu) / (time.monotonic() - started)
        return (busy - quiet * length) / scrapes * 1000, harness.rss_mib(lookout)


def after_reload(
    trees: dict[str, Path], rounds: int, scrapes: int, gzip: bool
) -> dict[str, list[tuple[float, float]]]:
    """Per tree and window: exporter CPU ms per scrape and resident MiB; the trees' windows
    take turns, round after round."""
    binaries = harness.ensure_debian({"nginx": "nginx"})
    curl = shutil.which("curl") or "curl"
    with contextlib.ExitStack() as stack:
        exporters = {
            name: Quiet(stack.enter_context(Processes()), tree, binaries["nginx"], curl, gzip)
            for name, tree in trees.items()
        }
        give_up = time.monotonic() + INTERVAL + 120
        for exporter in exporters.values():
            exporter.reload_quiet(give_up)
        time.sleep(5)  # the reloads' load, plan and swap
        windows: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(rounds):
            for name, exporter in exporters.items():
                windows[name].append(exporter.window(scrapes))
            print("  " + "  ".join(f"{w[-1][0]:6.1f}" for w in windows.values()), flush=True)
        return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout, run beside this one")
    parser.add_argument("--gzip", action="store_true", help="scrape with Accept-Encoding: gzip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scrapes", type=int, default=25)
    args = parser.parse_args()
    print(harness.machine())
    trees = harness.trees(args.before)
    print("  columns: " + ", ".join(trees), flush=True)
    limit = 300 * len(trees) + INTERVAL + len(trees) * args.rounds * args.scrapes * 2
    with harness.time_limit(limit):
        windows = after_reload(trees, args.rounds, args.scrapes, args.gzip)
    first = next(iter(windows.values()))
    rows = [
        [
            "tree",
            "CPU ms per scrape, by window",
            "ratio to the first, after its first window (median)",
            "resident MiB after each window",
        ]
    ]
    for name, measured in windows.items():
        pairs = list(zip(first, measured, strict=True))[1:]
        ratio = statistics.median(after[0] / before[0] for before, after in pairs) if pairs else 1
        rows.append(
            [
                name,
                ", ".join(f"{cpu:.1f}" for cpu, _ in measured),
                f"{ratio:.2f}",
                ", ".join(f"{rss:.0f}" for _, rss in measured),
            ]
        )
    print(harness.table(rows))


if __name__ == "__main__":
    main()
