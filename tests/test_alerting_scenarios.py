"""Alerting scenarios end to end: two exporters, Debian's Prometheus with the shipped rule pack
and Alertmanager with the example's routes, inhibitions and grouping deliver exactly the
notifications the on-call engineer should get, and the test prints how long each took.

Time runs 30 times faster than in production, with the same expressions: every ``for:`` and
``keep_firing_for`` of the pack is divided by 30 (15s -> 500ms, 1m -> 2s, 5m -> 10s), and so is
the evaluation interval of a group that sets its own (5s -> 167ms, 1m -> 2s), the
exporter uses the recommended defaults divided by 30 as well (``interval: 30s`` -> 1s,
``interval_when_failing: 10s`` -> 300ms, ``confirm: {failures: 2}``), Prometheus scrapes every
500ms (the recommended 15s) and evaluates the other groups every second (30s), and Alertmanager
waits the example's ``group_wait`` divided by 30 before a page (10s -> 334ms) and a second
before other groups.
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
- one endpoint's response stops matching its JSON Schema: one page naming json_schema, nothing
  for the service's healthy endpoint, and the fix resolves within the documented time;
- latency +800 ms on one endpoint: LookoutProbeSlow in chat, nothing at the pager;
- a certificate 10 days from expiry (``valid_for: 14d``): a warning in chat, never a page;
- an exporter restarted without its heartbeat store: LookoutHeartbeatStoreLost in chat for the
  heartbeat that had succeeded (not for the one that never pinged), resolved by its next
  success;
- the exporter killed: no resolved notification for anything, and an exporter page.

The scenarios run concurrently; the exporter is killed once they are all done. The exporters
are found through a file of scrape targets, so the restarted exporter (on a new port, like a
replaced pod) is added and its predecessor removed without a failing scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.exporter_process import run_exporter
from tests.processes import free_port, prometheus, running
from tests.rules.pack import ALERTMANAGER_CONFIG, ROOT, RULE_FILES, loopback_alertmanager_config
from tests.rules.stack import Webhook, webhook_server
from tests.test_alerting_e2e import Upstream, upstream_server
from tests.tools import require_tool

pytestmark = pytest.mark.tools

SCALE = 30
NOTIFY_TIMEOUT = 30
# For an alert with a `for: 10m` (20 s here).
SLOW_ALERT_TIMEOUT = 60


def scaled(duration: str) -> str:
    """A Prometheus duration (``15s``, ``5m``, ``1h``) divided by SCALE, in whole milliseconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    seconds = int(match[1]) * units[match[2]]
    return f"{math.ceil(seconds * 1000 / SCALE)}ms"


def scaled_rule_files(dest: Path) -> None:
    """Copies of the rule files under ``dest`` with ``for:``, ``keep_firing_for`` and the
    groups' own evaluation intervals scaled."""
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


# What the catalog's endpoints promise: a list of items with string ids.
ITEMS_SCHEMA = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}},
            },
        }
    },
}
# The slow endpoint's latency objective: a slowdown of every probe burns its budget at 5x, a
# ticket (LookoutSLOSlowBurn) and no page; with 99% it would page as LookoutSLOFastBurn.
SEARCH_SLO = {"latency": {"threshold": "500ms", "objective": 80}}
SLOWDOWN = 0.8


