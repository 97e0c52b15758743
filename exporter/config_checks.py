"""Checks the values JSON Schema cannot judge, before any builder sees them.

Durations, sizes and status patterns must parse and stay within bounds (``units``), intervals
must not be shorter than ``MIN_INTERVAL``, regular expressions must compile, and SLO objectives
must be percentages rather than ratios. Each problem names the key it is about, so a builder
never meets a value that makes it raise.

Which key holds what comes from the schema: a value whose schema is ``$defs/duration``
(``interval``, ``size``, ``status_pattern``, ``regex``, ``percentage``) is checked as one wherever
it is, so a key added to the schema is checked without a change here. A target's kind picks its
section (the schema's ``if: {properties: {kind: {const: ...}}}``), for targets and canaries alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from exporter.config_schema import schema
from exporter.config_source import ConfigProblem, KeyPath
from exporter.units import format_duration, parse_duration, parse_size, parse_status

__all__ = ["MIN_INTERVAL", "ValueCheck", "value_check"]

MIN_INTERVAL = 0.01  # seconds: a shorter interval is a typo (`0.001ms`), never a schedule

Trie = dict[str, "Trie | str"]  # key (``*`` for list items and other keys) -> leaf name or trie


def _duration(value: Any) -> str | None:
    parse_duration(value)
    return None


def _interval(value: Any) -> str | None:
    seconds = parse_duration(value)
    if seconds < MIN_INTERVAL:
        shortest = format_duration(MIN_INTERVAL)
        return f"interval {value} is shorter than the minimum of {shortest}"
    return None


def _size(value: Any) -> str | None:
    parse_size(value)
    return None


def _status(value: Any) -> str | None:
    parse_status(value)
    return None


def _regex(value: Any) -> str | None:
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return f"invalid regular expression {value!r}: {reason}"
    return None


def _percentage(value: Any) -> str | None:
    if 0 < value <= 1:
        return (
            f"{value:g} looks like a ratio, but objectives are percentages: "
            f"write `{value * 100:g}` for {value * 100:g} %"
        )
    return None


_LEAVES: dict[str, Callable[[Any], str | None]] = {
    "duration": _duration,
    "interval": _interval,
    "size": _size,
    "status_pattern": _status,
    "regex": _regex,
    "percentage": _percentage,
}


@cache
def value_check() -> ValueCheck:
    """The value checks of the packaged schema."""
    return ValueCheck(schema())


class ValueCheck:
    """The value checks of one schema; ``problems`` runs them over a part of a document."""

    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root
        self._tries: dict[tuple[KeyPath, bool], Trie] = {}

    def problems(self, value: Any, at: KeyPath) -> list[ConfigProblem]:
        """The problems of a schema-valid ``value`` at ``at``: the whole document (``()``), one
        top-level section, or one item of a top-level list."""
        found: list[ConfigProblem] = []
        self._walk(self._trie(at[:1], len(at) > 1), value, at, found)
        return found

    def _trie(self, top: KeyPath, item: bool) -> Trie:
        """What to check in the section ``top`` (in each of its items if ``item``)."""
        key = (top, item)
        if key not in self._tries:
            node: Any = self._root
            for name in top:
                node = node.get("properties", {}).get(name, {})
            trie: Trie = {}
            self._collect(node.get("items", {}) if item else node, trie)
            self._tries[key] = trie
        return self._tries[key]

    def _walk(self, trie: Trie | str, value: Any, at: KeyPath, found: list[ConfigProblem]) -> None:
        if isinstance(trie, str):
            try:
                message = _LEAVES[trie](value)
            except ValueError as exc:
                message = str(exc)
            if message:
                found.append(ConfigProblem(at, message))
            return
        if isinstance(value, dict):
            kinds, kind = trie.get(_KIND), value.get("kind")
            if isinstance(kinds, dict) and isinstance(kind, str) and kind in kinds:
                self._walk(kinds[kind], value, at, found)
            if "*" not in trie:  # only the keys to check, fewer than those of the value
                for key, sub in trie.items():
                    if key in value and key != _KIND:
                        self._walk(sub, value[key], (*at, key), found)
                return
            for key, item in value.items():
                self._walk(trie.get(key) or trie["*"], item, (*at, key), found)
        elif isinstance(value, list) and "*" in trie:
            for index, item in enumerate(value):
                self._walk(trie["*"], item, (*at, index), found)

    def _leaf(self, node: Any) -> str | None:
        ref = node.get("$ref", "") if isinstance(node, dict) else ""
        name = ref.removeprefix("#/$defs/")
        return name if name in _LEAVES else None

    def _collect(self, node: Any, trie: Trie) -> None:
        """Adds what ``node`` declares to ``trie``; a kind's section (``if: {properties: {kind:
        {const: K}}}``) goes under ``trie[_KIND][K]``, applied to the mappings of that kind."""
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            self._collect(self._resolve(node["$ref"]), trie)
        for key, sub in node.get("properties", {}).items():
            self._add(trie, key, sub)
        for keyword in ("items", "additionalProperties"):
            if isinstance(node.get(keyword), dict):
                self._add(trie, "*", node[keyword])
        for keyword in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(keyword, ()):
                self._collect(sub, trie)
        if "if" in node:
            kind = node["if"].get("properties", {}).get("kind", {}).get("const")
            if kind is None:
                self._collect(node.get("then"), trie)
                self._collect(node.get("else"), trie)
            else:
                kinds = trie.setdefault(_KIND, {})
                if isinstance(kinds, dict):
                    section = kinds.setdefault(kind, {})
                    if isinstance(section, dict):
                        self._collect(node.get("then"), section)

    def _add(self, trie: Trie, key: str, node: Any) -> None:
        leaf = self._leaf(node)
        if leaf is not None:
            trie[key] = leaf
            return
        sub = trie.setdefault(key, {})
        if isinstance(sub, dict):
            self._collect(node, sub)
            if not sub:  # nothing to check below this key
                del trie[key]

    def _resolve(self, ref: str) -> Any:
        node: Any = self._root
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node


_KIND = "?kind"  # the key of a trie's per-kind sections (no config key starts with "?")
