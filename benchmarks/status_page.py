"""What the status page of 10,000 targets costs on the event loop: the data (every target's row,
with and without its pictures) and the HTML, with a full day of history in every target.

The exporter runs inside this script with the targets of ``scrape_cost.py`` probing a local
nginx; once every target has a result, every bucket of every history is written as a day of
probes would write it (``memory_breakdown.fill_history``). Then each part is timed on its own,
``--rounds`` times, and the medians are printed with the page's size:

- rows: ``views.target_summary`` for every target (what the page cost before the pictures);
- pictures: the uptime bar's runs, the sparkline and since when the state holds, per target;
- HTML: the index template rendering those rows (grouped by ``service``, 200 groups);
- the whole page as ``GET /`` serves it (``page.index_page``): healthy groups collapsed (their
  rows neither built nor sent), one group (``?group=``), and every group's rows (the row budget
  of ``page.INLINE_ROWS`` lifted), also fetched by curl.

    python benchmarks/status_page.py [--targets 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import harness
from aiohttp import web
from harness import INTERVAL, LOOPBACK, Processes, lookout_config
from memory_breakdown import fill_history

from exporter import config as config_module
from exporter.app import create_app
from exporter.runtime import RUNTIME, Options
from exporter.status import page, views
from exporter.status.markup import ENVIRONMENT


class Timings:
    """Wall and CPU seconds of each round of one part; the CPU time (of this process: the
    exporter and the script) is what the part costs the event loop when other work on a shared
    machine makes the wall time wait for a core."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)

    def row(self, part: str, minus: Timings | None = None) -> list[str]:
        """The part's medians in ms, wall then CPU, less those of ``minus``."""
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        if minus is not None:
            wall -= statistics.median(minus.wall)
            cpu -= statistics.median(minus.cpu)
        return [part, f"{wall * 1000:.0f}", f"{cpu * 1000:.0f}"]


def timed(rounds: int, work: Callable[[], Any]) -> tuple[Timings, Any]:
    """``rounds`` runs of ``work`` timed, and its last result."""
    timings = Timings()
    result = None
    for _ in range(rounds):
        timings.start()
        result = work()
        timings.stop()
    return timings, result


async def measure(args: argparse.Namespace, procs: Processes, nginx: str, curl: str) -> None:
    ports = [harness.free_port() for _ in range(4)]
    procs.nginx(nginx, ports)
    path = procs.tmp / "lookout.yml"
    path.write_text(lookout_config(ports, args.targets))
    app = create_app(Options(config_path=str(path)), config_module.load(str(path)))
    runner = web.AppRunner(app)
    await runner.setup()
    port = harness.free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    runtime = app[RUNTIME]
    give_up = time.monotonic() + INTERVAL + 60
    while any(s.last is None for s in runtime.scheduler.all_stats()):
        if time.monotonic() > give_up:
            raise SystemExit("not every target probed in time")
        await asyncio.sleep(1)
    now = time.time()
    fill_history(runtime.scheduler.all_stats(), now)
    all_stats = list(runtime.scheduler.all_stats())
    location = runtime.location

    def rows() -> list[dict[str, Any]]:
        return [views.target_summary(s, now, location) for s in all_stats]

    def with_pictures() -> list[dict[str, Any]]:
        return [
            page.with_pictures(views.target_summary(s, now, location), s, now) for s in all_stats
        ]

    rows_timings, _ = timed(args.rounds, rows)
    pictures_timings, items = timed(args.rounds, with_pictures)
    grouped = page.groups(views.select(items, "all", "state"), "service", "state")

    def html() -> str:
        return ENVIRONMENT.get_template("index.html").render(
            now=now,
            refresh=60,
            refresh_link=page.refresh_link({}, 60),
            shard=None,
            exporter=views.exporter_json(runtime, now),
            maintenance=[],
            filters=page.filter_links([t["state"] for t in items], {}),
            sorts=page.sort_links({}),
            groups=grouped,
            group=None,
            heartbeats=None,
        )

    html_timings, text = timed(args.rounds, html)
    whole = Timings()
    for _ in range(args.rounds):
        whole.start()
        collapsed = await page.index_page(runtime, {})
        whole.stop()
    one_group = Timings()
    for _ in range(args.rounds):
        one_group.start()
        await page.index_page(runtime, {"group": "svc-7"})
        one_group.stop()
    page.INLINE_ROWS = 10**9  # every group's rows on the page, as when every group is failing
    every_row = Timings()
    for _ in range(args.rounds):
        every_row.start()
        await page.index_page(runtime, {})
        every_row.stop()
    fetched = Timings()
    for _ in range(args.rounds):
        fetched.start()
        child = await asyncio.create_subprocess_exec(
            curl, "-sf", "-o", "/dev/null", f"http://{LOOPBACK}:{port}/"
        )
        if await child.wait() != 0:
            raise SystemExit("GET / failed")
        fetched.stop()
    await runner.cleanup()
    table = [
        ["part (median)", "ms wall", "ms CPU"],
        rows_timings.row(f"rows of {args.targets} targets (views.target_summary)"),
        pictures_timings.row("rows with their pictures (bar, sparkline, since)"),
        pictures_timings.row("pictures alone (the difference)", minus=rows_timings),
        html_timings.row("HTML (index template, 200 groups)"),
        whole.row("GET / (page.index_page), healthy groups collapsed"),
        one_group.row("GET /?group=svc-7 (one group of 50 targets)"),
        every_row.row("GET / with every group's rows"),
        fetched.row("GET / fetched by curl (every group's rows)"),
    ]
    print(harness.table(table))
    print(
        f"page size: {len(collapsed.encode()) / 2**10:.0f} KiB collapsed, "
        f"{len(text.encode()) / 2**20:.1f} MiB with every row"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    binaries = harness.ensure_debian({"nginx": "nginx", "curl": "curl"})
    print(harness.machine())
    with harness.time_limit(INTERVAL + 900), Processes() as procs:
        asyncio.run(measure(args, procs, binaries["nginx"], binaries["curl"]))


if __name__ == "__main__":
    main()