class Api:
    """Two JSON endpoints of a catalog service (``item_id`` can break the first one's schema)
    and a search endpoint that answers after ``delay`` seconds."""

    def __init__(self) -> None:
        self.item_id: object = "sku-1"
        self.delay = 0.0

    async def items(self, _request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": self.item_id}]})

    async def prices(self, _request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": "sku-1", "price": 3}]})

    async def search(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return web.json_response({"hits": []})


@contextlib.asynccontextmanager
async def api_server() -> AsyncIterator[tuple[Api, str]]:
    api = Api()
    app = web.Application()
    app.router.add_get("/items", api.items)
    app.router.add_get("/prices", api.prices)
    app.router.add_get("/search", api.search)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield api, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


class ScrapeTargets:
    """The ``lookout`` job's targets, in a file Prometheus watches (``file_sd_configs``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.addresses: list[str] = []

    def set(self, addresses: list[str]) -> None:
        self.addresses = addresses
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps([{"targets": addresses}]))
        os.replace(partial, self.path)


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def until_present(session: aiohttp.ClientSession, base: str, expr: str) -> None:
    """Wait until Prometheus answers ``expr`` with at least one series."""
    while True:
        if await query(session, base, expr):
            return
        await asyncio.sleep(0.2)


async def until_scraping(session: aiohttp.ClientSession, base: str, addresses: list[str]) -> None:
    """Wait until Prometheus's active targets are exactly ``addresses``."""
    while True:
        async with session.get(f"{base}/api/v1/targets", params={"state": "active"}) as response:
            body = await response.json()
        active = {t["labels"]["instance"] for t in body["data"]["activeTargets"]}
        if active == set(addresses):
            return
        await asyncio.sleep(0.2)


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
    tmp_path: Path, ca: trustme.CA
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
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=now + timedelta(days=10)).configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with (
        upstream_server() as (backend, backend_url),
        blip_server() as (blip, blip_url),
        upstream_server() as (patched, patched_url),
        api_server() as (api, api_url),
        upstream_server(server_context) as (_, tls_url),
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
                *(
                    {
                        "name": f"catalog-{part}",
                        "kind": "http",
                        "url": f"{api_url}/{part}",
                        "labels": {"service": "catalog"},
                        "expect": {"json_schema": ITEMS_SCHEMA},
                    }
                    for part in ("items", "prices")
                ),
                {
                    "name": "search",
                    "kind": "http",
                    "url": f"{api_url}/search",
                    # Latency is not scaled: 800 ms is 800 ms in production too, so this
                    # target keeps more room (a 1m interval, at scale) than the defaults.
                    "interval": "2s",
                    "timeout": "2s",
                    "interval_when_failing": "2s",
                    "slo": SEARCH_SLO,
                },
                {
                    "name": "api-cert",
                    "kind": "tls",
                    "address": tls_url.removeprefix("https://"),
                    "tls": {"ca_file": str(ca_file)},
                    "expect": {"valid_for": "14d"},  # the README's example
                },
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
        # An hourly report (a period of 2 minutes here) that succeeds, and a weekly job that
        # has not run yet, on an exporter that will lose its store.
        restart_config = {
            "heartbeats": [
                {"name": "hourly-report", "period": "2m", "grace": "1m"},
                {"name": "weekly-cleanup", "period": "2m", "grace": "1m"},
            ],
            "host": {"enabled": False},
        }
        for name, document in (
            ("main", config),
            ("blind", blind_config),
            ("restart", restart_config),
        ):
            (tmp_path / name).mkdir()
            (tmp_path / name / "lookout.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(
            yaml.safe_dump(scaled_pager_wait(loopback_alertmanager_config(hook_url)))
        )
        targets = ScrapeTargets(tmp_path / "targets.json")
        async with (
            run_exporter(
                ["--config", str(tmp_path / "main" / "lookout.yml")],
                tmp_path / "main",
                ready="/-/ready",
            ) as main,
            run_exporter(
                ["--config", str(tmp_path / "blind" / "lookout.yml")], tmp_path / "blind"
            ) as blind,
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
            targets.set([main.url.removeprefix("http://"), blind.url.removeprefix("http://")])
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
                        "file_sd_configs": [
                            {"files": [str(targets.path)], "refresh_interval": "1s"}
                        ],
                    }
                ],
            }
            async with (
                prometheus(settings, tmp_path, "--rules.alert.resend-delay=1s") as prom,
                aiohttp.ClientSession() as session,
            ):
                await post(session, f"{main.url}/ping/cron-job")  # its last success
                await post(session, f"{main.url}/ping/pool?instance=w3")  # then it stops
                tasks = [
                    asyncio.create_task(cron_job_failing_every_run(session, main.url)),
                    asyncio.create_task(worker(session, main.url, "w1")),
                    asyncio.create_task(worker(session, main.url, "w2")),
                ]
                stack = Stack(hook, session, prom, targets, tmp_path / "restart")
                try:
                    async with asyncio.TaskGroup() as group:  # one failing cancels the rest
                        group.create_task(scenarios(hook, backend, blip, blind))
                        group.create_task(schema_breaks_and_is_fixed(stack, api))
                        group.create_task(latency_rises(stack, api))
                        group.create_task(certificate_ten_days_from_expiry(stack))
                        group.create_task(restarted_without_its_store(stack))
                    await exporter_killed(hook, main)
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError):
                            await task


class Stack:
    """What the concurrent scenarios share: the webhook, Prometheus and its scrape targets."""

    def __init__(
        self,
        hook: Webhook,
        session: aiohttp.ClientSession,
        prometheus: str,
        targets: ScrapeTargets,
        restart: Path,
    ) -> None:
        self.hook = hook
        self.session = session
        self.prometheus = prometheus
        self.targets = targets
        self.restart = restart

    async def delivering(self) -> None:
        """Wait until Prometheus has found Alertmanager and notifications arrive (the
        watchdog's), so a scenario's time does not include the stack's start."""
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            await self.hook.wait_for("deadmansswitch", "firing", "LookoutWatchdog")


