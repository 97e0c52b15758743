"""Reading values out of a response: JSONPath (RFC 9535, python-jsonpath), a regex group, a
header. Used three ways by the HTTP and flow kinds:

- value assertions (``expect.values``): the "business conditions" a 200 hides, on a JSONPath:
  ``equals``, ``at_least``, ``at_most``, ``matches``, ``min_items``, ``max_items`` and
  ``newer_than`` (an ISO 8601 or epoch timestamp younger than a duration); a failure is reason
  ``value`` and names the path, the value seen and the condition;
- extraction into a flow's variables (``extract``); a missing value is reason ``extract``;
- exported numbers (``export``), written as ``lookout_probe_value{name}``, only for the names
  the config declares.

Paths, regexes and durations are parsed at load; probing only evaluates them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter.config_source import ConfigProblem, KeyPath, compile_regex
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeTrace
from exporter.units import format_duration, parse_duration

if TYPE_CHECKING:
    import jsonpath
    from multidict import CIMultiDictProxy
else:  # only for a target that extracts or checks a value
    jsonpath = lazy_module("jsonpath")

__all__ = [
    "PROBE_VALUE",
    "Condition",
    "Extraction",
    "ValueCheck",
    "build_exports",
    "build_extractions",
    "build_value_checks",
    "check_values",
    "compile_path",
    "describe",
    "find",
    "number",
    "parse_document",
    "read_exports",
]

PROBE_VALUE = Family(
    "lookout_probe_value",
    "gauge",
    "A number the latest scheduled probe read from a response, for the names under export:.",
)

# Epoch numbers above this are milliseconds (10^11 seconds is the year 5138).
_EPOCH_MILLIS = 1e11
_SHOWN = 80  # characters of a value shown in a check's detail


def compile_path(text: str, at: KeyPath) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
    try:
        return jsonpath.compile(text)
    except jsonpath.JSONPathError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigProblem(at, f"invalid JSONPath {text!r}: {first}") from None


class _Root:
    """Stands for a document that is one JSON string: python-jsonpath would parse a string
    given as the document as JSON text, so the path runs on this and finds it in its place."""


def find(compiled: Any, document: Any) -> list[Any]:
    """The nodes ``compiled`` selects in ``document`` (a parsed JSON value)."""
    if isinstance(document, str):
        root = _Root()
        return [document if node is root else node for node in compiled.findall(root)]
    found: list[Any] = compiled.findall(document)
    return found


def describe(value: Any) -> str:
    """A value as a check's detail shows it: JSON, cut to ``_SHOWN`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def number(value: Any) -> float | None:
    """``value`` as a number: JSON numbers, booleans as 1 and 0, numeric strings; else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 string (UTC when it names no offset) or an
    epoch number (milliseconds when above 10^11)."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            seconds = number(value)
            return None if seconds is None else _epoch(seconds)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    seconds = number(value)
    return None if seconds is None or isinstance(value, bool) else _epoch(seconds)


def _epoch(seconds: float) -> float:
    return seconds / 1000 if seconds > _EPOCH_MILLIS else seconds


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition on the value at a path: its config key and the operand."""

    key: str
    operand: Any

    def text(self) -> str:
        if self.key == "newer_than":
            return f"newer than {format_duration(self.operand)}"
        if self.key == "matches":
            return f"matches {self.operand.pattern!r}"
        return f"{self.key.replace('_', ' ')} {describe(self.operand)}"

    def judge(self, found: list[Any], now: float) -> tuple[bool, str]:
        """Whether the nodes ``found`` at the path satisfy it, and what was seen."""
        if self.key in ("min_items", "max_items"):
            single = len(found) == 1 and isinstance(found[0], list | dict)
            count = len(found[0]) if single else len(found)
            limit: int = self.operand
            passed = count >= limit if self.key == "min_items" else count <= limit
            return passed, f"{count} items"
        value = found[0]
        if self.key == "equals":
            # true equals 1 in Python, never in JSON
            same = value == self.operand and isinstance(value, bool) == isinstance(
                self.operand, bool
            )
            return same, describe(value)
        if self.key in ("at_least", "at_most"):
            seen = number(value)
            if seen is None:
                return False, f"{describe(value)} is not a number"
            passed = seen >= self.operand if self.key == "at_least" else seen <= self.operand
            return passed, describe(value)
        if self.key == "matches":
            text = value if isinstance(value, str) else json.dumps(value)
            return self.operand.search(text) is not None, describe(value)
        moment = _timestamp(value)
        if moment is None:
            return False, f"{describe(value)} is not a timestamp"
        age = now - moment
        shown = f"{format_duration(age)} old" if age >= 0 else "in the future"
        return age <= self.operand, f"{describe(value)} is {shown}"


@dataclass(frozen=True, slots=True)
class ValueCheck:
    """``expect.values[i]``: conditions on the value a JSONPath selects."""

    path: str
    compiled: Any = field(compare=False, repr=False)
    conditions: tuple[Condition, ...]


_CONDITIONS = ("equals", "at_least", "at_most", "matches", "min_items", "max_items", "newer_than")


