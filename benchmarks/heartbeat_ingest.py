"""Acknowledged durable heartbeat pings per second: Lookout against Prometheus Pushgateway.

    python benchmarks/heartbeat_ingest.py [--seconds 10] [--connections 64] [--heartbeats 1000]
        [--only sqlite,postgresql,pushgateway] [--processes 1,2]

Both servers run on loopback on this machine, one at a time, and receive the same load: keep-alive
HTTP/1.1 connections that each send one request, wait for the answer, and send the next, cycling
over ``--heartbeats`` names. Lookout gets ``GET /ping/hb-N`` for heartbeats declared in its config
(it answers 200 only after the ping is committed to SQLite with a full fsync). Pushgateway gets
what a cron job pushes, ``POST /metrics/job/hb-N`` with a last-success timestamp gauge, in three
setups: without persistence (``--persistence.file=``, memory only); with a persistence file at its
most eager interval (``--persistence.interval=1s``), which still acknowledges before the disk
write; and memory only with ``--push.disable-consistency-check``, its fastest setting (by default
every push re-checks all pushed groups, which gets slow with many groups). Pushgateway is
Debian's ``prometheus-pushgateway``, installed with apt-get when missing.

Lookout runs with each heartbeat store: SQLite, and PostgreSQL (Debian's ``postgresql``, a cluster
made with ``initdb`` in a temporary directory, as the tests do) with one exporter process and with
two processes sharing the database, the connections split between them (the per-process figure
is the rate divided by the processes; ``--processes 1`` runs only the first). After Lookout's
run the script stops it and counts the pings in its store: every acknowledged ping must be
there. Lookout's CPU time per acknowledged ping (user and system, its processes and their
children, warm-up included) is printed too: unlike the rate, it hardly depends on what else the
machine runs. Results are printed and written to
``benchmarks/results/heartbeat_ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
import psutil
from harness import LOOPBACK, REPO, Processes

sys.path.insert(0, str(REPO))
from tests.postgres import postgres_server

RESULTS = REPO / "benchmarks" / "results" / "heartbeat_ingest.json"
PUSHGATEWAY = "prometheus-pushgateway"
WARMUP_SECONDS = 1.0


@dataclass
class Run:
    name: str
    acknowledged_per_second: float
    acknowledged: int
    errors: int
    p50_ms: float
    p99_ms: float
    durable_on_ack: bool
    # CPU seconds of the server's processes (children included) per acknowledged ping, from
    # the first request to the last answer: what the throughput costs, whatever else runs.
    cpu_us_per_ping: float = 0.0


async def _connection(
    port: int,
    requests: list[bytes],
    offset: int,
    until: float,
    measure_from: float,
    latencies: list[float],
    counts: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    n = offset
    try:
        while (sent := time.monotonic()) < until:
            writer.write(requests[n % len(requests)])
            n += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            ok = head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 202"))
            counts[0 if ok else 1] += 1
            if ok and sent >= measure_from:
                counts[2] += 1
                latencies.append(time.monotonic() - sent)
    finally:
        writer.close()


async def _load(ports: list[int], requests: list[bytes], connections: int, seconds: float) -> Run:
    start = time.monotonic()
    measure_from = start + WARMUP_SECONDS
    until = measure_from + seconds
    latencies: list[float] = []
    counts = [0, 0, 0]  # acknowledged (all), errors, acknowledged while measuring
    offsets = [i * len(requests) // connections for i in range(connections)]
    await asyncio.gather(
        *(
            _connection(ports[i % len(ports)], requests, o, until, measure_from, latencies, counts)
            for i, o in enumerate(offsets)
        )
    )
    latencies.sort()
    return Run(
        name="",
        acknowledged_per_second=counts[2] / seconds,
        acknowledged=counts[0],
        errors=counts[1],
        p50_ms=1000 * statistics.median(latencies) if latencies else 0.0,
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
        durable_on_ack=False,
    )


def load(
    port: int | list[int],
    requests: list[bytes],
    connections: int,
    seconds: float,
    servers: Sequence[psutil.Process] = (),
) -> Run:
    """The run's figures; with ``servers``, also their CPU time per acknowledged ping."""
    ports = port if isinstance(port, list) else [port]
    before = _cpu_seconds(servers)
    try:
        import uvloop
    except ImportError:
        run = asyncio.run(_load(ports, requests, connections, seconds))
    else:
        run = uvloop.run(_load(ports, requests, connections, seconds))
    if servers and run.acknowledged:
        run.cpu_us_per_ping = 1e6 * (_cpu_seconds(servers) - before) / run.acknowledged
    return run


def _cpu_seconds(servers: Sequence[psutil.Process]) -> float:
    processes = [p for server in servers for p in (server, *server.children(recursive=True))]
    return sum(harness.cpu_seconds(p) for p in processes)


