"""The ``versions:`` matrix: one target definition that stands for one target per API version.

Clients of several API versions break when one version changes, so each version is probed as a
target of its own. At load, before the builders, a target with ``versions: {v1: {...}, v2: {...}}``
becomes one target per key: named ``<name>@<key>`` (``orders-api@v2``; a written name cannot
contain ``@``, so an expanded name never clashes with another target), labelled
``api_version="<key>"``, with the key's mapping deep-merged over the target (mappings merge key by
key, any other value replaces) and ``{{ version }}`` replaced by the key in every text value.

A problem found while building an expanded target is reported where it was written: at
``targets[0].versions.v2.expect...`` when the version's mapping holds that key, at the target's own
key otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath
from exporter.targets import VERSION_SEPARATOR

__all__ = [
    "VERSION_SEPARATOR",
    "Version",
    "environment",
    "expand",
    "placeholder_problem",
    "relocate",
]

_PLACEHOLDER = re.compile(r"\{\{\s*version\s*\}\}")


class Version:
    """One version of a matrix: its key, the target it expands into and where it was written."""

    __slots__ = ("at", "key", "overrides", "raw")

    def __init__(self, key: str, raw: dict[str, Any], overrides: Mapping[str, Any], at: KeyPath):
        self.key = key
        self.raw = raw  # the whole expanded target, as the builders read it
        self.overrides = overrides  # the version's own mapping
        self.at = at  # the target's key path


def expand(item: Mapping[str, Any], at: KeyPath) -> Iterator[Version]:
    """The versions of the (schema-valid) target ``item`` at ``at``; nothing for a target
    without ``versions``, which is built as written."""
    versions = item.get("versions")
    if not isinstance(versions, Mapping):
        return
    base = {key: value for key, value in item.items() if key != "versions"}
    for key, overrides in versions.items():
        merged = _substitute(_merge(base, overrides or {}), key)
        merged["name"] = f"{item['name']}{VERSION_SEPARATOR}{key}"
        yield Version(key, merged, overrides or {}, at)


def environment(
    from_environment: Mapping[KeyPath, list[str]], version: Version
) -> dict[KeyPath, list[str]]:
    """The values ``${VAR}`` put into the version's mapping, by the key path the builders read
    them at (the target's own), so a secret written in a version is redacted as one."""
    prefix = (*version.at, "versions", version.key)
    return {
        (*version.at, *at[len(prefix) :]): values
        for at, values in from_environment.items()
        if at[: len(prefix)] == prefix and len(at) > len(prefix)
    }


def placeholder_problem(item: Mapping[str, Any], at: KeyPath) -> ConfigProblem | None:
    """A problem when a target without ``versions`` writes ``{{ version }}`` in its URL."""
    url = item.get("url")
    if "versions" not in item and isinstance(url, str) and "{{" in url and _PLACEHOLDER.search(url):
        return ConfigProblem(
            (*at, "url"), "{{ version }} is only replaced in a target with `versions:`"
        )
    return None


def relocate(problem: ConfigProblem, version: Version) -> ConfigProblem:
    """``problem`` of an expanded target, at the key path where the cause was written."""
    if problem.at is None or problem.at[: len(version.at)] != version.at:
        return problem
    rest = problem.at[len(version.at) :]
    if rest and _holds(version.overrides, rest):
        at: KeyPath = (*version.at, "versions", version.key, *rest)
        return ConfigProblem(at, problem.message, file=problem.file, line=problem.line)
    if rest == ("name",):
        return problem
    message = f"{problem.message} (in version {version.key})"
    return ConfigProblem(problem.at, message, file=problem.file, line=problem.line)


def _holds(value: Any, path: KeyPath) -> bool:
    """Whether ``value`` has something at ``path``."""
    for part in path:
        if isinstance(value, list) and isinstance(part, int):
            found = 0 <= part < len(value)
        else:
            found = isinstance(value, Mapping) and part in value
        if not found:
            return False
        value = value[part]
    return True


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _substitute(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(key, value) if "{{" in value else value
    if isinstance(value, Mapping):
        return {k: _substitute(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, key) for v in value]
    return value
