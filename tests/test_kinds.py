"""The registry of probe kinds is the one list of kinds: the schema, the docs and the metrics
reference must follow it, and a kind's own families must not collide with anyone else's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.collectors.catalog import ALL_FAMILIES
from exporter.config import schema
from exporter.probes.registry import KINDS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def kind_branches() -> dict[str, str]:
    """The schema's per-kind sections: kind name -> the $ref of its ``then``."""
    branches = {}
    for branch in schema()["$defs"]["target"]["allOf"]:
        kind = branch["if"]["properties"]["kind"]["const"]
        branches[kind] = branch["then"]["$ref"]
    return branches


def test_the_schema_enum_lists_exactly_the_registered_kinds() -> None:
    enum = schema()["$defs"]["target"]["properties"]["kind"]["enum"]
    assert sorted(enum) == sorted(KINDS)


def test_each_kind_is_registered_under_its_own_name() -> None:
    assert [kind.name for kind in KINDS.values()] == list(KINDS)


def test_every_registered_kind_has_its_own_schema_section() -> None:
    definitions = schema()["$defs"]
    branches = kind_branches()
    assert sorted(branches) == sorted(KINDS)
    for kind, ref in branches.items():
        assert ref.removeprefix("#/$defs/") in definitions, kind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_section_in_the_probe_docs(kind: str) -> None:
    text = (DOCS / "probes.md").read_text() + (DOCS / "configuration.md").read_text()
    assert re.search(rf"^## `kind: {kind}`", text, re.MULTILINE), kind


def test_every_family_is_in_the_metrics_reference() -> None:
    """docs/metrics.md, or the page it links for heartbeats and the host."""
    reference = "".join(
        (DOCS / page).read_text() for page in ("metrics.md", "heartbeats.md", "host-metrics.md")
    )
    missing = [f.name for f in ALL_FAMILIES if f"`{f.name}" not in reference]
    assert not missing


def test_family_names_are_unique_across_kinds_and_collectors() -> None:
    names = [f.name for f in ALL_FAMILIES]
    assert len(names) == len(set(names))