def bench_lookout(work: Path, heartbeats: int, connections: int, seconds: float) -> Run:
    names = [f"hb-{i}" for i in range(heartbeats)]
    config_text = "heartbeats:\n" + "".join(
        f"  - {{name: {n}, period: 1m, grace: 1m}}\n" for n in names
    )
    storage = work / "lookout-data"
    port = harness.free_port()
    with Processes() as procs:  # stops Lookout before its store is read
        server = procs.lookout(config_text, port, ["--storage.path", str(storage)])
        harness.wait_until_up_blocking(f"http://{LOOPBACK}:{port}/-/ready", procs, "lookout")
        requests = [f"GET /ping/{n} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for n in names]
        run = load(port, requests, connections, seconds, [server])
    with sqlite3.connect(storage / "heartbeats.sqlite") as db:
        stored = db.execute("SELECT sum(json_extract(facts, '$.seq')) FROM heartbeat").fetchone()[0]
    run.name = "lookout"
    run.durable_on_ack = stored >= run.acknowledged
    print(f"lookout: {run.acknowledged} acknowledged, {stored} in the store", file=sys.stderr)
    return run


def bench_lookout_postgresql(
    heartbeats: int, connections: int, seconds: float, processes: int
) -> Run:
    """Lookout with the PostgreSQL store, ``processes`` exporters sharing one database."""
    import psycopg

    names = [f"hb-{i}" for i in range(heartbeats)]
    with postgres_server() as server:
        url = server.create_database()
        config_text = f"storage: {url}\nheartbeats:\n" + "".join(
            f"  - {{name: {n}, period: 1m, grace: 1m}}\n" for n in names
        )
        ports = [harness.free_port() for _ in range(processes)]
        with Processes() as procs:
            config = procs.tmp / "lookout.yml"
            config.write_text(config_text)
            servers = []
            for index, port in enumerate(ports):
                argv = [sys.executable, "-m", "exporter", "run", "--config", str(config)]
                argv += ["--web.listen-address", f"{LOOPBACK}:{port}", "--log.level", "warning"]
                servers.append(procs.start(f"lookout-{index}", argv, cwd=REPO))
            for index, port in enumerate(ports):
                harness.wait_until_up_blocking(
                    f"http://{LOOPBACK}:{port}/-/ready", procs, f"lookout-{index}"
                )
            requests = [f"GET /ping/{n} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for n in names]
            run = load(ports, requests, connections, seconds, servers)
        with psycopg.connect(url) as db:
            row = db.execute("SELECT coalesce(sum(seq), 0) FROM lookout_heartbeat").fetchone()
        stored = int(row[0]) if row else 0
    run.name = f"lookout postgresql ({processes} process{'es' if processes > 1 else ''})"
    run.durable_on_ack = stored >= run.acknowledged
    print(f"{run.name}: {run.acknowledged} acknowledged, {stored} in the store", file=sys.stderr)
    return run


def pushgateway_setups(work: Path) -> dict[str, list[str]]:
    """Name -> flags of each Pushgateway setup measured."""
    return {
        "pushgateway (memory)": ["--persistence.file="],
        "pushgateway (persistence file, 1s)": [
            f"--persistence.file={work / 'pushgateway.data'}",
            "--persistence.interval=1s",
        ],
        "pushgateway (memory, no consistency check)": [
            "--persistence.file=",
            "--push.disable-consistency-check",
        ],
    }


def bench_pushgateway(
    binary: str, name: str, flags: list[str], heartbeats: int, connections: int, seconds: float
) -> Run:
    port = harness.free_port()
    command = [binary, f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn", *flags]
    with Processes() as procs:
        procs.start("pushgateway", command)
        harness.wait_until_up_blocking(f"http://{LOOPBACK}:{port}/-/ready", procs, "pushgateway")
        body = (
            "# TYPE job_last_success_timestamp_seconds gauge\n"
            f"job_last_success_timestamp_seconds {time.time():.3f}\n"
        ).encode()
        requests = [
            f"POST /metrics/job/hb-{i} HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
            for i in range(heartbeats)
        ]
        run = load(port, requests, connections, seconds)
    run.name = name
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument("--heartbeats", type=int, default=1000, help="heartbeats configured")
    parser.add_argument(
        "--only",
        default="sqlite,postgresql,pushgateway",
        help="comma-separated subset of sqlite, postgresql, pushgateway (the first is the base)",
    )
    parser.add_argument(
        "--processes",
        default="1,2",
        help="comma-separated exporter process counts of the PostgreSQL runs",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    # Up to six runs of start-up, warm-up, the measured seconds and the stop, with plenty of room.
    limit = 120 + 6 * (WARMUP_SECONDS + args.seconds + 90)
    with (
        harness.time_limit(limit),
        tempfile.TemporaryDirectory(prefix="heartbeat-ingest-") as tmp,
    ):
        work = Path(tmp)
        runs = []
        if "sqlite" in only:
            runs.append(bench_lookout(work, args.heartbeats, args.connections, args.seconds))
        if "postgresql" in only:
            runs += [
                bench_lookout_postgresql(args.heartbeats, args.connections, args.seconds, n)
                for n in map(int, args.processes.split(","))
            ]
        if "pushgateway" in only:
            pushgateway = harness.ensure_debian({PUSHGATEWAY: PUSHGATEWAY})[PUSHGATEWAY]
            runs += [
                bench_pushgateway(
                    pushgateway, name, flags, args.heartbeats, args.connections, args.seconds
                )
                for name, flags in pushgateway_setups(work).items()
            ]
    lookout = runs[0].acknowledged_per_second
    print(
        f"\n{'server':<44} {'ack/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  ratio"
        "  CPU us/ping"
    )
    for run in runs:
        ratio = lookout / run.acknowledged_per_second if run.acknowledged_per_second else 0.0
        cpu = f"{run.cpu_us_per_ping:>11.0f}" if run.cpu_us_per_ping else ""
        print(
            f"{run.name:<44} {run.acknowledged_per_second:>9.0f} {run.p50_ms:>8.2f} "
            f"{run.p99_ms:>8.2f} {run.errors:>7}  {ratio:.2f}  {cpu}"
        )
    print(
        f"\nheartbeats={args.heartbeats} connections={args.connections} seconds={args.seconds} "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}; "
        "lookout durable on ack: "
        + ", ".join(str(r.durable_on_ack) for r in runs if r.name.startswith("lookout"))
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"settings": vars(args), "runs": [asdict(r) for r in runs]}, indent=2) + "\n"
    )
    lookouts = [r for r in runs if r.name.startswith("lookout")]
    failed = any(not r.durable_on_ack or r.errors > 0 for r in lookouts)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
