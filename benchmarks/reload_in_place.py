"""A reload that changes 10,000 targets in place: resident memory and scrape CPU after it.

The exporter probes the 10,000 HTTP targets of ``scrape_cost.py`` (a local nginx, every 30 s).
Once every target has a result, the script rewrites the config with every interval at 1 h (the
same names and series: each target is changed in place, and probing stops for the hour) and
reloads it with SIGHUP. Then, with nothing but the scrapes running, it reads the exporter's
resident memory and CPU over ``--rounds`` windows of ``--scrapes`` scrapes by ``curl`` (plain,
or gzip with ``--gzip``), each window followed by as long a window without scrapes, whose CPU is
subtracted: the first window holds whatever the reload left for the scrapes to do.

With ``--before DIR`` (another checkout of the repository), that tree's exporter runs first and
then this one's, each with the current interpreter.

    python benchmarks/reload_in_place.py [--before DIR] [--gzip] [--rounds 3] [--scrapes 25]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
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


def after_reload(tree: Path, rounds: int, scrapes: int, gzip: bool) -> list[tuple[float, float]]:
    """Per window: exporter CPU ms per scrape (quiet CPU subtracted) and resident MiB."""
    binaries = harness.ensure_debian({"nginx": "nginx"})
    curl = shutil.which("curl") or "curl"
    with Processes() as procs:
        ports = [harness.free_port() for _ in range(4)]
        procs.nginx(binaries["nginx"], ports)
        port = harness.free_port()
        text = lookout_config(ports, TARGETS)
        lookout = procs.lookout(text, port, tree=tree)
        url = f"http://{LOOPBACK}:{port}/metrics"
        harness.wait_until_up_blocking(
            f"http://{LOOPBACK}:{port}/-/healthy", procs, "lookout", patience=120
        )
        give_up = time.monotonic() + INTERVAL + 120
        while probed(url) < TARGETS:
            if time.monotonic() > give_up:
                raise SystemExit("not every target probed in time")
            time.sleep(2)
        (procs.tmp / "lookout.yml").write_text(
            text.replace(f"interval: {INTERVAL:g}s", "interval: 1h")
        )
        os.kill(lookout.pid, signal.SIGHUP)
        time.sleep(5)  # the reload's load, plan and swap
        command = [curl, "-sf", "-o", os.devnull, url]
        if gzip:
            command[1:1] = ["-H", "Accept-Encoding: gzip"]
        windows = []
        for _ in range(rounds):
            cpu, started = harness.cpu_seconds(lookout), time.monotonic()
            for _ in range(scrapes):
                subprocess.run(command, check=True, timeout=60)
                time.sleep(GAP)
            busy, length = harness.cpu_seconds(lookout) - cpu, time.monotonic() - started
            cpu, started = harness.cpu_seconds(lookout), time.monotonic()
            time.sleep(length)
            quiet = (harness.cpu_seconds(lookout) - cpu) / (time.monotonic() - started)
            windows.append(((busy - quiet * length) / scrapes * 1000, harness.rss_mib(lookout)))
        return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout, measured first")
    parser.add_argument("--gzip", action="store_true", help="scrape with Accept-Encoding: gzip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scrapes", type=int, default=25)
    args = parser.parse_args()
    print(harness.machine())
    trees = harness.trees(args.before)
    rows = [["tree", "CPU ms per scrape, by window", "resident MiB after each window"]]
    with harness.time_limit(len(trees) * (300 + INTERVAL + args.rounds * args.scrapes * 2)):
        for name, tree in trees.items():
            windows = after_reload(tree, args.rounds, args.scrapes, args.gzip)
            rows.append(
                [
                    name,
                    ", ".join(f"{cpu:.1f}" for cpu, _ in windows),
                    ", ".join(f"{rss:.0f}" for _, rss in windows),
                ]
            )
            print(f"  {name}: {rows[-1][1]} ms; {rows[-1][2]} MiB", flush=True)
    print(harness.table(rows))


if __name__ == "__main__":
    main()
