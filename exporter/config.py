"""Loads the YAML config into frozen dataclasses, or fails with every problem named precisely.

The stages, each in a module of its own, each reporting ``ConfigProblem`` values:

1. ``config_yaml``: YAML -> plain data, bounded (depth, aliases, numbers); ``${VAR}`` is expanded
   in text values as they are read.
2. ``config_schema``: JSON Schema validation against ``config.schema.json`` (unknown keys are
   errors), compiled for speed, worded by jsonschema.
3. ``config_checks``: durations, sizes, status patterns, regexes, minimum interval, percentages.
4. The builders (``targets``, ``heartbeats.spec``, ``host.settings``) -> the typed ``Config``.

A stage goes on with every part (a top-level section, a target, a heartbeat) in which the earlier
stages found nothing wrong, so one run reports every problem of the file; a part with a problem
goes no further, where it would only repeat it. Lines are looked up only when there is something
to report, by reading the file again. An exception a builder was not meant to raise becomes
"internal error while reading this key", logged with its traceback.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from exporter.config_checks import value_check
from exporter.config_schema import schema, schema_check
from exporter.config_source import (
    ConfigError,
    ConfigProblem,
    KeyPath,
    Source,
    format_path,
    given,
)
from exporter.config_versions import environment, expand, placeholder_problem, relocate
from exporter.config_yaml import read_yaml
from exporter.gc_pause import paused_gc
from exporter.host.settings import HostSettings, build_host
from exporter.lazy_import import lazy_module
from exporter.probes.budget import BODY_BUDGET
from exporter.status_settings import StatusSettings, build_status_page
from exporter.targets import VERSION_SEPARATOR, Target, build_defaults, build_target
from exporter.units import parse_duration, parse_size

if TYPE_CHECKING:
    from exporter import maintenance
    from exporter.heartbeats import spec as heartbeat_spec
    from exporter.heartbeats.spec import Heartbeat, PostgresStorage
    from exporter.maintenance import Window
else:  # imported by a config that has heartbeats, a heartbeat store or maintenance windows
    maintenance = lazy_module("exporter.maintenance")
    heartbeat_spec = lazy_module("exporter.heartbeats.spec")

__all__ = [
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ConnectivitySettings",
    "KeyPath",
    "Source",
    "WebSettings",
    "load",
    "load_text",
    "schema",
]

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "default.yml"
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Top-level lists whose items are checked one by one; a mistake in one item leaves the others.
_LISTS = ("targets", "heartbeats", "maintenance")
# What a config watches: one of them must be there, if only as an empty list.
_WATCHED = ("targets", "heartbeats")
_Built = TypeVar("_Built")
# Loading for one target: the top-level sections whose problems still count.
_FOCUSED = ("location", "defaults", "scheduler", "targets")


@dataclass(frozen=True, slots=True)
class ConnectivitySettings:
    """The ``connectivity:`` section: canaries that tell the exporter's outage from a target's."""

    canaries: tuple[Target[Any], ...] = ()
    interval: float = 30.0


def build_connectivity(
    raw: Mapping[str, Any], canaries: tuple[Target[Any], ...]
) -> ConnectivitySettings:
    """The schema-valid ``connectivity:`` mapping, its canaries built already."""
    if "interval" not in raw:
        return ConnectivitySettings(canaries=canaries)
    return ConnectivitySettings(canaries=canaries, interval=parse_duration(raw["interval"]))


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """The ``scheduler:`` section."""

    # At most this many probes run at once; the others wait.
    max_in_flight: int = 512
    # Response body bytes that HTTP probes may hold at once for their checks.
    body_bytes_in_flight: int = BODY_BUDGET


def build_scheduler(raw: Mapping[str, Any]) -> SchedulerSettings:
    budget = {}
    if "body_bytes_in_flight" in raw:
        budget["body_bytes_in_flight"] = parse_size(raw["body_bytes_in_flight"])
    return SchedulerSettings(**given(raw, "max_in_flight"), **budget)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The ``web:`` section: the token of the administrative endpoints (`/-/reload`, the
    run-time maintenance API), read from ``admin_token_file`` at load and at every reload; and
    the absolute URLs of this exporter and of Grafana that alert notifications link to
    (``external_url``, ``grafana_url``, without a trailing slash)."""

    # What ``Authorization: Bearer`` must carry for the administrative endpoints; None: nothing.
    admin_token: str | None = field(default=None, repr=False)
    external_url: str | None = None
    grafana_url: str | None = None