def build_value_checks(raw: Iterable[Mapping[str, Any]], at: KeyPath) -> tuple[ValueCheck, ...]:
    checks = []
    for index, item in enumerate(raw):
        where: KeyPath = (*at, index)
        conditions = []
        for key in _CONDITIONS:
            if key not in item:
                continue
            operand = item[key]
            if key == "matches":
                operand = compile_regex(operand, (*where, key))
            elif key == "newer_than":
                operand = parse_duration(operand)
            conditions.append(Condition(key, operand))
        if "min_items" in item and "max_items" in item and item["min_items"] > item["max_items"]:
            raise ConfigProblem((*where, "min_items"), "min_items is above max_items")
        path = item["json"]
        checks.append(ValueCheck(path, compile_path(path, (*where, "json")), tuple(conditions)))
    return tuple(checks)


def parse_document(text: str, trace: ProbeTrace, check: str) -> tuple[Any, ProbeFailure | None]:
    """The JSON body, or the ``json`` failure (recorded as check ``check``) when it is not."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        detail = f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        trace.check(check, False, detail)
        return None, ProbeFailure(Reason.JSON, detail)


def check_values(
    checks: Iterable[ValueCheck], document: Any, now: float, trace: ProbeTrace
) -> list[ProbeFailure]:
    """Every condition of ``checks`` on ``document``, each recorded as a check."""
    failures = []
    for rule in checks:
        found = find(rule.compiled, document)
        for condition in rule.conditions:
            name = f"value {rule.path} {condition.key}"
            if not found and condition.key not in ("min_items", "max_items"):
                detail = f"{rule.path}: no value, expected {condition.text()}"
                trace.check(name, False, detail)
                failures.append(ProbeFailure(Reason.VALUE, detail))
                continue
            passed, seen = condition.judge(found, now)
            detail = f"{rule.path}: {seen}, expected {condition.text()}"
            if not trace.check(name, passed, detail):
                failures.append(ProbeFailure(Reason.VALUE, detail))
    return failures


@dataclass(frozen=True, slots=True)
class Extraction:
    """One value read from a response: by JSONPath from the body, from a header, or by a
    regex over the body (or over the header's value when both are given; the first group, or
    the whole match without groups). ``secret`` values are shown as ``<secret>``."""

    name: str
    json_path: str | None = None
    compiled: Any = field(default=None, compare=False, repr=False)
    header: str | None = None
    regex: re.Pattern[str] | None = None
    secret: bool = False

    def source(self) -> str:
        """Where the value comes from, for people."""
        if self.json_path is not None:
            return self.json_path
        where = f"header {self.header}" if self.header is not None else "body"
        return where if self.regex is None else f"{where} ~ {self.regex.pattern!r}"

    def read(
        self, document: Any, text: str, headers: CIMultiDictProxy[str] | None
    ) -> tuple[Any, str]:
        """The value, or None, and the reason it is missing."""
        if self.json_path is not None:
            if document is None:
                return None, f"{self.json_path}: body is not JSON"
            found = find(self.compiled, document)
            if not found or found[0] is None:
                return None, f"{self.json_path}: no value in the body"
            return found[0], ""
        subject = text
        if self.header is not None:
            values = headers.getall(self.header, []) if headers is not None else []
            if not values:
                return None, f"header {self.header} missing"
            subject = values[0]
            if self.regex is None:
                return subject, ""
        assert self.regex is not None
        match = self.regex.search(subject)
        if match is None:
            return None, f"{self.source()}: no match"
        return (match.group(1) if match.re.groups else match.group(0)), ""


def build_extractions(raw: Mapping[str, Any], at: KeyPath) -> tuple[Extraction, ...]:
    out = []
    for name, item in raw.items():
        where: KeyPath = (*at, name)
        if "json" in item and ("header" in item or "regex" in item):
            raise ConfigProblem(where, "json cannot be combined with header or regex")
        if not ("json" in item or "header" in item or "regex" in item):
            raise ConfigProblem(where, "names no source (json, header or regex)")
        path = item.get("json")
        out.append(
            Extraction(
                name=name,
                json_path=path,
                compiled=compile_path(path, (*where, "json")) if path is not None else None,
                header=item.get("header"),
                regex=compile_regex(item["regex"], (*where, "regex")) if "regex" in item else None,
                secret=item.get("secret", False),
            )
        )
    return tuple(out)


def build_exports(raw: Mapping[str, Any], at: KeyPath) -> tuple[Extraction, ...]:
    """``export:``: numbers by JSONPath, one ``lookout_probe_value`` series per name."""
    return tuple(
        Extraction(
            name=name,
            json_path=item["json"],
            compiled=compile_path(item["json"], (*at, name, "json")),
        )
        for name, item in raw.items()
    )


def read_exports(
    exports: Iterable[Extraction], document: Any, trace: ProbeTrace
) -> tuple[list[tuple[str, float]], list[ProbeFailure]]:
    """The exported numbers that were found, and an ``extract`` failure for each one that was
    missing or not a number."""
    values = []
    failures = []
    for export in exports:
        value, missing = export.read(document, "", None)
        seen = number(value) if not missing else None
        if seen is None and not missing:
            missing = f"{export.json_path}: {describe(value)} is not a number"
        if trace.check(f"export {export.name}", seen is not None, missing or describe(value)):
            assert seen is not None
            values.append((export.name, seen))
        else:
            failures.append(ProbeFailure(Reason.EXTRACT, f"export {export.name}: {missing}"))
    return values, failures
