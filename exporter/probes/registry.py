"""Every probe kind by name: the one list of kinds. Adding a kind is one module that exports
``KIND`` (see ``kind.Kind`` and docs/architecture.md) plus its line here.

A kind's module is imported when the kind is first looked up (``KINDS["http"]``), so that
``check-config`` of a file of HTTP targets imports neither the DNS nor the gRPC kind and their
libraries; iterating over ``KINDS`` imports them all (the collectors do, when the server starts).

The config schema's ``kind`` enum, its per-kind sections, docs/probes.md and docs/metrics.md
are checked against this mapping by tests/test_kinds.py.
"""

from __future__ import annotations

import copyreg
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from exporter.probes.kind import Kind

__all__ = ["KINDS", "kind_named"]

# Every kind's name, in the order kinds are listed: each is defined by exporter.probes.<name>.
_NAMES = ("http", "tcp", "tls", "dns", "smtp", "websocket", "grpc", "domain", "icmp", "flow")


class _Kinds(Mapping[str, Kind[Any]]):
    """The kinds by name, each module imported at the first lookup of its kind."""

    def __init__(self) -> None:
        self._imported: dict[str, Kind[Any]] = {}

    def __getitem__(self, name: str) -> Kind[Any]:
        kind = self._imported.get(name)
        if kind is None:
            if name not in _NAMES:
                raise KeyError(name)
            module = importlib.import_module(f"exporter.probes.{name}")
            kind = self._imported[name] = module.KIND
        return kind

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)


KINDS: Mapping[str, Kind[Any]] = _Kinds()


def kind_named(name: str) -> Kind[Any]:
    """The registered kind ``name``: what a pickled target's kind becomes again."""
    return KINDS[name]


# A target pickled by the config loader process comes back with the registered kind itself,
# which is compared by identity, not with a copy of it.
copyreg.pickle(Kind, lambda kind: (kind_named, (kind.name,)))