def build_web(raw: Mapping[str, Any], source: Source) -> WebSettings:
    """The schema-valid ``web:`` mapping, its token file read."""
    links = {key: raw[key].rstrip("/") for key in ("external_url", "grafana_url") if key in raw}
    if "admin_token_file" not in raw:
        return WebSettings(**links)
    at: KeyPath = ("web", "admin_token_file")
    token = source.read_text(raw["admin_token_file"], at).strip()
    if not token:
        raise ConfigProblem(at, "the admin token file is empty")
    return WebSettings(admin_token=token, **links)


@dataclass(frozen=True, slots=True)
class Config:
    location: str | None
    max_in_flight: int
    targets: tuple[Target[Any], ...]
    source: str
    host: HostSettings
    heartbeats: tuple[Heartbeat, ...]
    connectivity: ConnectivitySettings = ConnectivitySettings()
    maintenance: tuple[Window, ...] = ()
    # The shared heartbeat store; None: SQLite under --storage.path.
    storage: PostgresStorage | None = None
    # Response body bytes the HTTP probes may hold at once for their checks.
    body_bytes_in_flight: int = BODY_BUDGET
    web: WebSettings = WebSettings()
    status_page: StatusSettings = field(default_factory=StatusSettings)


def load(
    path: str | None, environ: Mapping[str, str] | None = None, *, target: str | None = None
) -> Config:
    """Load the config file at ``path``, or the embedded default config when ``path`` is None.

    With ``target``, only the target of that name and the top-level settings must be right
    (``lookout-exporter probe``): the other targets, heartbeats and windows may name unset
    environment variables or have other problems, and are left out of the config."""
    env = os.environ if environ is None else environ
    if path is None:
        text = resources.files("exporter").joinpath(DEFAULT_CONFIG).read_text("utf-8")
        return load_text(text, Source(f"(embedded {DEFAULT_CONFIG})", Path.cwd()), env, target)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        problem = ConfigProblem(None, f"cannot read config: {exc.strerror}", file=path)
        raise ConfigError([problem]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        message = (
            f"config is not UTF-8 text: byte 0x{data[exc.start]:02x} "
            f"at column {exc.start - line_start + 1}"
        )
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(None, message, file=path, line=line)]) from None
    return load_text(text, Source(path, Path(path).resolve().parent), env, target)


def load_text(
    text: str, source: Source, environ: Mapping[str, str], target: str | None = None
) -> Config:
    """The config in ``text``; raises ``ConfigError`` with every problem found in it (with
    ``target``, as ``load`` says).

    The cyclic garbage collector is paused meanwhile: a load makes millions of objects and
    hardly any garbage, and each of the collections they would set off scans every object
    made so far (at 10,000 targets, 0.2 s of a 1.1 s load; at 100,000, 2 of 11 s). The few
    cycles a load leaves (a problem's traceback) are collected after it."""
    try:
        with paused_gc():
            return _Loading(text, source, environ, target).run()
    except ConfigError:
        raise
    except Exception:
        log.error(
            "internal error while reading the config",
            extra={"config": source.name, "traceback": traceback.format_exc()},
        )
        message = "internal error while reading the config (the log has its traceback)"
        raise ConfigError([ConfigProblem(None, message, file=source.name)]) from None


