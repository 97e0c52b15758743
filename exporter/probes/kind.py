"""What makes a probe kind: the record every ``probes/<kind>.py`` module exports as ``KIND``.

A kind's module holds everything about it: its spec dataclass and the builder that makes one
from the validated config, its prober, the metric families its observations write, and the
facts the status page and the API show about a target of that kind. ``registry.KINDS`` maps
each kind's name to its record; nothing else lists the kinds.

``Kind`` is generic in the kind's spec type, so mypy checks that the builder, the prober and the
fact functions of one kind agree on one spec type, and a target built by a kind's builder is
only ever probed and described by that same kind (``targets.Target`` carries both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from exporter.config_source import KeyPath, Source
from exporter.families import Family

if TYPE_CHECKING:  # the probers' clients (aiohttp) are not needed to build a config
    from exporter.probes.context import ProbeContext

__all__ = ["Kind", "Spec", "always"]

Spec = TypeVar("Spec")


def _no_request(_spec: Any) -> dict[str, Any]:
    return {}


def _no_imports(_spec: Any) -> tuple[str, ...]:
    return ()


def always(*modules: str) -> Callable[[Any], tuple[str, ...]]:
    """``Kind.imports`` of a kind whose every target uses the same lazily bound ``modules``."""
    return lambda _spec: modules


@dataclass(frozen=True, slots=True, eq=False)
class Kind(Generic[Spec]):
    """One probe kind; compared by identity (each kind module makes exactly one)."""

    name: str
    # Spec from the target's validated config mapping; raises ConfigProblem for a mistake.
    build: Callable[[Mapping[str, Any], KeyPath, Source], Spec]
    # One probe: records into ctx.trace, raises ProbeFailure to fail; the runner owns the timeout.
    probe: Callable[[Spec, ProbeContext], Awaitable[None]]
    # What the target points at, for people: a URL, an address, a DNS question.
    endpoint: Callable[[Spec], str]
    # The probe's settings besides its endpoint, for the status page (secrets left out).
    options: Callable[[Spec], dict[str, str]]
    # The metric families this kind's observations write, besides the common probe families.
    families: tuple[Family, ...] = ()
    # Request details beyond endpoint and options (HTTP: method, headers, body size).
    request: Callable[[Spec], dict[str, Any]] = _no_request
    # The interval of a target without its own, instead of defaults.interval (domain: RDAP
    # servers rate-limit, so hours rather than seconds); None: defaults.interval.
    default_interval: float | None = None
    # The modules a target's probes use that are bound lazily (``lazy_import``), by its spec:
    # imported before the first probe of such a target, and not at all without one.
    imports: Callable[[Spec], tuple[str, ...]] = _no_imports
