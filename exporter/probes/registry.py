"""Every probe kind by name: the one list of kinds. Adding a kind is one module that exports
``KIND`` (see ``kind.Kind`` and docs/architecture.md) plus its line here.

The config schema's ``kind`` enum, its per-kind sections, docs/probes.md and docs/metrics.md
are checked against this mapping by tests/test_kinds.py.
"""

from __future__ import annotations

from typing import Any

from exporter.probes import dns, domain, flow, grpc, http, icmp, smtp, tcp, tls, websocket
from exporter.probes.kind import Kind

__all__ = ["KINDS"]

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
