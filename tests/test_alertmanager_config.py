"""The example Alertmanager config (rules/alertmanager/alertmanager.yml): amtool accepts it, each
severity reaches its receiver, secrets come from files, and a running Alertmanager with its
route tree and inhibition rules delivers exactly the alerts it should.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.processes import free_port, run, running
from tests.rules.pack import ALERTMANAGER_CONFIG, ALERTS, alert_id, loopback_alertmanager_config
from tests.rules.stack import webhook_server
from tests.tools import require_tool

pytestmark = pytest.mark.tools

CONFIG = ALERTMANAGER_CONFIG
RECEIVER_BY_SEVERITY = {"critical": "pager", "warning": "chat", "info": "null"}


def route(*labels: str) -> str:
    amtool = require_tool("amtool")
    result = run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels], timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_amtool_check_config_accepts_the_example() -> None:
    amtool = require_tool("amtool")
    result = run([amtool, "check-config", str(CONFIG)], timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


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


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "job": "lookout", **labels},
        "annotations": {"summary": name},
    }


async def test_running_alertmanager_routes_by_severity_and_inhibits_warnings_of_a_critical_target(
    tmp_path: Path,
) -> None:
    binary = require_tool("alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
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
    expected = {
        "pager": {("LookoutProbeFailing", "orders"), ("LookoutHeartbeatMissed", "nightly")},
        "chat": {("LookoutProbeLocationFailing", "cart"), ("LookoutHeartbeatFailed", "import")},
        "deadmansswitch": {("LookoutWatchdog", "")},
    }
    async with webhook_server() as (hook, hook_url):
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(loopback_alertmanager_config(hook_url)))
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        async with running(argv, f"{base}/-/ready", tmp_path / "alertmanager.log"):
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{base}/api/v2/alerts", json=alerts) as response:
                    assert response.status == 200, await response.text()
                async with session.get(f"{base}/api/v2/alerts") as response:
                    states = [(a["labels"], a["status"]["state"]) for a in await response.json()]
            suppressed = {subject(labels) for labels, state in states if state == "suppressed"}
            assert suppressed == {
                ("LookoutProbeLocationFailing", "orders"),
                ("LookoutHeartbeatFailed", "nightly"),
            }
            async with asyncio.timeout(20):
                for receiver, subjects in expected.items():
                    for name, _ in subjects:
                        await hook.wait_for(receiver, "firing", name)
            for receiver, subjects in expected.items():
                assert {subject(a["labels"]) for a in hook.delivered(receiver)} == subjects
            assert {name for name, _ in hook.notifications} == set(expected)


def subject(labels: dict[str, str]) -> tuple[str, str]:
    return labels["alertname"], labels.get("target") or labels.get("heartbeat") or ""


async def test_running_alertmanager_pages_once_per_service_and_as_the_exporter(
    tmp_path: Path,
) -> None:
    """Two targets of one service arrive as one page; a failing target silences its burn rate;
    a down or blind exporter silences the alerts about what it sees and its heartbeats."""
    binary = require_tool("alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    alerts = [
        alert("LookoutProbeFailing", "critical", target="orders-a", service="orders"),
        alert("LookoutProbeFailing", "critical", target="orders-b", service="orders"),
        alert("LookoutSLOFastBurn", "critical", target="orders-a", service="orders", slo="x"),
        alert("LookoutSLOFastBurn", "critical", target="search", slo="availability"),
        alert("LookoutExporterDown", "critical", instance="eu:9471"),
        alert(
            "LookoutCertificateVerificationFailing", "critical", target="api", instance="eu:9471"
        ),
        alert("LookoutHeartbeatMissed", "critical", heartbeat="nightly"),
        alert("LookoutExporterConnectivityLost", "critical", instance="us:9471", location="us"),
        alert(
            "LookoutProbeLocationFailing",
            "warning",
            target="cart",
            instance="us:9471",
            location="us",
        ),
    ]
    async with webhook_server() as (hook, hook_url):
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(loopback_alertmanager_config(hook_url)))
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        async with running(argv, f"{base}/-/ready", tmp_path / "alertmanager.log"):
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{base}/api/v2/alerts", json=alerts) as response:
                    assert response.status == 200, await response.text()
                async with session.get(f"{base}/api/v2/alerts") as response:
                    states = [(a["labels"], a["status"]["state"]) for a in await response.json()]
            suppressed = {subject(labels) for labels, state in states if state == "suppressed"}
            assert suppressed == {
                ("LookoutSLOFastBurn", "orders-a"),
                ("LookoutCertificateVerificationFailing", "api"),
                ("LookoutHeartbeatMissed", "nightly"),
                ("LookoutProbeLocationFailing", "cart"),
            }
            async with asyncio.timeout(20):
                for name in (
                    "LookoutProbeFailing",
                    "LookoutSLOFastBurn",
                    "LookoutExporterDown",
                    "LookoutExporterConnectivityLost",
                ):
                    await hook.wait_for("pager", "firing", name)
            pages = [p for name, p in hook.notifications if name == "pager"]
            first: dict[str, set[str]] = {}
            for page in pages:
                first.setdefault(
                    page["groupLabels"]["alertname"],
                    {subject(a["labels"])[1] for a in page["alerts"]},
                )
            # Both orders targets are in the group's first page.
            assert first == {
                "LookoutProbeFailing": {"orders-a", "orders-b"},
                "LookoutSLOFastBurn": {"search"},
                "LookoutExporterDown": {""},
                "LookoutExporterConnectivityLost": {""},
            }
            assert not hook.delivered("chat")
