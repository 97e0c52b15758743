"""The alert rule pack: promtool accepts it and its unit tests pass, and every alert carries what
the on-call engineer needs (severity, summary, description, runbook, dashboard) and is proven to
fire by a unit test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.processes import run
from tests.rules.pack import ALERTS, ROOT, RULE_FILES, UNIT_TESTS, alert_id
from tests.tools import require_tool

pytestmark = pytest.mark.tools

RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/lookout-exporter/lookout/blob/main/docs/runbooks/"
DASHBOARD_UIDS = {
    "lookout-overview",
    "lookout-endpoint",
    "lookout-heartbeats",
    "lookout-host",
    "lookout-sla",
}
SEVERITIES = {"critical", "warning", "info"}
# What every dashboard link starts with, and the page and endpoint annotations of target and
# heartbeat alerts: read from lookout_links_info and lookout_probe_endpoint_info.
GRAFANA_ROOT = (
    '{{ with query `lookout_links_info{grafana_url!=""}` }}'
    "{{ (index . 0).Labels.grafana_url }}{{ end }}"
)
PAGE_URL = (
    '{{{{ with printf `lookout_links_info{{job=%q,external_url!=""}}` $labels.job | query }}}}'
    "{{{{ (index . 0).Labels.external_url }}}}/{page}/{{{{ $labels.{label} }}}}{{{{ end }}}}"
)
ENDPOINT = (
    "{{ with printf `max by (endpoint) (lookout_probe_endpoint_info{job=%q,target=%q})` "
    "$labels.job $labels.target | query }}{{ (index . 0).Labels.endpoint }}{{ end }}"
)
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
# Always firing by design: it has no case in which it must not fire.
ALWAYS_FIRING = {"LookoutWatchdog"}
# Alerts on the confirmed probe state (confirm: failures in a row already stand between a blip
# and the alert), which may wait only 15 seconds so an outage pages within 2 minutes.
CONFIRMED_STATE = {"LookoutProbeFailing"}
ALERT_NAMES = sorted({rule["alert"] for rule in ALERTS})


def kebab(name: str) -> str:
    """LookoutSLOFastBurn -> lookout-slo-fast-burn (acronyms stay one word)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def unit_test_cases() -> list[dict[str, Any]]:
    cases = []
    for path in UNIT_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


CASES = unit_test_cases()


