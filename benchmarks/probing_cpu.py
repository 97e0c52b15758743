"""What probing alone costs with 10,000 targets: Lookout's CPU per second between scrapes.

The exporter probes the 10,000 HTTP targets of ``scrape_cost.py`` (a local nginx, every 30 s,
labels and an SLO on each) and nothing scrapes it: after every target has had time for its
first probe, the script reads the process's CPU time over ``--rounds`` windows of
``--seconds``. The figure is the share of one core the probes, their results and the per-probe
rendering take, which ``scrape_cost.py``'s scrape CPU also contains (probes keep running
during a scrape).

With ``--before DIR`` (another checkout of the repository; repeat it for more), every tree's
exporter runs at the same time, each with its own nginx and the current interpreter, and the
CPU of all of them is read over the same windows. Run one after another, the windows of one
tree moved by up to a quarter of their median with the machine's speed, more than most changes
they were to measure; side by side, each window's ratio between the trees shares that drift.
The ratios printed are the medians of the per-window ratios to the first tree.

    python benchmarks/probing_cpu.py [--before DIR ...] [--rounds 8] [--seconds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import harness
import psutil
from harness import INTERVAL, LOOPBACK, REPO, Processes, lookout_config

TARGETS = 10_000


def probing_cpu(trees: dict[str, Path], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Each tree's exporter's CPU seconds per second over the same windows, all running."""
    binaries = harness.ensure_debian({"nginx": "nginx"})
    with contextlib.ExitStack() as stack:
        exporters: dict[str, psutil.Process] = {}
        for name, tree in trees.items():
            procs = stack.enter_context(Processes())
            ports = [harness.free_port() for _ in range(4)]
            procs.nginx(binaries["nginx"], ports)
            port = harness.free_port()
            exporters[name] = procs.lookout(lookout_config(ports, TARGETS), port, tree=tree)
            harness.wait_until_up_blocking(
                f"http://{LOOPBACK}:{port}/-/healthy", procs, name, patience=120
            )
        time.sleep(INTERVAL + 15)  # every target probed once, start-up work done
        shares: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(rounds):
            cpu = {name: harness.cpu_seconds(proc) for name, proc in exporters.items()}
            time.sleep(seconds)
            for name, proc in exporters.items():
                shares[name].append((harness.cpu_seconds(proc) - cpu[name]) / seconds)
            print("  " + "  ".join(f"{s[-1] * 100:5.1f}" for s in shares.values()), flush=True)
        return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before", type=Path, action="append", default=[], help="another checkout (repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    print(harness.machine())
    trees = {str(path): path.resolve() for path in args.before} | {"this tree": REPO}
    print("  columns: " + ", ".join(trees), flush=True)
    limit = 120 * len(trees) + INTERVAL + 60 + args.rounds * args.seconds
    with harness.time_limit(limit):
        shares = probing_cpu(trees, args.rounds, args.seconds)
    first = next(iter(shares.values()))
    rows = [["tree", "CPU, % of a core (median)", "ratio to the first (median)", "windows"]]
    for name, windows in shares.items():
        pairs = zip(first, windows, strict=True)
        ratio = statistics.median(after / before for before, after in pairs)
        rows.append(
            [
                name,
                f"{statistics.median(windows) * 100:.1f}",
                f"{ratio:.2f}",
                ", ".join(f"{share * 100:.1f}" for share in windows),
            ]
        )
    print(harness.table(rows))


if __name__ == "__main__":
    main()
