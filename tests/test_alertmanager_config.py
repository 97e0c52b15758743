"""The example Alertmanager config (rules/alertmanager/alertmanager.yml): amtool accepts it, each
severity reaches its receiver, secrets come from files, and a running Alertmanager with its
route tree and inhibition rules delivers exactly the alerts it should.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.rules.pack import ALERTS, ROOT, alert_id
from tests.rules.stack import free_port, running
from tests.tools import require_tool

pytestmark = pytest.mark.tools

CONFIG = ROOT / "rules" / "alertmanager" / "alertmanager.yml"
RECEIVER_BY_SEVERITY = {"critical": "pager", "warning": "chat", "info": "null"}


def route(*labels: str) -> str:
    amtool = require_tool("amtool")
    run = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout.strip()


def test_amtool_check_config_accepts_the_example() -> None:
    amtool = require_tool("amtool")
    run = subprocess.run(
        [amtool, "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        pytest.param(
            ("alertname=LookoutProbeFailing", "severity=critical"), "pager", id="critical"
        ),
        pytest.param(("alertname=LookoutProbeSlow", "severity=warning"), "chat", id="warning"),
        pytest.param(("alertname=LookoutHostCPUHighUsage", "severity=info"), "null", id="info"),
        pytest.param(
            ("alertname=LookoutWatchdog", "severity=info"), "deadmansswitch", id="watchdog"
        ),
        pytest.param(("alertname=SomethingElse",), "chat", id="no-severity-falls-back-to-chat"),
    ],
)
def test_amtool_routes_each_severity_to_its_receiver(
    labels: tuple[str, ...], receiver: str
) -> None:
    assert route(*labels) == receiver


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_every_alert_of_the_rule_pack_reaches_the_receiver_of_its_severity(
    rule: dict[str, Any],
) -> None:
    severity = rule["labels"]["severity"]
    expected = "deadmansswitch" if rule["alert"] == "LookoutWatchdog" else None
    received = route(f"alertname={rule['alert']}", f"severity={severity}", "target=orders")
    assert received == (expected or RECEIVER_BY_SEVERITY[severity])


def test_receivers_read_their_secrets_from_files() -> None:
    receivers = {r["name"]: r for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
    pagerduty = receivers["pager"]["pagerduty_configs"][0]
    assert "routing_key_file" in pagerduty
    assert "routing_key" not in pagerduty
    assert "service_key" not in pagerduty
    slack = receivers["chat"]["slack_configs"][0]
    assert "api_url_file" in slack
    assert "api_url" not in slack
    webhook = receivers["deadmansswitch"]["webhook_configs"][0]
    assert "credentials_file" in webhook["http_config"]["authorization"]


def loopback_config(hook: str) -> dict[str, Any]:
    """The example's routes and inhibitions, with every receiver posting to ``hook/<name>``
    and groups flushed after 1s instead of minutes."""
    config = yaml.safe_load(CONFIG.read_text())
    config["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{hook}/{r['name']}"}]}
        if r["name"] != "null"
        else {"name": "null"}
        for r in config["receivers"]
    ]
    for node in [config["route"], *config["route"]["routes"]]:
        node["group_wait"] = "1s"
        node["group_interval"] = "1s"
    return config


class Webhook:
    """Notifications received per receiver name, in arrival order."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def handle(self, request: web.Request) -> web.Response:
        await self.received.put((request.match_info["receiver"], await request.json()))
        return web.Response(text="ok")


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[Webhook, str]]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/{receiver}", hook.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield hook, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "job": "lookout", **labels},
        "annotations": {"summary": name},
    }


async def test_running_alertmanager_routes_by_severity_and_inhibits_warnings_of_a_critical_target(
    webhook: tuple[Webhook, str], tmp_path: Path
) -> None:
    hook, hook_url = webhook
    binary = require_tool("alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(loopback_config(hook_url)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    async with running(argv, f"{base}/-/ready", tmp_path / "alertmanager.log"):
        alerts = [
            alert("LookoutProbeFailing", "critical", target="orders"),
            alert("LookoutProbeLocationFailing", "warning", target="orders", location="eu"),
            alert("LookoutProbeLocationFailing", "warning", target="cart", location="eu"),
            alert("LookoutHeartbeatMissed", "critical", heartbeat="nightly"),
            alert("LookoutHeartbeatFailed", "warning", heartbeat="nightly"),
            alert("LookoutHeartbeatFailed", "warning", heartbeat="import"),
            alert("LookoutHostCPUHighUsage", "info", instance="host1:9471"),
            alert("LookoutWatchdog", "info"),
        ]
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/api/v2/alerts", json=alerts) as response:
                assert response.status == 200, await response.text()
            async with session.get(f"{base}/api/v2/alerts") as response:
                states = {
                    json.dumps(a["labels"], sort_keys=True): a["status"]["state"]
                    for a in await response.json()
                }
        suppressed = {
            (labels["alertname"], labels.get("target") or labels.get("heartbeat"))
            for key, state in states.items()
            if state == "suppressed"
            for labels in [json.loads(key)]
        }
        assert suppressed == {
            ("LookoutProbeLocationFailing", "orders"),
            ("LookoutHeartbeatFailed", "nightly"),
        }

        delivered: dict[str, set[str]] = {}
        expected = {
            "pager": {"LookoutProbeFailing/orders", "LookoutHeartbeatMissed/nightly"},
            "chat": {"LookoutProbeLocationFailing/cart", "LookoutHeartbeatFailed/import"},
            "deadmansswitch": {"LookoutWatchdog/"},
        }
        async with asyncio.timeout(20):
            while delivered != expected:
                receiver, payload = await hook.received.get()
                for item in payload["alerts"]:
                    labels = item["labels"]
                    key = labels.get("target") or labels.get("heartbeat") or ""
                    delivered.setdefault(receiver, set()).add(f"{labels['alertname']}/{key}")
                assert set(delivered) <= set(expected), delivered
                for name, names in delivered.items():
                    assert names <= expected[name], delivered
