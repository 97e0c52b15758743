"""The typed ``status_page:`` config section: the history the pages draw (how long, in buckets of
what width), the label that groups targets and heartbeats, how often the pages reload
themselves, and the public status page at ``/status`` with the groups and names it shows.

The public page shows only what is named here, under the titles given here: its settings hold
no reference to a target's URL, labels or messages, so neither can its template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath
from exporter.units import format_duration, parse_duration

__all__ = [
    "MAX_BUCKETS",
    "PublicGroup",
    "PublicItem",
    "PublicSettings",
    "StatusSettings",
    "build_status_page",
]

# Buckets per history: beyond this the memory per target grows past what the docs promise.
MAX_BUCKETS = 2016
DEFAULT_LENGTH = 86400.0
DEFAULT_BUCKET = 900.0
DEFAULT_TITLE = "Service status"


@dataclass(frozen=True, slots=True)
class PublicItem:
    """A target or heartbeat on the public page: its config name and the title shown."""

    name: str
    title: str


@dataclass(frozen=True, slots=True)
class PublicGroup:
    name: str  # in /status/badge/NAME.svg and the JSON feed
    title: str
    targets: tuple[PublicItem, ...] = ()
    heartbeats: tuple[PublicItem, ...] = ()


@dataclass(frozen=True, slots=True)
class PublicSettings:
    enabled: bool = False
    title: str = DEFAULT_TITLE
    groups: tuple[PublicGroup, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusSettings:
    bucket: float = DEFAULT_BUCKET
    buckets: int = int(DEFAULT_LENGTH // DEFAULT_BUCKET)
    group_by: str = "service"
    refresh: float = 60.0  # 0: the pages do not reload themselves
    public: PublicSettings = field(default_factory=PublicSettings)

    @property
    def length(self) -> float:
        return self.bucket * self.buckets


def build_status_page(
    raw: Mapping[str, Any],
    targets: Sequence[str] | None,
    heartbeats: Sequence[str] | None,
    at: KeyPath = ("status_page",),
) -> StatusSettings:
    """``StatusSettings`` from the schema-validated mapping; ``targets`` and ``heartbeats`` are
    the declared names the public groups may refer to (None: not checked). Raises
    ``ConfigProblem``."""
    history = raw.get("history", {})
    bucket = parse_duration(history.get("bucket", format_duration(DEFAULT_BUCKET)))
    length = parse_duration(history.get("length", format_duration(DEFAULT_LENGTH)))
    if bucket < 1:
        raise ConfigProblem((*at, "history", "bucket"), "must be at least 1s")
    if length < bucket:
        raise ConfigProblem(
            (*at, "history", "length"), f"must be at least one bucket ({format_duration(bucket)})"
        )
    count = round(length / bucket)
    if abs(count * bucket - length) > 1e-6:
        raise ConfigProblem(
            (*at, "history", "length"),
            f"must be a whole number of buckets of {format_duration(bucket)}",
        )
    if count > MAX_BUCKETS:
        raise ConfigProblem(
            (*at, "history"),
            f"{count} buckets; at most {MAX_BUCKETS}: make the buckets wider or the length shorter",
        )
    refresh = parse_duration(raw.get("refresh", "1m"))
    if 0 < refresh < 5:
        raise ConfigProblem((*at, "refresh"), "must be 0s (off) or at least 5s")
    return StatusSettings(
        bucket=bucket,
        buckets=count,
        group_by=raw.get("group_by", "service"),
        refresh=refresh,
        public=_public(raw.get("public", {}), targets, heartbeats, (*at, "public")),
    )


def _by_base_name(names: Sequence[str] | None) -> dict[str, tuple[str, ...]] | None:
    """Each name a public group may give, with the names it stands for: a target's own name
    stands for itself, and the base name of a ``versions:`` matrix (``orders-api``) for the
    matrix's targets (``orders-api@v1``, ``orders-api@v2``), in their config order."""
    if names is None:
        return None
    written = set(names)
    found: dict[str, list[str]] = {}
    for name in names:
        found.setdefault(name, []).append(name)
        base, at, _version = name.partition("@")
        if at and base not in written:
            found.setdefault(base, []).append(name)
    return {name: tuple(members) for name, members in found.items()}


def _public(
    raw: Mapping[str, Any],
    targets: Sequence[str] | None,
    heartbeats: Sequence[str] | None,
    at: KeyPath,
) -> PublicSettings:
    groups = []
    seen: set[str] = set()
    known = {"targets": _by_base_name(targets), "heartbeats": _by_base_name(heartbeats)}
    for index, group in enumerate(raw.get("groups", [])):
        where = (*at, "groups", index)
        name = group["name"]
        if name in seen:
            raise ConfigProblem((*where, "name"), f"group {name!r} is listed twice")
        seen.add(name)
        items: dict[str, tuple[PublicItem, ...]] = {}
        for key in ("targets", "heartbeats"):
            chosen = []
            for position, item in enumerate(group.get(key, [])):
                entry = {"name": item} if isinstance(item, str) else item
                named, title = entry["name"], entry.get("title", entry["name"])
                names = known[key]
                if names is None:
                    chosen.append(PublicItem(named, title))
                    continue
                if named not in names:
                    singular = key[:-1]
                    raise ConfigProblem((*where, key, position), f"no {singular} named {named!r}")
                members = names[named]
                if members == (named,):
                    chosen.append(PublicItem(named, title))
                else:  # a versions: matrix by its base name: each version, titled with its key
                    for member in members:
                        version = member.partition("@")[2]
                        chosen.append(PublicItem(member, f"{title} {version}"))
            items[key] = tuple(chosen)
        groups.append(
            PublicGroup(
                name=name,
                title=group.get("title", name),
                targets=items["targets"],
                heartbeats=items["heartbeats"],
            )
        )
    return PublicSettings(
        enabled=raw.get("enabled", False),
        title=raw.get("title", DEFAULT_TITLE),
        groups=tuple(groups),
    )
