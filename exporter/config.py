"""Loads the YAML config into frozen dataclasses, or fails with every problem named precisely.

The pipeline is: YAML (with the line of every node remembered) -> ``${VAR}`` expansion in strings
-> JSON Schema validation against ``config.schema.json`` (unknown keys are errors) -> building the
typed ``Config``, where durations, sizes, patterns, regexes and ``*_file`` secrets are parsed and
read. Every problem is reported as ``FILE:LINE: key.path: message``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from exporter.config_source import ConfigProblem, KeyPath, Source, describe_error, format_path
from exporter.heartbeats.spec import Heartbeat, build_heartbeats
from exporter.host.settings import HostSettings, build_host
from exporter.targets import Target, build_target
from exporter.units import parse_duration

__all__ = [
    "Config",
    "ConfigError",
    "ConfigProblem",
    "KeyPath",
    "Source",
    "load",
    "load_text",
    "schema",
]

DEFAULT_CONFIG = "default.yml"
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists each mistake as ``FILE:LINE: path: why``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Config:
    location: str | None
    max_in_flight: int
    targets: tuple[Target, ...]
    source: str
    host: HostSettings
    heartbeats: tuple[Heartbeat, ...]


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every config must satisfy."""
    text = resources.files("exporter").joinpath("config.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load(path: str | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the config file at ``path``, or the embedded default config when ``path`` is None."""
    env = os.environ if environ is None else environ
    if path is None:
        text = resources.files("exporter").joinpath(DEFAULT_CONFIG).read_text("utf-8")
        return load_text(text, Source(f"(embedded {DEFAULT_CONFIG})", Path.cwd()), env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config is not UTF-8 text"]) from None
    return load_text(text, Source(path, Path(path).resolve().parent), env)


def load_text(text: str, source: Source, environ: Mapping[str, str]) -> Config:
    lines: dict[KeyPath, int] = {}

    def where(at: KeyPath) -> str:
        for cut in range(len(at), -1, -1):
            if at[:cut] in lines:
                return f"{source.name}:{lines[at[:cut]]}"
        return source.name

    raw = _parse_yaml(text, source.name, lines)
    problems: list[str] = []
    raw = _expand(raw, (), environ, lambda at, msg: problems.append(f"{where(at)}: {msg}"))
    if problems:
        raise ConfigError(problems)
    validator = jsonschema.Draft202012Validator(schema())
    errors = list(validator.iter_errors(raw))
    deeper = {tuple(e.absolute_path) for e in errors if e.validator != "unevaluatedProperties"}
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        at = tuple(error.absolute_path)
        if error.validator == "unevaluatedProperties" and any(p[: len(at)] == at for p in deeper):
            # A kind's section failed; its keys then count as unevaluated. Report only the cause.
            continue
        problems.append(f"{where(at)}: {format_path(at)}: {describe_error(error)}")
    if problems:
        raise ConfigError(problems)
    return _build(raw, source, where)


def _build(
    raw: dict[str, Any],
    source: Source,
    where: Callable[[KeyPath], str],
) -> Config:
    defaults = raw.get("defaults", {})
    interval = parse_duration(defaults.get("interval", "30s"))
    timeout = parse_duration(defaults.get("timeout", "10s"))
    targets: list[Target] = []
    seen: dict[str, int] = {}
    failed: list[str] = []
    for index, item in enumerate(raw.get("targets", [])):
        at: KeyPath = ("targets", index)
        if item["name"] in seen:
            failed.append(
                f"{where((*at, 'name'))}: {format_path((*at, 'name'))}: duplicate target name "
                f"{item['name']!r} (first at targets[{seen[item['name']]}])"
            )
            continue
        seen[item["name"]] = index
        try:
            targets.append(build_target(item, at, source, interval=interval, timeout=timeout))
        except ConfigProblem as exc:
            failed.append(f"{where(exc.at)}: {format_path(exc.at)}: {exc.message}")
    host: HostSettings | None = None
    try:
        host = build_host(raw.get("host", {}))
    except ConfigProblem as exc:
        failed.append(f"{where(exc.at)}: {format_path(exc.at)}: {exc.message}")
    heartbeats, problems = build_heartbeats(raw.get("heartbeats", []), source)
    failed.extend(f"{where(p.at)}: {format_path(p.at)}: {p.message}" for p in problems)
    if failed or host is None:
        raise ConfigError(failed)
    return Config(
        location=raw.get("location"),
        max_in_flight=raw.get("scheduler", {}).get("max_in_flight", 512),
        targets=tuple(targets),
        source=source.name,
        host=host,
        heartbeats=heartbeats,
    )


def _parse_yaml(text: str, name: str, lines: dict[KeyPath, int]) -> dict[str, Any]:
    try:
        # libyaml's parser when PyYAML was built with it: half the time and much less heap left
        # behind on configs with thousands of targets (docs/performance.md).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            _record_lines(node, (), lines, name)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{name}{line}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: the config must be a mapping of keys at the top level"])
    return data


def _record_lines(node: yaml.Node, at: KeyPath, lines: dict[KeyPath, int], name: str) -> None:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                line = key_node.start_mark.line + 1
                raise ConfigError([f"{name}:{line}: {format_path(at)}: duplicate key {key!r}"])
            keys.add(key)
            _record_lines(value_node, (*at, key), lines, name)
            lines[(*at, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*at, index), lines, name)


def _expand(
    value: Any, at: KeyPath, environ: Mapping[str, str], report: Callable[[KeyPath, str], None]
) -> Any:
    """Replace ``${VAR}`` in every string value with the environment's value; ``$$`` is ``$``."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "$"
            if name not in environ:
                report(at, f"{format_path(at)}: environment variable {name} is not set")
                return ""
            return environ[name]

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, (*at, k), environ, report) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*at, i), environ, report) for i, v in enumerate(value)]
    return value
