"""One module per probe kind, all with the signature ``async def probe(target, ctx) -> None``.

A prober records what it sees into ``ctx.trace`` and raises ``ProbeFailure`` to fail; it takes no
timeout: ``runner.run_probe`` owns the timeout, the timing and the capture of every error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.probes import dns, http, smtp, tcp, tls
from exporter.probes.context import ProbeContext
from exporter.targets import Target

__all__ = ["PROBERS", "Prober"]

Prober = Callable[[Target, ProbeContext], Awaitable[None]]

PROBERS: dict[str, Prober] = {
    "http": http.probe,
    "tcp": tcp.probe,
    "tls": tls.probe,
    "dns": dns.probe,
    "smtp": smtp.probe,
}
