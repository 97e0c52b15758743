"""Where Lookout's memory goes with 10,000 targets: resident memory after each stage of start-up,
the garbage collector's full-collection time, and (with ``--trace``) the live heap by module.

The exporter runs inside this script (its app on a loopback port, probing a local nginx with
the same targets as ``scrape_cost.py``), so that each stage can be measured on its own: modules
imported, config loaded (in a worker process, as ``lookout-exporter run`` loads it), app
started, every target probed, a full day of history (every bucket of every target's history
written, as after 24 hours of probes), then four scrapes. The scrapes are
made by ``curl`` in a child process, so no response body is held by the measured process.
``--trace`` runs the same stages under tracemalloc and lists the live heap by source file at the
end; tracing roughly triples resident memory, so the two are separate runs.

    python benchmarks/memory_breakdown.py [--targets 10000] [--trace]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Iterable

import harness
import psutil
from aiohttp import web
from harness import INTERVAL, LOOPBACK, Processes, lookout_config

from exporter.app import create_app
from exporter.config_process import load_at_start
from exporter.gc_pause import collect_young_less_often
from exporter.history import reason_code
from exporter.reasons import Reason
from exporter.runtime import RUNTIME, Options
from exporter.stats import ProbeStats

SCRAPES = 4


def resident() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def stage(rows: list[list[str]], name: str) -> None:
    gc.collect()
    rows.append([name, f"{resident():.0f}", f"{len(gc.get_objects())}"])
    print(f"  {name}: {resident():.0f} MiB", flush=True)


async def measure(args: argparse.Namespace, procs: Processes, nginx: str, curl: str) -> None:
    rows = [["stage", "resident MiB", "GC-tracked objects"]]
    collect_young_less_often()  # as `lookout-exporter run` does
    stage(rows, "modules imported")
    ports = [harness.free_port() for _ in range(4)]
    procs.nginx(nginx, ports)
    path = procs.tmp / "lookout.yml"
    path.write_text(lookout_config(ports, args.targets))
    config = load_at_start(str(path), os.environ)
    stage(rows, f"config of {args.targets} targets loaded")
    app = create_app(Options(config_path=str(path), storage_path=procs.tmp / "data"), config)
    runner = web.AppRunner(app)
    await runner.setup()
    port = harness.free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    stage(rows, "app started")
    scheduler = app[RUNTIME].scheduler
    give_up = time.monotonic() + INTERVAL + 60
    while any(s.last is None for s in scheduler.all_stats()):
        if time.monotonic() > give_up:
            raise SystemExit("not every target probed in time")
        await asyncio.sleep(1)
    stage(rows, "every target probed")
    per_target = fill_history(scheduler.all_stats(), time.time())
    stage(rows, "history full (every bucket written)")
    for number in range(SCRAPES):
        encoding = "gzip" if number % 2 else "identity"
        child = await asyncio.create_subprocess_exec(
            curl, "-sf", "-o", "/dev/null", "-H", f"Accept-Encoding: {encoding}",
            f"http://{LOOPBACK}:{port}/metrics",
        )  # fmt: skip
        if await child.wait() != 0:
            raise SystemExit("a scrape failed")
        await asyncio.sleep(2)
    stage(rows, f"after {SCRAPES} scrapes")
    collections = []
    for _ in range(3):
        started = time.perf_counter()
        gc.collect()
        collections.append(time.perf_counter() - started)
    snapshot = tracemalloc.take_snapshot() if args.trace else None
    await runner.cleanup()
    print(harness.table(rows))
    print(
        "full collection: "
        + ", ".join(f"{seconds * 1000:.0f} ms" for seconds in collections)
        + f" ({len(gc.get_objects())} tracked objects, {gc.get_freeze_count()} frozen)"
    )
    print(f"history of one target: {per_target} bytes (sys.getsizeof of its parts)")
    if snapshot is not None:
        print("live heap by source file (tracemalloc):")
        for statistic in snapshot.statistics("filename")[:20]:
            print(
                f"  {statistic.size / 2**20:6.1f} MiB  {statistic.count:7d}  {statistic.traceback}"
            )


def fill_history(all_stats: Iterable[ProbeStats], now: float) -> int:
    """Writes every bucket of every target's history, oldest first, as a day of probes would
    (two probes per bucket; every tenth target failed one of them in two buckets), ending with
    the bucket of ``now`` where the real probes continue; returns the bytes of one target's
    history."""
    size = 0
    for number, stats in enumerate(all_stats):
        history = stats.history
        last = history.index(now)
        for index in range(last - history.count + 1, last):
            at = index * history.width
            failed = number % 10 == 0 and index % 48 == 0
            history.add(at, 0.002 + (index % 7) / 1000, False)
            history.add(at + 1, 0.004, failed, reason_code(Reason.TIMEOUT))
        size = sum(sys.getsizeof(part) for part in (history, *history.parts()))
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--trace", action="store_true", help="list the live heap by source file")
    args = parser.parse_args()
    if args.trace:
        tracemalloc.start()
    binaries = harness.ensure_debian({"nginx": "nginx", "curl": "curl"})
    print(harness.machine())
    with harness.time_limit(INTERVAL + 180), Processes() as procs:
        asyncio.run(measure(args, procs, binaries["nginx"], binaries["curl"]))


if __name__ == "__main__":
    main()
