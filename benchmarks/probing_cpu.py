"""What probing alone costs with 10,000 targets: Lookout's CPU per second between scrapes.

The exporter probes the 10,000 HTTP targets of ``scrape_cost.py`` (a local nginx, every 30 s,
labels and an SLO on each) and nothing scrapes it: after every target has had time for its
first probe, the script reads the process's CPU time over ``--rounds`` windows of
``--seconds``. The figure is the share of one core the probes, their results and the per-probe
rendering take, which ``scrape_cost.py``'s scrape CPU also contains (probes keep running
during a scrape).

With ``--before DIR`` (another checkout of the repository), that tree's exporter runs first and
then this one's, in the same few minutes, each with the current interpreter.

    python benchmarks/probing_cpu.py [--before DIR] [--rounds 3] [--seconds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import harness
from harness import INTERVAL, LOOPBACK, Processes, lookout_config

TARGETS = 10_000


def probing_cpu(tree: Path, rounds: int, seconds: float) -> list[float]:
    """The exporter of ``tree``'s CPU seconds per second over each window."""
    binaries = harness.ensure_debian({"nginx": "nginx"})
    with Processes() as procs:
        ports = [harness.free_port() for _ in range(4)]
        procs.nginx(binaries["nginx"], ports)
        port = harness.free_port()
        lookout = procs.lookout(lookout_config(ports, TARGETS), port, tree=tree)
        harness.wait_until_up_blocking(
            f"http://{LOOPBACK}:{port}/-/healthy", procs, "lookout", patience=120
        )
        time.sleep(INTERVAL + 15)  # every target probed once, start-up work done
        shares = []
        for _ in range(rounds):
            cpu = harness.cpu_seconds(lookout)
            time.sleep(seconds)
            shares.append((harness.cpu_seconds(lookout) - cpu) / seconds)
        return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout, measured first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    print(harness.machine())
    trees = harness.trees(args.before)
    limit = len(trees) * (180 + INTERVAL + args.rounds * args.seconds)
    rows = [["tree", "CPU, % of a core (median)", "windows"]]
    with harness.time_limit(limit):
        for name, tree in trees.items():
            shares = probing_cpu(tree, args.rounds, args.seconds)
            windows = ", ".join(f"{share * 100:.1f}" for share in shares)
            rows.append([name, f"{statistics.median(shares) * 100:.1f}", windows])
            print(f"  {name}: {windows} % of a core", flush=True)
    print(harness.table(rows))


if __name__ == "__main__":
    main()
