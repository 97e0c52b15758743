"""How long loading a config takes, and how much memory, with 1,000, 10,000 and 100,000 targets.

Each size is a generated config of mixed kinds (60 % http, 20 % tcp, 10 % dns, 10 % tls), five
keys per target plus labels and an ``expect`` where the kind has one: the shape of the config in
issue 24. Per size and round, in a fresh process each:

- ``config.load``: wall and CPU time, and peak resident memory (the process's maximum RSS minus
  its RSS once the modules, every probe kind's included, are imported);
- ``lookout-exporter check-config FILE``: wall and CPU time of the whole command, interpreter
  start and imports included, with the package's modules compiled to bytecode first (as an
  installed package has them: where ``PYTHONDONTWRITEBYTECODE`` is set, every start would
  otherwise compile them again);
- with ``--jsonschema-alone``, the schema check by jsonschema alone (what every load cost before
  the compiled validator), for sizes up to 10,000.

The table shows the median of the rounds. Config files live in a temporary directory. With
``--before DIR`` (another checkout of the repository, such as the main branch), each round
measures that tree's package first and then this one's, in the same minute, and the table has a
row for each.

Then, with ``--reloads`` (the default), the stall a reload causes: per size, an exporter runs the
config (every target at a 1 h interval, so probing adds little work, plus one heartbeat), two
processes ask it for ``/metrics`` and ``POST /ping/bench`` in a loop (5 ms apart, one request at
a time each, logging every answer's latency; ``--scrape-every 1`` asks for ``/metrics`` once a
second instead, closer to what a Prometheus does), and after a quiet baseline the config is reloaded
twice: to a config whose every target has a new name (all removed, all added: the largest
reconcile), which also starts the loader process, and back. The table shows how long each
reload took and the longest ``/metrics`` and ``/ping`` answer in flight during the baseline and
during the reloads, and the resident memory of the exporter and its loader process.

Wall times on a busy machine include waiting for a core, so the same two reloads also run in
this process, on a ``Runtime`` of its own, with a task that wakes every millisecond and records
the longest the event loop was held between two wake-ups, both in wall time and in CPU time of
the loop's thread (which other processes on the machine do not inflate), and a task that
renders the exposition every 0.2 s (``Runtime.render_pieces``, without HTTP) records the
longest render while quiet and during each reload: a reload's work taking the turns a scrape
pauses for shows there, apart from what the machine's other processes cost.

    python benchmarks/config_load.py [--sizes 1000 10000 100000] [--rounds 3] [--jsonschema-alone]
        [--no-reloads] [--no-loads] [--before DIR] [--scrape-every SECONDS]
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import psutil
from harness import LOOPBACK, Processes

REPO = Path(__file__).resolve().parent.parent

LOAD = """
import json, resource, sys, time
import psutil
from exporter import config
from exporter.config_schema import schema_check
from exporter.config_yaml import read_yaml
from exporter.probes.registry import KINDS
kinds = list(KINDS.values())  # every kind's module imported, where the tree imports them lazily
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


POLLER = """
import http.client, sys, time
connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=60)
while True:
    started = time.monotonic()
    connection.request(sys.argv[3], sys.argv[4])
    connection.getresponse().read()
    print(started, time.monotonic() - started, flush=True)
    time.sleep(float(sys.argv[5]))
"""


def generate(targets: int, prefix: str = "", interval: str | None = None) -> str:
    """The config of ``targets`` targets; ``prefix`` goes before every name, and ``interval``
    (with a heartbeat) replaces the intervals of the load measurement."""
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
    text = "\n".join(lines) + "\n"
    if interval is not None:
        text = text.replace("interval: 15s", f"interval: {interval}")
        text = text.replace("interval: 30s", f"interval: {interval}")
        text = text.replace("interval: 1m", f"interval: {interval}")
        text = text.replace("name: ", f"name: {prefix}")
        text += "heartbeats:\n  - {name: bench, period: 1h, grace: 1h}\n"
    return text


