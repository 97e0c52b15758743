"""Resident memory per in-flight HTTP probe of a large body, and what stays after.

A child process serves a 12 MiB body (chunked, so its size is not known in advance), a 4 MiB
JSON document (with Content-Length) and a small page; this process runs N probes of one kind at
once with the exporter's own prober (``run_probe`` with shared clients, as the scheduler runs
them) and samples its resident memory every 5 ms while they run. Reported per case: the peak
above the resident memory before the round, divided by N, and what stays resident after the
round once the garbage collector ran. Each case runs in a fresh process, so one case's heap
does not pad the next.

Cases, each for N = 5 and 25:
- ``12 MiB, no body checks``: ``expect: {status: [2xx]}`` only.
- ``12 MiB, body_matches``: a regex over the body (without ``max_size``).
- ``4 MiB JSON, json_schema``: the document parsed and validated.

    python benchmarks/large_body_memory.py [--probes 5 25] [--case NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import psutil

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, json, sys
from aiohttp import web

CHUNK = b"x" * 65536
DOC = json.dumps({"items": [{"id": i, "name": "item %d" % i} for i in range(120000)]}).encode()

async def big(request):
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(192):  # 12 MiB
        await response.write(CHUNK)
    await response.write_eof()
    return response

async def document(request):
    return web.Response(body=DOC, content_type="application/json")

app = web.Application()
app.router.add_get("/big", big)
app.router.add_get("/doc", document)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

CASES = {
    "12 MiB, no body checks": ("/big", "{status: [2xx]}"),
    "12 MiB, body_matches": ("/big", "{body_matches: ['y']}"),
    "4 MiB JSON, json_schema": (
        "/doc",
        "{json_schema: {type: object, required: [items], properties: {items: "
        "{type: array, items: {type: object, required: [id]}}}}}",
    ),
}


def rss() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


async def one_case(port: int, case: str, probes: int) -> tuple[float, float, str]:
    from exporter.clock import SystemClock
    from exporter.config import Source, load_text
    from exporter.probes.clients import SharedClients
    from exporter.probes.runner import run_probe

    path, expect = CASES[case]
    targets = "".join(
        f"  - {{name: t{i}, kind: http, url: 'http://127.0.0.1:{port}{path}', "
        f"timeout: 60s, expect: {expect}}}\n"
        for i in range(probes)
    )
    config = load_text(
        "defaults: {interval: 5m, timeout: 60s}\ntargets:\n" + targets,
        Source("bench.yml", Path.cwd()),
        {},
    )
    clients = SharedClients()
    # Warm up: one probe, so that sessions, contexts and imports are in the baseline.
    await run_probe(config.targets[0], clients, SystemClock())
    gc.collect()
    before = rss()
    peak = before
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    results = await asyncio.gather(*(run_probe(t, clients, SystemClock()) for t in config.targets))
    running = False
    sampler.join()
    outcome = ", ".join(sorted({r.reason.value if r.reason else "success" for r in results}))
    del results
    await clients.close()
    gc.collect()
    await asyncio.sleep(0.2)
    after = rss()
    return (peak - before) / probes, after - before, outcome


def child(port: int, case: str, probes: int) -> None:
    peak, after, outcome = asyncio.run(one_case(port, case, probes))
    print(json.dumps({"peak": peak, "after": after, "outcome": outcome}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, nargs="+", default=[5, 25])
    parser.add_argument("--case", choices=list(CASES), action="append")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], int(args.child[2]))
        return
    port = harness.free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        time.sleep(1.5)
        rows = [["case", "probes in flight", "outcome", "peak MiB per probe", "MiB resident after"]]
        for case in args.case or list(CASES):
            for probes in args.probes:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(port), case, str(probes)],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(
                    [
                        case,
                        str(probes),
                        figures["outcome"],
                        f"{figures['peak']:.1f}",
                        f"{figures['after']:.0f}",
                    ]
                )
                print(rows[-1], flush=True)
        print(harness.table(rows))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
