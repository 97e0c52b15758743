"""Alerting scenarios end to end: two exporters, Debian's Prometheus with the shipped rule pack
and Alertmanager with the example's routes, inhibitions and grouping deliver exactly the
notifications the on-call engineer should get, and the test prints how long each took.

Time runs 30 times faster than in production, with the same expressions: every ``for:``,
``keep_firing_for`` and group ``interval`` of the pack is divided by 30 (15s -> 500ms,
1m -> 2s, 5m -> 10s), the exporter uses the recommended defaults divided by 30 as well
(``interval: 30s`` -> 1s, ``interval_when_failing: 10s`` -> 300ms, ``confirm: {failures: 2}``),
Prometheus scrapes every 500ms (the recommended 15s) and evaluates the other groups every second
(30s), and Alertmanager waits the example's ``group_wait`` divided by 30 before a page (10s ->
334ms) and a second before other groups.
A measured time multiplied by 30 is what the production settings give; docs/alerting.md has
the table.

Scenarios, all in one run so the stack starts once:

- a one-attempt blip pages nobody;
- a backend with three targets of one service answering 503: one page listing the three,
  resolved after the fix;
- a failing target in a maintenance window pages nobody;
- a cron job that fails on every run pages (missed deadline) and stays firing through its runs;
- one of a pool's three workers stops: a ticket naming it;
- a blind exporter (every connectivity canary fails) pages as the exporter, not its target;
- the exporter killed: no resolved notification for anything, and an exporter page.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.exporter_process import run_exporter
from tests.processes import free_port, prometheus, running
from tests.rules.pack import ALERTMANAGER_CONFIG, ROOT, RULE_FILES, loopback_alertmanager_config
from tests.rules.stack import Webhook, webhook_server
from tests.test_alerting_e2e import Upstream, upstream_server
from tests.tools import require_tool

pytestmark = pytest.mark.tools

SCALE = 30
NOTIFY_TIMEOUT = 30


def scaled(duration: str) -> str:
    """A Prometheus duration (``15s``, ``5m``, ``1h``) divided by SCALE, in whole milliseconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    seconds = int(match[1]) * units[match[2]]
    return f"{math.ceil(seconds * 1000 / SCALE)}ms"


def scaled_rule_files(dest: Path) -> None:
    """Copies of the rule files under ``dest`` with ``for:``, ``keep_firing_for`` and group
    ``interval`` scaled."""
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            if "interval" in group:
                group["interval"] = scaled(group["interval"])
            for rule in group["rules"]:
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = scaled(rule[key])
        copy = dest / path.relative_to(ROOT / "rules")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml.safe_dump(document, sort_keys=False))