def compile_package(tree: Path) -> None:
    """The bytecode of ``tree``'s package, written as installing it would."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "exporter")], check=True, timeout=600
    )


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(path: Path, alone: bool, tree: Path = REPO) -> dict[str, float]:
    """One round for the package of ``tree`` (the current directory comes first on the path of
    ``python -c`` and ``python -m``)."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), "1" if alone else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        timeout=600,
    )
    figures: dict[str, float] = json.loads(done.stdout)
    started, cpu = time.perf_counter(), children_cpu()
    subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        check=True,
        cwd=tree,
        timeout=600,
    )
    figures["check_config"] = time.perf_counter() - started
    figures["check_config_cpu"] = children_cpu() - cpu
    return figures


def worst(log: Path, start: float, end: float) -> float:
    """The slowest answer in ``log`` among the requests in flight between ``start`` and ``end``."""
    slowest = 0.0
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2:
            at, latency = float(fields[0]), float(fields[1])
            if start <= at + latency and at <= end:
                slowest = max(slowest, latency)
    return slowest


def post_reload(port: int) -> float:
    started = time.monotonic()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
    connection.request("POST", "/-/reload")
    response = connection.getresponse()
    body = response.read().decode()
    if response.status != 200:
        raise SystemExit(f"reload failed: {response.status} {body}")
    return time.monotonic() - started


def reload_stall(size: int, scrape_every: float) -> str:
    """One exporter with ``size`` targets, reloaded twice while it is asked for /metrics (every
    ``scrape_every`` seconds) and /ping: a table row."""
    with Processes() as procs:
        port = harness.free_port()
        flags = ["--storage.path", str(procs.tmp / "data")]
        exporter = procs.lookout(generate(size, "a-", "1h"), port, flags)
        harness.wait_until_up_blocking(
            f"http://{LOOPBACK}:{port}/-/ready", procs, "lookout", patience=900
        )
        config = procs.tmp / "lookout.yml"
        pollers = (
            ("metrics", "GET", "/metrics", scrape_every),
            ("ping", "POST", "/ping/bench", 0.005),
        )
        for name, method, path, pause in pollers:
            argv = [sys.executable, "-c", POLLER, LOOPBACK, str(port), method, path, str(pause)]
            procs.start(name, argv)
        time.sleep(3)  # the pollers' connections are open and answered
        baseline = time.monotonic()
        time.sleep(5)
        quiet_end = time.monotonic()
        config.write_text(generate(size, "b-", "1h"))
        first_start = time.monotonic()
        first = post_reload(port)
        first_end = time.monotonic()
        time.sleep(2)
        config.write_text(generate(size, "a-", "1h"))
        second_start = time.monotonic()
        second = post_reload(port)
        second_end = time.monotonic()
        time.sleep(1)
        loaders = exporter.children(recursive=True)
        loader_mib = sum(harness.rss_mib(p) for p in loaders)
        exporter_mib = harness.rss_mib(exporter)

        def ms(name: str, start: float, end: float) -> str:
            return f"{worst(procs.tmp / f'{name}.log', start, end) * 1000:.0f}"

        return (
            f"| {size:,} | {first:.2f} | {second:.2f} "
            f"| {ms('metrics', baseline, quiet_end)} | {ms('metrics', first_start, first_end)} "
            f"| {ms('metrics', second_start, second_end)} "
            f"| {ms('ping', baseline, quiet_end)} | {ms('ping', first_start, first_end)} "
            f"| {ms('ping', second_start, second_end)} | {exporter_mib:.0f} | {loader_mib:.0f} |"
        )


HOLD = """
import asyncio, json, sys, time
from pathlib import Path
from exporter import config
from exporter.clock import SystemClock
from exporter.runtime import Options, Runtime, settle_heap
path, second, first, data = sys.argv[1:5]

async def main():
    runtime = Runtime(Options(config_path=path, storage_path=Path(data)), config.load(path),
                      SystemClock())
    await runtime.heartbeats.open_for(runtime.config.heartbeats, runtime.config.storage)
    runtime.start()
    settle_heap()
    held = {"wall": 0.0, "cpu": 0.0}

    async def watch():
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            held["wall"] = max(held["wall"], time.perf_counter() - wall - 0.001)
            held["cpu"] = max(held["cpu"], time.thread_time() - cpu)

    longest = {"scrape": 0.0}

    async def scrape():
        while True:
            started = time.perf_counter()
            async for _piece in runtime.render_pieces():
                await asyncio.sleep(0)  # where the response would be written
            longest["scrape"] = max(longest["scrape"], time.perf_counter() - started)
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    scraper = asyncio.create_task(scrape())
    await asyncio.sleep(2)  # the first scrape renders every target
    longest["scrape"] = 0.0
    await asyncio.sleep(1)
    figures = [{"scrape": longest["scrape"]}]
    for text in (second, first):
        await asyncio.sleep(0.5)
        held["wall"] = held["cpu"] = longest["scrape"] = 0.0
        Path(path).write_text(Path(text).read_text())
        outcome = await runtime.reload()
        assert outcome.successful, outcome.text()
        await asyncio.sleep(0.3)  # the first scrape after the swap
        figures.append({**held, "scrape": longest["scrape"]})
    watcher.cancel()
    scraper.cancel()
    await runtime.close()
    print(json.dumps(figures))

asyncio.run(main())
"""


