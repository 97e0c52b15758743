"""What a prober gets besides its target: the trace it writes into and the shared clients.

One ``ProbeContext`` per probe run; the ``SharedClients`` inside it live as long as the
scheduler and are closed with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.clock import Clock
from exporter.probes.dns import SystemNameserver
from exporter.probes.http import HttpSessions
from exporter.results import ProbeTrace

__all__ = ["ProbeContext", "SharedClients"]


@dataclass(slots=True)
class SharedClients:
    """Clients that are expensive to create and safe to share between probes."""

    http: HttpSessions = field(default_factory=HttpSessions)
    dns: SystemNameserver = field(default_factory=SystemNameserver)

    async def close(self) -> None:
        await self.http.close()


@dataclass(frozen=True, slots=True)
class ProbeContext:
    trace: ProbeTrace
    clients: SharedClients

    @property
    def clock(self) -> Clock:
        return self.trace.clock
