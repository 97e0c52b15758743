"""Reading an exposition in tests, through prometheus_client's own parser, and linting it with
promtool."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.processes import run
from tests.tools import require_tool


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``, or None."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def series_names(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def assert_promtool_accepts(text: str) -> None:
    """``promtool check metrics`` exits 0 and reports no problem at all in ``text``."""
    promtool = require_tool("promtool")
    result = run([promtool, "check", "metrics"], stdin=text, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
