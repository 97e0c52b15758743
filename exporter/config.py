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
from typing import TYPE_CHECKING, Any, cast

import jsonschema
import yaml
from yaml.composer import Composer

from exporter.config_source import ConfigProblem, KeyPath, Source, describe_error, format_path
from exporter.heartbeats.spec import Heartbeat, PostgresStorage, build_heartbeats, build_storage
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
    targets: tuple[Target[Any], ...]
    source: str
    host: HostSettings
    heartbeats: tuple[Heartbeat, ...]
    # The shared heartbeat store; None: SQLite under --storage.path.
    storage: PostgresStorage | None = None


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
    raw = _parse_yaml(text, source.name)
    problems: list[Problem] = []
    raw = _expand(raw, (), environ, lambda at, msg: problems.append((at, msg)))
    if problems:
        raise ConfigError(_locate(problems, text, source.name))
    validator = jsonschema.Draft202012Validator(schema())
    errors = list(validator.iter_errors(raw))
    deeper = {tuple(e.absolute_path) for e in errors if e.validator != "unevaluatedProperties"}
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        at = tuple(error.absolute_path)
        if error.validator == "unevaluatedProperties" and any(p[: len(at)] == at for p in deeper):
            # A kind's section failed; its keys then count as unevaluated. Report only the cause.
            continue
        problems.append((at, f"{format_path(at)}: {describe_error(error)}"))
    if problems:
        raise ConfigError(_locate(problems, text, source.name))
    config, problems = _build(raw, source)
    if config is None:
        raise ConfigError(_locate(problems, text, source.name))
    return config


# A mistake found after parsing: where it is, and ``key.path: why``.
Problem = tuple[KeyPath, str]


def _locate(problems: list[Problem], text: str, name: str) -> list[str]:
    """Each problem as ``FILE:LINE: key.path: why``, the line being that of the deepest key of
    its path found in the file. Lines are only looked up when there is something to report."""
    lines: dict[KeyPath, int] = {}
    _parse_yaml(text, name, lines)

    def where(at: KeyPath) -> str:
        for cut in range(len(at), -1, -1):
            if at[:cut] in lines:
                return f"{name}:{lines[at[:cut]]}"
        return name

    return [f"{where(at)}: {message}" for at, message in problems]


def _build(raw: dict[str, Any], source: Source) -> tuple[Config | None, list[Problem]]:
    defaults = raw.get("defaults", {})
    interval = parse_duration(defaults.get("interval", "30s"))
    timeout = parse_duration(defaults.get("timeout", "10s"))
    targets: list[Target[Any]] = []
    seen: dict[str, int] = {}
    failed: list[Problem] = []
    for index, item in enumerate(raw.get("targets", [])):
        at: KeyPath = ("targets", index)
        if item["name"] in seen:
            name_at = (*at, "name")
            failed.append(
                (
                    name_at,
                    f"{format_path(name_at)}: duplicate target name {item['name']!r} "
                    f"(first at targets[{seen[item['name']]}])",
                )
            )
            continue
        seen[item["name"]] = index
        try:
            targets.append(build_target(item, at, source, interval=interval, timeout=timeout))
        except ConfigProblem as exc:
            failed.append((exc.at, f"{format_path(exc.at)}: {exc.message}"))
    host: HostSettings | None = None
    try:
        host = build_host(raw.get("host", {}))
    except ConfigProblem as exc:
        failed.append((exc.at, f"{format_path(exc.at)}: {exc.message}"))
    heartbeats, problems = build_heartbeats(raw.get("heartbeats", []), source)
    failed.extend((p.at, f"{format_path(p.at)}: {p.message}") for p in problems)
    storage: PostgresStorage | None = None
    try:
        storage = build_storage(raw.get("storage"), source)
    except ConfigProblem as exc:
        failed.append((exc.at, f"{format_path(exc.at)}: {exc.message}"))
    if failed or host is None:
        return None, failed
    config = Config(
        location=raw.get("location"),
        max_in_flight=raw.get("scheduler", {}).get("max_in_flight", 512),
        targets=tuple(targets),
        source=source.name,
        host=host,
        heartbeats=heartbeats,
        storage=storage,
    )
    return config, []


