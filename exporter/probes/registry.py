"""Every probe kind by name: the one list of kinds. Adding a kind is one module that exports
``KIND`` (see ``kind.Kind`` and docs/architecture.md) plus its line here.

The config schema's ``kind`` enum, its per-kind sections, docs/probes.md and docs/metrics.md
are checked against this mapping by tests/test_kinds.py.
"""

from __future__ import annotations

import copyreg
from typing import Any

from exporter.probes import dns, domain, flow, grpc, http, icmp, smtp, tcp, tls, websocket
from exporter.probes.kind import Kind

__all__ = ["KINDS", "kind_named"]

KINDS: dict[str, Kind[Any]] = {
    kind.name: kind
    for kind in (
        http.KIND,
        tcp.KIND,
        tls.KIND,
        dns.KIND,
        smtp.KIND,
        websocket.KIND,
        grpc.KIND,
        domain.KIND,
        icmp.KIND,
        flow.KIND,
    )
}


def kind_named(name: str) -> Kind[Any]:
    """The registered kind ``name``: what a pickled target's kind becomes again."""
    return KINDS[name]


# A target pickled by the config loader process comes back with the registered kind itself,
# which is compared by identity, not with a copy of it.
copyreg.pickle(Kind, lambda kind: (kind_named, (kind.name,)))
