"""The rule pack as data: its files, its alerting rules and the promtool unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALERTMANAGER_CONFIG",
    "ALERTS",
    "ROOT",
    "RULE_FILES",
    "UNIT_TESTS",
    "alert_id",
    "loopback_alertmanager_config",
]

ROOT = Path(__file__).resolve().parent.parent.parent
RULE_FILES = sorted([*ROOT.glob("rules/recording/*.yml"), *ROOT.glob("rules/alerts/*.yml")])
UNIT_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yml"))
ALERTMANAGER_CONFIG = ROOT / "rules" / "alertmanager" / "alertmanager.yml"


def _alerts() -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts.extend(rule for rule in group["rules"] if "alert" in rule)
    return alerts


# Every alerting rule (an alert with a warning and a critical rule appears twice).
ALERTS = _alerts()


def alert_id(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-{rule['labels'].get('severity')}"


def loopback_alertmanager_config(hook: str) -> dict[str, Any]:
    """The example Alertmanager config's routes and inhibitions, with every receiver posting to
    ``hook/<receiver name>`` and groups flushed after 1s instead of minutes."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
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