def test_rule_files_and_unit_tests_exist() -> None:
    """The globs find the pack: an empty glob would make every other test here vacuous."""
    assert len(RULE_FILES) >= 9
    assert len(UNIT_TESTS) >= 7
    assert len(ALERT_NAMES) >= 20


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(unit_test: Path) -> None:
    promtool = require_tool("promtool")
    result = run([promtool, "test", "rules", unit_test.name], cwd=unit_test.parent, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_alert_has_severity_and_every_annotation(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Lookout[A-Z][A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in SEVERITIES
    assert set(rule["annotations"]) - {"page_url", "endpoint"} == ANNOTATIONS
    assert all(value.strip() for value in rule["annotations"].values())


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_alert_waits_before_firing(rule: dict[str, Any]) -> None:
    """A `for:` of at least a minute (15s on the confirmed state) keeps a single bad evaluation
    from notifying anyone."""
    if rule["alert"] in ALWAYS_FIRING:
        assert "for" not in rule
        return
    if rule["alert"] in CONFIRMED_STATE:
        assert rule["for"] == "15s"
        return
    assert re.fullmatch(r"\d+[mh]", rule["for"]), rule.get("for")


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_summary_is_the_same_for_every_alert_of_a_name(name: str) -> None:
    """Summaries are static text, so one notification for a group of alerts reads right."""
    summaries = {rule["annotations"]["summary"] for rule in ALERTS if rule["alert"] == name}
    assert len(summaries) == 1
    assert "{{" not in summaries.pop()


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_runbook_url_points_to_an_existing_runbook(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url == f"{RUNBOOK_BASE}{kebab(rule['alert'])}.md"
    page = RUNBOOKS / url.removeprefix(RUNBOOK_BASE)
    assert page.is_file(), f"{page} is missing"
    assert page.read_text().startswith(f"# {rule['alert']}\n")


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_dashboard_url_opens_a_lookout_dashboard(rule: dict[str, Any]) -> None:
    """Below the Grafana root exported in lookout_links_info (empty when not configured)."""
    url = rule["annotations"]["dashboard_url"]
    assert url.startswith(GRAFANA_ROOT), url
    match = re.fullmatch(r"/d/([a-z-]+)/\1(\?.*)?", url.removeprefix(GRAFANA_ROOT))
    assert match, url
    assert match.group(1) in DASHBOARD_UIDS


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_an_alert_about_a_target_or_heartbeat_links_its_page_on_the_exporter(
    rule: dict[str, Any],
) -> None:
    labels = re.findall(r"\$labels\.(target|heartbeat)\b", rule["annotations"]["description"])
    annotations = rule["annotations"]
    if "target" in labels:
        assert annotations["page_url"] == PAGE_URL.format(page="targets", label="target")
        assert annotations["endpoint"] == ENDPOINT
    elif "heartbeat" in labels:
        assert annotations["page_url"] == PAGE_URL.format(page="heartbeats", label="heartbeat")
    else:
        assert "page_url" not in annotations


def test_runbook_index_lists_every_runbook_and_no_other() -> None:
    pages = {path.name for path in RUNBOOKS.glob("*.md")} - {"README.md"}
    assert pages == {f"{kebab(name)}.md" for name in ALERT_NAMES}
    index = (RUNBOOKS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([a-z0-9-]+\.md)\)", index))
    assert linked == pages


@pytest.mark.parametrize("rule", ALERTS, ids=alert_id)
def test_alert_fires_in_a_unit_test(rule: dict[str, Any]) -> None:
    """Some unit test expects this alert, at this severity, to fire."""
    severity = rule["labels"]["severity"]
    assert any(
        case["alertname"] == rule["alert"]
        and any(alert["exp_labels"]["severity"] == severity for alert in case["exp_alerts"])
        for case in CASES
    )


@pytest.mark.parametrize("name", sorted(set(ALERT_NAMES) - ALWAYS_FIRING))
def test_alert_has_a_unit_test_where_it_must_not_fire(name: str) -> None:
    assert any(case["alertname"] == name and not case["exp_alerts"] for case in CASES)


def test_unit_tests_only_name_existing_alerts() -> None:
    assert {case["alertname"] for case in CASES} <= set(ALERT_NAMES)


def test_every_recorded_series_a_rule_uses_is_recorded() -> None:
    """A typo in a `level:metric:operation` name would silently match nothing; and nothing is
    recorded for no use except the budget remaining and the SLA figures (availability, MTTR,
    MTBF), which are for dashboards and queries."""
    rules = [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used = {
        name
        for rule in rules
        for name in re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["expr"])
    }
    assert used <= recorded, used - recorded
    sla = yaml.safe_load((ROOT / "rules" / "recording" / "sla.yml").read_text())
    figures = {rule["record"] for group in sla["groups"] for rule in group["rules"]}
    unused = recorded - used - figures
    assert unused == {"target_slo:lookout_probe_error_budget_remaining:ratio30d"}


# Each optional rule file and the default file it is loaded instead of.
REPLACEMENTS = {
    "slo-excluding-maintenance.yml": "recording/slo.yml",
    "sla-excluding-maintenance.yml": "recording/sla.yml",
}


def recorded_series(path: Path) -> set[str]:
    document = yaml.safe_load(path.read_text())
    return {
        rule["record"]
        for group in document["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


@pytest.mark.parametrize("optional", sorted(REPLACEMENTS))
def test_an_optional_rule_file_records_everything_the_file_it_replaces_does(optional: str) -> None:
    """Loaded instead of the default, it leaves no alert, dashboard or query without its series
    (the series labelled with their month, levels ending in ``_month``, are each method's own
    steps); and promtool accepts it beside what it requires."""
    replaced = {
        name
        for name in recorded_series(ROOT / "rules" / REPLACEMENTS[optional])
        if not name.split(":")[0].endswith("_month")
    }
    path = ROOT / "rules" / "optional" / optional
    assert replaced <= recorded_series(path), replaced - recorded_series(path)
    promtool = require_tool("promtool")
    maintenance = ROOT / "rules" / "recording" / "maintenance.yml"
    result = run([promtool, "check", "rules", str(maintenance), str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_optional_rule_file_names_the_file_it_replaces() -> None:
    optional = {path.name for path in (ROOT / "rules" / "optional").glob("*.yml")}
    assert optional == set(REPLACEMENTS)


def test_unit_tests_fail_when_an_annotation_changes(tmp_path: Path) -> None:
    """The unit tests compare annotations exactly: a changed description is caught."""
    promtool = require_tool("promtool")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "tests" / "rules", tmp_path / "tests" / "rules")
    alerts = tmp_path / "rules" / "alerts" / "probes.yml"
    text = alerts.read_text()
    assert "for more than 5 minutes while other" in text
    alerts.write_text(
        text.replace("for more than 5 minutes while other", "for a while while other")
    )
    result = run(
        [promtool, "test", "rules", "probes.test.yml"],
        cwd=tmp_path / "tests" / "rules",
        timeout=120,
    )
    assert result.returncode != 0
    assert "for a while while other" in result.stdout + result.stderr


def test_the_alerting_guide_names_every_alert() -> None:
    guide = (ROOT / "docs" / "alerting.md").read_text()
    assert [name for name in ALERT_NAMES if name not in guide] == []
