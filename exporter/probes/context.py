"""What a prober gets besides its spec: the trace it writes into and the shared clients.

One ``ProbeContext`` per probe run; its ``SharedClients`` live as long as the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import exporter
from exporter.clock import Clock

if TYPE_CHECKING:  # the clients (aiohttp) are imported by whoever makes them
    from exporter.probes.clients import SharedClients
from exporter.results import ProbeTrace

__all__ = ["ProbeContext", "user_agent"]


@dataclass(frozen=True, slots=True)
class ProbeContext:
    trace: ProbeTrace
    clients: SharedClients

    @property
    def clock(self) -> Clock:
        return self.trace.clock


@cache
def user_agent() -> str:
    """The ``User-Agent`` of the HTTP-based probes (the version is read on first use)."""
    return f"Lookout/{exporter.__version__}"
