"""How long loading a config takes, and how much memory, with 1,000, 10,000 and 100,000 targets.

Each size is a generated config of mixed kinds (60 % http, 20 % tcp, 10 % dns, 10 % tls), five
keys per target plus labels and an ``expect`` where the kind has one: the shape of the config in
issue 24. Per size and round, in a fresh process each:

- ``config.load``: wall and CPU time, and peak resident memory (the process's maximum RSS minus
  its RSS once the modules are imported);
- ``lookout-exporter check-config FILE``: wall time of the whole command, interpreter start and
  imports included;
- with ``--jsonschema-alone``, the schema check by jsonschema alone (what every load cost before
  the compiled validator), for sizes up to 10,000.

The table shows the median of the rounds. Config files live in a temporary directory.

    python benchmarks/config_load.py [--sizes 1000 10000 100000] [--rounds 3] [--jsonschema-alone]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOAD = """
import json, resource, sys, time
import psutil
from exporter import config
from exporter.config_schema import schema_check
from exporter.config_yaml import read_yaml
base = psutil.Process().memory_info().rss
wall, cpu = time.perf_counter(), time.process_time()
loaded = config.load(sys.argv[1], {})
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
alone = None
if sys.argv[2] == "1":
    document, _ = read_yaml(open(sys.argv[1]).read(), sys.argv[1])
    alone = time.perf_counter()
    assert schema_check().problems_fully(document) == []
    alone = time.perf_counter() - alone
print(json.dumps({"targets": len(loaded.targets), "wall": wall, "cpu": cpu, "peak": peak,
                  "alone": alone}))
"""


def generate(targets: int) -> str:
    lines = ["defaults: {interval: 30s, timeout: 10s}", "targets:"]
    for i in range(targets):
        share = i % 10
        labels = f"labels: {{service: svc-{i % 200}, team: team-{i % 17}}}"
        if share < 6:
            lines.append(
                f"  - {{name: api-{i:06d}, kind: http, url: 'http://10.0.{i // 250 % 250}."
                f"{i % 250}:8080/health', interval: 15s, timeout: 5s, {labels}, "
                "expect: {status: [2xx], body_matches: [ok]}}"
            )
        elif share < 8:
            lines.append(
                f"  - {{name: tcp-{i:06d}, kind: tcp, address: '10.1.{i // 250 % 250}."
                f"{i % 250}:6379', interval: 15s, timeout: 5s, {labels}}}"
            )
        elif share == 8:
            lines.append(
                f"  - {{name: dns-{i:06d}, kind: dns, query: 'host{i}.example.com', interval: 30s, "
                f"timeout: 5s, {labels}, expect: {{rcode: [NOERROR]}}}}"
            )
        else:
            lines.append(
                f"  - {{name: tls-{i:06d}, kind: tls, address: 'host{i}.example.com:443', "
                f"interval: 1m, timeout: 5s, {labels}, expect: {{valid_for: 14d}}}}"
            )
    return "\n".join(lines) + "\n"


def measure(path: Path, alone: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), "1" if alone else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )
    figures: dict[str, float] = json.loads(done.stdout)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        check=True,
        cwd=REPO,
        timeout=600,
    )
    figures["check_config"] = time.perf_counter() - started
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jsonschema-alone", action="store_true")
    args = parser.parse_args()
    rows = [
        "| targets | file KiB | load wall s | load CPU s | peak MiB | check-config wall s "
        "| jsonschema alone s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"lookout-{size}.yml"
            path.write_text(generate(size))
            alone = args.jsonschema_alone and size <= 10000
            runs = [measure(path, alone) for _ in range(args.rounds)]
            assert all(run["targets"] == size for run in runs)

            def median(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(run[key] for run in runs)

            jsonschema_alone = f"{median('alone'):.2f}" if alone else "-"
            rows.append(
                f"| {size:,} | {path.stat().st_size / 1024:,.0f} | {median('wall'):.2f} "
                f"| {median('cpu'):.2f} | {median('peak') / 2**20:.0f} "
                f"| {median('check_config'):.2f} | {jsonschema_alone} |"
            )
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
