"""The schema's patterns that jsonschema-rs checks itself (``config_schema.portable_pattern``)
accept exactly the strings Python's ``re`` accepts, edges included: a final newline, line and
paragraph separators, Unicode spaces and digits."""

from __future__ import annotations

import json
import re

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config_schema import portable_pattern, schema


def patterns(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                found.add(value)
            else:
                found |= patterns(value)
    elif isinstance(node, list):
        for item in node:
            found |= patterns(item)
    return found


PORTABLE = sorted(p for p in patterns(schema()) if portable_pattern(p) is not None)
EDGES = "\n\r\t \x0b\x0c\x1c\x85\xa0\u2028\u2029\u3000\ufeff\u0663Aa0_-.:/@$^[]{}()|*+?#%&'`~"


def test_the_names_durations_and_statuses_of_every_target_are_among_them() -> None:
    assert len(PORTABLE) >= 8
    assert portable_pattern(r"^[^\s/]+$") is None
    assert portable_pattern("^a.b$") is None


@pytest.mark.parametrize("pattern", PORTABLE)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_jsonschema_rs_accepts_what_python_accepts(pattern: str, data: st.DataObject) -> None:
    rust = jsonschema_rs.validator_for({"type": "string", "pattern": portable_pattern(pattern)})
    matching = st.from_regex(pattern)
    text = data.draw(
        st.one_of(
            matching,
            matching.map(lambda t: t + "\n"),
            matching.map(lambda t: t + "\n\n"),
            matching.map(lambda t: "\n" + t),
            st.tuples(matching, st.sampled_from(EDGES)).map("".join),
            st.tuples(st.sampled_from(EDGES), matching).map("".join),
            st.text(alphabet=st.sampled_from(EDGES), max_size=8),
            st.text(max_size=12),
        )
    )
    assert rust.is_valid(text) == (re.search(pattern, text) is not None), json.dumps(text)