def about(hook: Webhook, receiver: str, target: str) -> list[tuple[str, str, str]]:
    """(alertname, severity, status) of every alert about ``target`` delivered to ``receiver``."""
    return [
        (a["labels"]["alertname"], a["labels"]["severity"], a["status"])
        for a in hook.delivered(receiver)
        if a["labels"].get("target") == target
    ]


async def schema_breaks_and_is_fixed(stack: Stack, api: Api) -> None:
    hook = stack.hook
    await stack.delivering()
    api.item_id = 7  # one endpoint of the catalog now answers an id that is not a string
    broken = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        page = await hook.wait_for("pager", "firing", "LookoutProbeFailing", service="catalog")
    report("a JSON schema break on one endpoint pages", time.monotonic() - broken)
    assert page["labels"]["target"] == "catalog-items"
    assert page["labels"]["severity"] == "critical"
    description = page["annotations"]["description"]
    assert re.search(r"Failures in the last 5 minutes: json_schema \(\d+\)\.", description)
    assert (
        "Latest failure: json_schema: JSON Schema: $.items[0].id: is a number, not of type"
        " 'string'."
    ) in description
    await asyncio.sleep(2)  # a later notification of the group would come within a second
    catalog = [
        p for name, p in hook.notifications
        if name == "pager" and p["groupLabels"].get("service") == "catalog"
    ]  # fmt: skip
    assert len(catalog) == 1, catalog  # one page, listing the broken endpoint only
    assert [a["labels"]["target"] for a in catalog[0]["alerts"]] == ["catalog-items"]

    api.item_id = "sku-1"
    fixed = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await hook.wait_for("pager", "resolved", "LookoutProbeFailing", target="catalog-items")
    took = time.monotonic() - fixed
    report("the schema fix resolves its page", took)
    # docs/alerting.md, "Resolution times": LookoutProbeFailing resolves within 4 minutes of
    # the fix.
    assert took * SCALE <= 4 * 60, took
    await asyncio.sleep(1.5)  # the group's last update
    assert about(hook, "pager", "catalog-items") == [
        ("LookoutProbeFailing", "critical", "firing"),
        ("LookoutProbeFailing", "critical", "resolved"),
    ]
    assert about(hook, "chat", "catalog-items") == []
    for receiver in ("pager", "chat"):
        assert about(hook, receiver, "catalog-prices") == []


async def latency_rises(stack: Stack, api: Api) -> None:
    hook = stack.hook
    # Prometheus has seen it fast before it slows down.
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await until_present(
            stack.session,
            stack.prometheus,
            'target_location:lookout_probe_duration_seconds:p95_rate10m{target="search"} < 0.5',
        )
    api.delay = SLOWDOWN
    slowed = time.monotonic()
    async with asyncio.timeout(SLOW_ALERT_TIMEOUT):
        slow = await hook.wait_for("chat", "firing", "LookoutProbeSlow", target="search")
    report("latency +800 ms reaches chat", time.monotonic() - slowed)
    assert slow["labels"]["severity"] == "warning"
    assert "above the target's latency threshold" in slow["annotations"]["description"]
    assert about(hook, "pager", "search") == []
    # Warnings only: the slowness, and perhaps the slow burn of its latency budget.
    assert {severity for _, severity, _ in about(hook, "chat", "search")} == {"warning"}


async def certificate_ten_days_from_expiry(stack: Stack) -> None:
    hook = stack.hook
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await until_present(
            stack.session,
            stack.prometheus,
            'target:lookout_tls_cert_expiry_timestamp_seconds:min{target="api-cert"}',
        )
    seen = time.monotonic()
    async with asyncio.timeout(SLOW_ALERT_TIMEOUT):
        warning = await hook.wait_for(
            "chat", "firing", "LookoutCertificateExpiring", target="api-cert"
        )
    report(
        "a certificate 10 days from expiry reaches chat (from its first scrape)",
        time.monotonic() - seen,
    )
    assert warning["labels"]["severity"] == "warning"
    assert re.search(r"expires in 9d 23h \d+m", warning["annotations"]["description"])
    await asyncio.sleep(2)  # a page (the critical rule, or the valid_for failure) would be here
    assert about(hook, "pager", "api-cert") == []
    assert about(hook, "chat", "api-cert") == [("LookoutCertificateExpiring", "warning", "firing")]