class _Loading:
    """One load of one text: the problems found so far, and what was expanded where."""

    def __init__(
        self, text: str, source: Source, environ: Mapping[str, str], target: str | None = None
    ) -> None:
        self.text = text
        self.target = target
        # With a target: the list item whose problems count, besides the top-level sections.
        self.focus: KeyPath | None = None
        self.source = source
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.unset: list[KeyPath] = []  # values that name an unset environment variable
        self.expanded: dict[str, str] = {}  # value after expansion -> as written

    def run(self) -> Config:
        raw, problems = read_yaml(self.text, self.source.name, on_string=self._expand)
        self.problems.extend(problems)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            message = "the config must be a mapping of keys at the top level"
            raise self._error([ConfigProblem(None, message, line=1)])
        if self.target is not None:
            self.focus = ("targets", -1)  # no such target: only the top level counts
            items = raw.get("targets")
            for index, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and _named(item, self.target):
                    self.focus = ("targets", index)
                    break
        if not any(key in raw for key in _WATCHED):
            self.problems.append(
                ConfigProblem(
                    None,
                    "the config has no targets and no heartbeats, as an empty or cut-off file "
                    "would; write `targets: []` to run without any",
                )
            )
        found = schema_check().problems(raw)
        broken = {_part(p.at) for p in found if p.at is not None}
        self.problems.extend(found)
        for at, value in _parts(raw):
            if at not in broken and () not in broken:
                checked = value_check().problems(value, at)
                broken.update(_part(p.at) for p in checked if p.at is not None)
                self.problems.extend(checked)
        config = self._build(raw, broken)
        self._unfocus()
        if self.problems or config is None:
            raise self._error(self.problems)
        return config

    def _unfocus(self) -> None:
        """With a target, drops the problems of the other list items."""
        if self.focus is not None:
            self.problems = [
                p
                for p in self.problems
                if p.at is None
                or _part(p.at) in (self.focus, ())
                or (len(_part(p.at)) == 1 and p.at[0] in _FOCUSED)
            ]

    def _expand(self, value: str, at: KeyPath) -> str:
        """``value`` with each ``${VAR}`` replaced by the variable's value and ``$$`` by ``$``."""

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "$"
            if name not in self.environ:
                self.unset.append(at)
                self.problems.append(ConfigProblem(at, f"environment variable {name} is not set"))
                return ""
            found = self.environ[name]
            if found:
                self.source.from_environment.setdefault(at, []).append(found)
            return found

        expanded = _VARIABLE.sub(substitute, value)
        if "${" in value and expanded:
            self.expanded[expanded] = value
        return expanded

    def _build(self, raw: dict[str, Any], broken: set[KeyPath]) -> Config | None:
        """Every section by its builder, every list item on its own: a builder returns what it
        built or raises ``ConfigProblem``, and names are checked for duplicates here."""
        if () in broken:
            return None

        def section(key: str, build: Callable[[Any], _Built]) -> _Built | None:
            """What ``build`` makes of the section ``key`` (an empty mapping when absent)."""
            if (key,) in broken:
                return None
            return self._guard((key,), partial(build, raw.get(key, {})))

        defaults = section("defaults", build_defaults)
        targets: list[Target[Any]] = []
        canaries: list[Target[Any]] = []
        if defaults is not None:
            build = partial(build_target, source=self.source, defaults=defaults)
            targets = self._items(raw, ("targets",), broken, "target", build, versions=True)
            if ("connectivity",) not in broken:
                at: KeyPath = ("connectivity", "canaries")
                canaries = self._items(
                    raw.get("connectivity", {}), at, broken, "canary", build, versions=True
                )
        connectivity = section(
            "connectivity", partial(build_connectivity, canaries=tuple(canaries))
        )
        heartbeats: list[Heartbeat] = []
        if "heartbeats" in raw:
            build_heartbeat = partial(heartbeat_spec.build_heartbeat, source=self.source)
            heartbeats = self._items(raw, ("heartbeats",), broken, "heartbeat", build_heartbeat)
        windows: list[Window] = []
        if "maintenance" in raw:
            windows = self._items(raw, ("maintenance",), broken, "window", maintenance.build_window)
        storage = None
        if ("storage",) not in broken and raw.get("storage") is not None:
            build_storage = partial(heartbeat_spec.build_storage, raw["storage"], self.source)
            storage = self._guard(("storage",), build_storage)
        web = section("web", partial(build_web, source=self.source))
        host = section("host", build_host)
        scheduler = section("scheduler", build_scheduler)
        status_page = None
        if ("status_page",) not in broken:
            # Names are checked only in a config without other problems: a broken target is
            # not "missing".
            known = not self.problems
            status_page = self._guard(
                ("status_page",),
                partial(
                    build_status_page,
                    raw.get("status_page", {}),
                    [t.name for t in targets] if known else None,
                    [h.name for h in heartbeats] if known else None,
                ),
            )
        self._unfocus()
        if self.problems:
            return None
        # Without problems every section was built, but those that ``_unfocus`` let go when
        # loading for one target: they are not needed to probe it, and get their defaults.
        return Config(
            location=raw.get("location"),
            max_in_flight=(scheduler or SchedulerSettings()).max_in_flight,
            body_bytes_in_flight=(scheduler or SchedulerSettings()).body_bytes_in_flight,
            targets=tuple(targets),
            source=self.source.name,
            host=host or HostSettings(),
            heartbeats=tuple(heartbeats),
            connectivity=connectivity or ConnectivitySettings(),
            maintenance=tuple(windows),
            storage=storage,
            web=web or WebSettings(),
            status_page=status_page or StatusSettings(),
        )

    def _items(
        self,
        parent: Mapping[str, Any],
        at: KeyPath,
        broken: set[KeyPath],
        noun: str,
        build: Callable[..., _Built],
        *,
        versions: bool = False,
    ) -> list[_Built]:
        """What ``build`` makes of each item of the list at ``at`` (``parent`` holds its last
        key), each name once; the items in ``broken`` are not built. With ``versions``, an item
        with a ``versions:`` matrix is built once per version (``config_versions``)."""
        if at[:1] in broken or at in broken:
            return []
        items = parent.get(str(at[-1]), [])
        built: list[_Built] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items if isinstance(items, list) else []):
            item_at: KeyPath = (*at, index)
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in seen:
                first = format_path((*at, seen[name]))
                message = f"duplicate {noun} name {name!r} (first at {first})"
                self.problems.append(ConfigProblem((*item_at, "name"), message))
                continue
            if isinstance(name, str):
                seen[name] = index
            if item_at in broken:
                continue
            if versions and isinstance(item, dict):
                if (problem := placeholder_problem(item, item_at)) is not None:
                    self.problems.append(problem)
                    continue
                expanded = list(expand(item, item_at)) if "versions" in item else []
                if expanded:
                    for version in expanded:
                        # A secret of one version is one for all: redacting more is harmless.
                        moved = environment(self.source.from_environment, version)
                        for key_path, values in moved.items():
                            self.source.from_environment.setdefault(key_path, []).extend(values)
                        found = len(self.problems)
                        value = self._guard(
                            item_at, partial(build, version.raw, item_at, api_version=version.key)
                        )
                        self.problems[found:] = [
                            relocate(p, version) for p in self.problems[found:]
                        ]
                        if value is not None:
                            built.append(value)
                    continue
            value = self._guard(item_at, partial(build, item, item_at))
            if value is not None:
                built.append(value)
        return built

    def _guard(self, at: KeyPath, build: Callable[[], _Built]) -> _Built | None:
        """What ``build`` returns; its ``ConfigProblem``, or any other exception as an internal
        error at ``at``, is recorded instead."""
        try:
            return build()
        except ConfigProblem as problem:
            self.problems.append(problem)
        except Exception:
            log.error(
                "internal error while reading the config",
                extra={
                    "config": self.source.name,
                    "key": format_path(at),
                    "traceback": traceback.format_exc(),
                },
            )
            message = "internal error while reading this key (the log has its traceback)"
            self.problems.append(ConfigProblem(at, message))
        return None

    def _error(self, problems: list[ConfigProblem]) -> ConfigError:
        """Every problem but those about a value that names an unset variable (its value is
        empty, so it would only fail again), located, without expanded secrets, in file order."""
        kept = [
            p
            for p in problems
            if p.at is None
            or not any(p.at[: len(at)] == at for at in self.unset)
            or p.message.startswith("environment variable ")
        ]
        lines: dict[KeyPath, int] = {}
        if any(p.line is None and p.at is not None for p in kept):
            read_yaml(self.text, self.source.name, lines=lines)
        located = [
            ConfigProblem(
                p.at,
                self._unexpanded(p.message),
                file=self.source.name,
                line=p.line if p.line is not None else _line(lines, p.at),
            )
            for p in kept
        ]
        unique = list(dict.fromkeys(located))
        return ConfigError(sorted(unique, key=lambda p: p.line or 0))

    def _unexpanded(self, message: str) -> str:
        """``message`` with each value that came from the environment written as in the file,
        so that no secret reaches a terminal or a reload report."""
        for value in sorted(self.expanded, key=len, reverse=True):
            if len(value) >= 3 and value in message:
                message = message.replace(value, self.expanded[value])
        return message


def _named(item: Mapping[str, Any], name: str) -> bool:
    """Whether the target ``item`` is, or expands into, the target ``name``."""
    if item.get("name") == name:
        return True
    base, _, key = name.partition(VERSION_SEPARATOR)
    versions = item.get("versions")
    return bool(key) and item.get("name") == base and isinstance(versions, dict) and key in versions


def _part(at: KeyPath) -> KeyPath:
    """The part of the document ``at`` belongs to: a list item, else a top-level key."""
    if len(at) >= 2 and at[0] in _LISTS and isinstance(at[1], int):
        return at[:2]
    return at[:1]


def _parts(raw: dict[str, Any]) -> list[tuple[KeyPath, Any]]:
    parts: list[tuple[KeyPath, Any]] = []
    for key, value in raw.items():
        if key in _LISTS and isinstance(value, list):
            parts.extend(((key, index), item) for index, item in enumerate(value))
        else:
            parts.append(((key,), value))
    return parts


def _line(lines: dict[KeyPath, int], at: KeyPath | None) -> int | None:
    """The line of the deepest key of ``at`` found in the file."""
    if at is None:
        return None
    for cut in range(len(at), -1, -1):
        if at[:cut] in lines:
            return lines[at[:cut]]
    return None