if TYPE_CHECKING:
    _Parser = yaml.CSafeLoader
else:
    _Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Parser, Composer):
    """libyaml's parser when PyYAML was built with it (half the time of the pure-Python one),
    with PyYAML's composer, so that the document can be composed one node at a time."""

    def next_node(self) -> yaml.Node:
        """The next whole node of the document (an alias is the node of its anchor)."""
        return cast(yaml.Node, self.compose_node(None, None))  # type: ignore[arg-type]


def _parse_yaml(text: str, name: str, lines: dict[KeyPath, int] | None = None) -> dict[str, Any]:
    """The document as plain data; every mapping is checked for duplicate keys, and the line of
    every key and value is recorded in ``lines`` when given.

    The items of a top-level list (``targets``, ``heartbeats``) are composed, checked and
    converted one at a time: a whole node tree of a 10,000-target file would take about 125 MiB
    at its peak, and leave most of it behind as a fragmented heap (docs/performance.md).
    """
    loader = _Loader(text)
    loader.anchors = {}
    try:
        data = _compose_top(loader, name, lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{name}{line}: invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: the config must be a mapping of keys at the top level"])
    return data


def _compose_top(loader: _Loader, name: str, lines: dict[KeyPath, int] | None) -> Any:
    def convert(node: yaml.Node, at: KeyPath) -> Any:
        _record_lines(node, at, lines, name)
        return loader.construct_document(node)

    loader.get_event()  # stream start
    if loader.check_event(yaml.StreamEndEvent):
        return {}
    loader.get_event()  # document start
    start = loader.peek_event()
    if not isinstance(start, yaml.MappingStartEvent) or start.anchor or start.tag:
        data = convert(loader.next_node(), ())
    else:
        loader.get_event()
        data = {}
        merges: list[tuple[int, Any]] = []
        keys: set[str] = set()
        if lines is not None:
            lines[()] = start.start_mark.line + 1 if start.start_mark else 1
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = loader.next_node()
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append((line, convert(loader.next_node(), ("<<",))))
                continue
            key = loader.construct_document(key_node)
            if str(key) in keys:
                raise _duplicate_key(name, line, (), str(key))
            keys.add(str(key))
            data[key] = _compose_value(loader, (str(key),), convert)
            if lines is not None:  # a key's own line, rather than its value's
                lines[(str(key),)] = line
        loader.get_event()
        for line, merged in merges:  # ``<<: *defaults``: explicit keys win, then earlier merges
            for mapping in merged if isinstance(merged, list) else [merged]:
                if not isinstance(mapping, dict):
                    raise ConfigError([f"{name}:{line}: invalid YAML: << merges only mappings"])
                for key, value in mapping.items():
                    data.setdefault(key, value)
    loader.get_event()  # document end
    extra = loader.get_event()
    if not isinstance(extra, yaml.StreamEndEvent):
        line = f":{extra.start_mark.line + 1}" if extra and extra.start_mark else ""
        raise ConfigError([f"{name}{line}: invalid YAML: expected one document, found another"])
    return data


def _compose_value(
    loader: _Loader, at: KeyPath, convert: Callable[[yaml.Node, KeyPath], Any]
) -> Any:
    """A top-level value; a plain list is converted item by item."""
    start = loader.peek_event()
    if not isinstance(start, yaml.SequenceStartEvent) or start.anchor or start.tag:
        return convert(loader.next_node(), at)
    loader.get_event()
    items: list[Any] = []
    while not loader.check_event(yaml.SequenceEndEvent):
        items.append(convert(loader.next_node(), (*at, len(items))))
    loader.get_event()
    return items


def _duplicate_key(name: str, line: int, at: KeyPath, key: str) -> ConfigError:
    return ConfigError([f"{name}:{line}: {format_path(at)}: duplicate key {key!r}"])


def _record_lines(
    node: yaml.Node, at: KeyPath, lines: dict[KeyPath, int] | None, name: str
) -> None:
    if lines is not None:
        lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                line = key_node.start_mark.line + 1
                raise _duplicate_key(name, line, at, key)
            keys.add(key)
            _record_lines(value_node, (*at, key), lines, name)
            if lines is not None:
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
