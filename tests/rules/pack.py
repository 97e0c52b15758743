"""The rule pack as data: its files, its alerting rules and the promtool unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["ALERTS", "ROOT", "RULE_FILES", "UNIT_TESTS", "alert_id"]

ROOT = Path(__file__).resolve().parent.parent.parent
RULE_FILES = sorted([*ROOT.glob("rules/recording/*.yml"), *ROOT.glob("rules/alerts/*.yml")])
UNIT_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yml"))


def _alerts() -> list[dict[str, Any]]:
    alerts = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts.extend(rule for rule in group["rules"] if "alert" in rule)
    return alerts


# Every alerting rule (an alert with a warning and a critical rule appears twice).
ALERTS = _alerts()


def alert_id(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-{rule['labels'].get('severity')}"