async def restarted_without_its_store(stack: Stack) -> None:
    restart_heartbeats = {"hourly-report", "weekly-cleanup"}
    hook, session, prom, targets = stack.hook, stack.session, stack.prometheus, stack.targets
    config = ["--config", str(stack.restart / "lookout.yml")]
    async with run_exporter(config, stack.restart, ready="/-/ready") as first:
        await post(session, f"{first.url}/ping/hourly-report")
        address = first.url.removeprefix("http://")
        targets.set([*targets.addresses, address])
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            await until_present(
                session,
                prom,
                f'lookout_heartbeat_last_success_timestamp_seconds{{instance="{address}"}}',
            )
            await stack.delivering()
            # Replaced like a pod: out of the scrape targets first, so no scrape fails.
            targets.set([a for a in targets.addresses if a != address])
            await until_scraping(session, prom, targets.addresses)
    lost = list((stack.restart / "data").glob("heartbeats.sqlite*"))
    assert lost
    for path in lost:
        path.unlink()
    async with run_exporter(config, stack.restart, ready="/-/ready") as second:
        address = second.url.removeprefix("http://")
        targets.set([*targets.addresses, address])
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            await until_present(session, prom, f'up{{instance="{address}"}} == 1')
        restarted = time.monotonic()  # Prometheus has scraped the new exporter
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            alert = await hook.wait_for("chat", "firing", "LookoutHeartbeatStoreLost")
        report(
            "an exporter restarted without its store reaches chat (from its first scrape)",
            time.monotonic() - restarted,
        )
        assert alert["labels"]["heartbeat"] == "hourly-report"
        assert alert["labels"]["severity"] == "warning"
        assert "declared afresh" in alert["annotations"]["description"]

        await post(session, f"{second.url}/ping/hourly-report")
        succeeded = time.monotonic()
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            await hook.wait_for("chat", "resolved", "LookoutHeartbeatStoreLost")
        report("its next success resolves it", time.monotonic() - succeeded)
        store_alerts = [
            (a["labels"]["heartbeat"], a["status"])
            for a in hook.delivered("chat")
            if a["labels"]["alertname"] == "LookoutHeartbeatStoreLost"
        ]
        assert store_alerts == [("hourly-report", "firing"), ("hourly-report", "resolved")]
        # Their deadlines count from the restart: no page.
        assert [
            a for a in hook.delivered("pager") if a["labels"].get("heartbeat") in restart_heartbeats
        ] == []
        targets.set([a for a in targets.addresses if a != address])
        async with asyncio.timeout(NOTIFY_TIMEOUT):
            await until_scraping(session, prom, targets.addresses)


async def scenarios(hook: Webhook, backend: Upstream, blip: Blip, blind: Any) -> None:
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
        page = await hook.wait_for("pager", "firing", "LookoutProbeFailing", service="orders")
    to_page = time.monotonic() - outage
    report("backend outage pages", to_page)
    assert to_page * SCALE <= 120, "an outage must page within 2 minutes at scale"
    await asyncio.sleep(2)  # any later page of the group would come within a second
    failing = [
        p for name, p in hook.notifications
        if name == "pager" and p["groupLabels"].get("alertname") == "LookoutProbeFailing"
        and p["groupLabels"].get("service") == "orders"
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


async def exporter_killed(hook: Webhook, main: Any) -> None:
    """The end of every scenario: the exporter is killed."""
    # The exporter is killed: an exporter page, and no all-clear for what it watched.
    delivered_before = len(hook.notifications)
    main.signal(signal.SIGKILL)
    killed = time.monotonic()
    async with asyncio.timeout(NOTIFY_TIMEOUT):
        await hook.wait_for("pager", "firing", "LookoutExporterDown")
    report("exporter killed pages as the exporter", time.monotonic() - killed)
    # Only the killed exporter: the restarted one was replaced without a failed scrape.
    assert {
        a["labels"]["instance"]
        for a in hook.delivered("pager")
        if a["labels"]["alertname"] == "LookoutExporterDown"
    } == {main.url.removeprefix("http://")}
    # The slow endpoint and the expiring certificate never paged.
    for target in ("search", "api-cert"):
        assert about(hook, "pager", target) == []
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
        if a["labels"].get("target") in {"blip", "patched", "remote-api", "catalog-prices"}
    ]
    assert quiet == [], quiet
    assert alerts_of(hook, "pager", "LookoutHeartbeatMissed") == [("firing", "cron-job")]
    # Its failed runs (a warning, silenced by the missed deadline once that pages) never
    # resolved either.
    assert ("resolved", "cron-job") not in alerts_of(hook, "chat", "LookoutHeartbeatFailed")
    assert hook.delivered("deadmansswitch")