def loop_held(size: int, tmp: Path) -> list[dict[str, float]]:
    """In a process of its own: the longest scrape while quiet, then the longest event loop
    hold (wall, CPU) and the longest scrape during each of the two reloads."""
    path, first, second = tmp / "hold.yml", tmp / "hold-a.yml", tmp / "hold-b.yml"
    first.write_text(generate(size, "a-", "1h"))
    second.write_text(generate(size, "b-", "1h"))
    path.write_text(first.read_text())
    done = subprocess.run(
        [sys.executable, "-c", HOLD, str(path), str(second), str(first), str(tmp / "hold-data")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=1800,
    )
    held: list[dict[str, float]] = json.loads(done.stdout)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jsonschema-alone", action="store_true")
    parser.add_argument("--no-reloads", dest="reloads", action="store_false")
    parser.add_argument("--no-loads", dest="loads", action="store_false")
    parser.add_argument("--before", type=Path, help="another checkout, measured alternately")
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=0.005,
        help="seconds between the reload runs' /metrics requests (default: back to back)",
    )
    args = parser.parse_args()
    print(harness.machine())
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    trees = harness.trees(args.before)
    rows = [
        "| tree | targets | file KiB | load wall s | load CPU s | peak MiB | check-config wall s "
        "| check-config CPU s | jsonschema alone s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for tree in trees.values() if args.loads else ():
            compile_package(tree)
        for size in args.sizes if args.loads else ():
            path = Path(tmp) / f"lookout-{size}.yml"
            path.write_text(generate(size))
            alone = args.jsonschema_alone and size <= 10000
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    runs[name].append(measure(path, alone, tree))
            for name, tree_runs in runs.items():
                assert all(run["targets"] == size for run in tree_runs)

                def median(key: str, tree_runs: list[dict[str, float]] = tree_runs) -> float:
                    return statistics.median(run[key] for run in tree_runs)

                jsonschema_alone = f"{median('alone'):.2f}" if alone else "-"
                rows.append(
                    f"| {name} | {size:,} | {path.stat().st_size / 1024:,.0f} "
                    f"| {median('wall'):.2f} | {median('cpu'):.2f} | {median('peak') / 2**20:.0f} "
                    f"| {median('check_config'):.2f} | {median('check_config_cpu'):.2f} "
                    f"| {jsonschema_alone} |"
                )
                print(rows[-1], flush=True)
    if args.loads:
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
        print("\n".join(rows))
    if not args.reloads:
        return
    rows = [
        "| targets | first reload s | second reload s | longest /metrics ms: quiet "
        "| first reload | second reload | longest /ping ms: quiet | first reload | second reload "
        "| exporter MiB | loader MiB | loop held ms, first: wall, CPU | second: wall, CPU "
        "| in-process scrape ms: quiet, first, second |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with harness.time_limit(3600), tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            quiet, first, second = loop_held(size, Path(tmp))
            held = (
                f" {first['wall'] * 1000:.0f}, {first['cpu'] * 1000:.0f} "
                f"| {second['wall'] * 1000:.0f}, {second['cpu'] * 1000:.0f} "
                f"| {quiet['scrape'] * 1000:.0f}, {first['scrape'] * 1000:.0f}, "
                f"{second['scrape'] * 1000:.0f} |"
            )
            rows.append(reload_stall(size, args.scrape_every) + held)
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