class Blip(Upstream):
    """Answers 200, except ``fail_next`` answers of 503."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0

    async def health(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="blip")
        return await super().health(request)


@contextlib.asynccontextmanager
async def blip_server() -> Any:
    blip = Blip()
    app = web.Application()
    app.router.add_get("/health", blip.health)
    from aiohttp.test_utils import TestServer

    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield blip, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


async def post(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url) as response:
        assert response.status == 200, await response.text()


async def worker(session: aiohttp.ClientSession, base: str, name: str) -> None:
    """One worker of a pool, pinging twice a period."""
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            await post(session, f"{base}/ping/pool?instance={name}")
        await asyncio.sleep(1)


async def cron_job_failing_every_run(session: aiohttp.ClientSession, base: str) -> None:
    """A one-"minute" (2s) job wrapped like ``lookout-exporter ping``: start, exit code 3."""
    while True:
        with contextlib.suppress(aiohttp.ClientError):  # the exporter may be gone
            await post(session, f"{base}/ping/cron-job/start")
            await asyncio.sleep(0.3)
            await post(session, f"{base}/ping/cron-job/3")
        await asyncio.sleep(1.7)


def alerts_of(hook: Webhook, receiver: str, name: str) -> list[tuple[str, str]]:
    """(status, subject) of every alert named ``name`` delivered to ``receiver``, in order."""
    return [
        (a["status"], a["labels"].get("target") or a["labels"].get("heartbeat") or "")
        for a in hook.delivered(receiver)
        if a["labels"]["alertname"] == name
    ]


def scaled_pager_wait(config: dict[str, Any]) -> dict[str, Any]:
    """The loopback Alertmanager config with the pager route's ``group_wait`` of the example
    divided by SCALE, since it is part of the time from an outage to its page."""
    example = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (wait,) = [r["group_wait"] for r in example["route"]["routes"] if r["receiver"] == "pager"]
    for route in config["route"]["routes"]:
        if route["receiver"] == "pager":
            route["group_wait"] = scaled(wait)
    return config


def report(name: str, seconds: float) -> None:
    production = seconds * SCALE
    print(
        f"scenario {name}: {seconds:.2f}s in the test, about {production:.0f}s"
        f" ({production / 60:.1f} min) at scale"
    )


async def test_alerting_scenarios_page_once_and_never_give_false_all_clears(
    tmp_path: Path,
) -> None:
    require_tool("prometheus")
    alertmanager = require_tool("alertmanager")
    rules = tmp_path / "rules"
    scaled_rule_files(rules)
    am_port = free_port()
    closed = free_port()  # nothing listens here: the blind exporter's canaries and target
    now = datetime.now(UTC)
    defaults = {
        "interval": "1s",
        "timeout": "300ms",
        "confirm": {"failures": 2, "successes": 1},
        "interval_when_failing": "300ms",
    }
    async with (
        upstream_server() as (backend, backend_url),
        blip_server() as (blip, blip_url),
        upstream_server() as (patched, patched_url),
        webhook_server() as (hook, hook_url),
    ):
        patched.status = 503
        config = {
            "defaults": defaults,
            "targets": [
                *(
                    {
                        "name": f"orders-{part}",
                        "kind": "http",
                        "url": f"{backend_url}/health",
                        "labels": {"service": "orders"},
                    }
                    for part in ("api", "admin", "feed")
                ),
                {"name": "blip", "kind": "http", "url": f"{blip_url}/health"},
                {"name": "patched", "kind": "http", "url": f"{patched_url}/health"},
            ],
            "maintenance": [
                {
                    "name": "patching",
                    "start": (now - timedelta(hours=1)).isoformat(),
                    "end": (now + timedelta(hours=1)).isoformat(),
                    "targets": ["patched"],
                }
            ],
            "heartbeats": [
                {"name": "cron-job", "period": "2s", "grace": "1s"},
                {"name": "pool", "period": "2s", "grace": "1s", "instances": 3},
            ],
        }
        blind_config = {
            "defaults": defaults,
            "location": "remote",
            "connectivity": {
                "interval": "1s",
                "canaries": [
                    {"name": "edge", "kind": "tcp", "address": f"127.0.0.1:{closed}"},
                ],
            },
            "targets": [
                {"name": "remote-api", "kind": "tcp", "address": f"127.0.0.1:{closed}"},
            ],
        }
        (tmp_path / "main").mkdir()
        (tmp_path / "blind").mkdir()
        main_file = tmp_path / "main" / "lookout.yml"
        main_file.write_text(yaml.safe_dump(config, sort_keys=False))
        blind_file = tmp_path / "blind" / "lookout.yml"
        blind_file.write_text(yaml.safe_dump(blind_config, sort_keys=False))
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(
            yaml.safe_dump(scaled_pager_wait(loopback_alertmanager_config(hook_url)))
        )
        async with (
            run_exporter(["--config", str(main_file)], tmp_path / "main", ready="/-/ready") as main,
            run_exporter(["--config", str(blind_file)], tmp_path / "blind") as blind,
            running(
                [
                    alertmanager,
                    f"--config.file={am_config}",
                    f"--storage.path={tmp_path / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                f"http://127.0.0.1:{am_port}/-/ready",
                tmp_path / "alertmanager.log",
            ),
        ):
            settings = {
                "global": {
                    "scrape_interval": scaled("15s"),
                    "scrape_timeout": scaled("15s"),
                    "evaluation_interval": "1s",
                },
                "rule_files": [
                    str(rules / "recording" / "*.yml"),
                    str(rules / "alerts" / "*.yml"),
                ],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {
                        "job_name": "lookout",
                        "static_configs": [
                            {"targets": [main.url.removeprefix("http://")]},
                            {"targets": [blind.url.removeprefix("http://")]},
                        ],
                    }
                ],
            }
            async with (
                prometheus(settings, tmp_path, "--rules.alert.resend-delay=1s"),
                aiohttp.ClientSession() as session,
            ):
                await post(session, f"{main.url}/ping/cron-job")  # its last success
                await post(session, f"{main.url}/ping/pool?instance=w3")  # then it stops
                tasks = [
                    asyncio.create_task(cron_job_failing_every_run(session, main.url)),
                    asyncio.create_task(worker(session, main.url, "w1")),
                    asyncio.create_task(worker(session, main.url, "w2")),
                ]
                try:
                    await scenarios(hook, backend, blip, main, blind)
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task


async def scenarios(hook: Webhook, backend: Upstream, blip: Blip, main: Any, blind: Any) -> None:
    started = time.monotonic()
    # The blind exporter pages as itself.
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        blind_page = await hook.wait_for("pager", "firing", "LookoutExporterConnectivityLost")
    report(
        "blind exporter pages as the exporter (from the stack's start)", time.monotonic() - started
    )
    assert blind_page["labels"]["instance"] == blind.url.removeprefix("http://")

    # A blip: one failed attempt, confirm needs two.
    blip.fail_next = 1

    # The failing cron job pages once its deadline (period + grace) has passed.
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await hook.wait_for("pager", "firing", "LookoutHeartbeatMissed", heartbeat="cron-job")
    report("job failing every run pages (from the stack's start)", time.monotonic() - started)

    # The backend of the orders service breaks: one page with its three targets.
    backend.status = 503
    outage = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        page = await hook.wait_for("pager", "firing", "LookoutProbeFailing")
    to_page = time.monotonic() - outage
    report("backend outage pages", to_page)
    assert to_page * SCALE <= 120, "an outage must page within 2 minutes at scale"
    await asyncio.sleep(2)  # any later page of the group would come within a second
    failing = [
        p for name, p in hook.notifications
        if name == "pager" and p["groupLabels"].get("alertname") == "LookoutProbeFailing"
    ]  # fmt: skip
    # One group, so one incident at the pager (PagerDuty's dedup key is the group key): a
    # target confirmed after the group's first notification joins it as an update.
    assert {p["groupKey"] for p in failing} == {failing[0]["groupKey"]}
    listed = {a["labels"]["target"] for p in failing for a in p["alerts"]}
    assert listed == {"orders-admin", "orders-api", "orders-feed"}
    assert failing[0]["groupLabels"] == {
        "alertname": "LookoutProbeFailing",
        "job": "lookout",
        "service": "orders",
    }
    print(f"scenario backend outage: {len(failing)} notification(s) of one group")
    assert "status (" in page["annotations"]["description"]

    backend.status = 200
    fixed = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await hook.wait_for("pager", "resolved", "LookoutProbeFailing", target="orders-api")
        report("fix resolves the outage page", time.monotonic() - fixed)
        for target in ("orders-admin", "orders-feed"):
            await hook.wait_for("pager", "resolved", "LookoutProbeFailing", target=target)
    await asyncio.sleep(1.5)  # the group's last update

    # The job is still failing on every run: its page never resolved.
    assert ("resolved", "cron-job") not in alerts_of(hook, "pager", "LookoutHeartbeatMissed")

    # One of the pool's three workers stopped at the start: a ticket that names it.
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        missing = await hook.wait_for(
            "chat", "firing", "LookoutHeartbeatInstancesMissing", heartbeat="pool"
        )
    report("a stopped worker is named (from the stack's start)", time.monotonic() - started)
    assert missing["annotations"]["description"].endswith("Missing: w3.")

    # The exporter is killed: an exporter page, and no all-clear for what it watched.
    delivered_before = len(hook.notifications)
    main.signal(signal.SIGKILL)
    killed = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await hook.wait_for("pager", "firing", "LookoutExporterDown")
    report("exporter killed pages as the exporter", time.monotonic() - killed)
    await asyncio.sleep(4)
    after = hook.notifications[delivered_before:]
    resolved = [
        (name, a["labels"]["alertname"])
        for name, p in after
        for a in p["alerts"]
        if a["status"] == "resolved"
    ]
    assert resolved == [], resolved

    # Exactly these pages, and nothing for the blip, the target in maintenance, the blind
    # exporter's target or the burn rates.
    pages = {(a["labels"]["alertname"], a["status"]) for a in hook.delivered("pager")}
    assert pages == {
        ("LookoutExporterConnectivityLost", "firing"),
        ("LookoutHeartbeatMissed", "firing"),
        ("LookoutProbeFailing", "firing"),
        ("LookoutProbeFailing", "resolved"),
        ("LookoutExporterDown", "firing"),
    }
    quiet = [
        (a["labels"]["alertname"], a["labels"].get("target"), a["status"])
        for a in hook.delivered("pager") + hook.delivered("chat")
        if a["labels"].get("target") in {"blip", "patched", "remote-api"}
    ]
    assert quiet == [], quiet
    assert alerts_of(hook, "pager", "LookoutHeartbeatMissed") == [("firing", "cron-job")]
    # Its failed runs (a warning, silenced by the missed deadline once that pages) never
    # resolved either.
    assert ("resolved", "cron-job") not in alerts_of(hook, "chat", "LookoutHeartbeatFailed")
    assert hook.delivered("deadmansswitch")
