"""Every metric family Lookout's own collectors write, in one place: what the docs, the rules
and the dashboards may refer to (tests check them against it).
"""

from __future__ import annotations

from exporter.collectors import exporter_self, heartbeats, host, maintenance, probes
from exporter.families import Family

__all__ = ["ALL_FAMILIES"]

ALL_FAMILIES: tuple[Family, ...] = (
    *exporter_self.FAMILIES,
    *probes.FAMILIES,
    heartbeats.DECLARED,
    *heartbeats.FAMILIES,
    heartbeats.DURATION,
    *heartbeats.STORE_FAMILIES,
    *maintenance.FAMILIES,
    *host.FAMILIES,
)
