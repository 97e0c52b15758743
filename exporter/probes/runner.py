"""Runs one probe of one target: under its timeout, timed, with every error captured.

A prober that raises anything never reaches the scheduler as an exception: a ``ProbeFailure``
keeps its reason, a timeout becomes ``timeout`` (naming the phase it was in), and anything else
becomes ``error`` and is logged with its traceback, since it is a bug in the prober.

The duration is the wall time of the probe, unless the prober measured a latency of its own
(``ProbeTrace.latency``: an icmp probe's average round trip rather than its count x interval).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from exporter.clock import Clock
from exporter.lazy_import import import_now
from exporter.probes.clients import SharedClients
from exporter.probes.context import ProbeContext
from exporter.reasons import ProbeFailure, Reason
from exporter.results import ProbeResult, ProbeTrace
from exporter.targets import Target
from exporter.units import format_duration

__all__ = ["prepare", "run_probe"]

log = logging.getLogger(__name__)


def prepare(target: Target[Any]) -> None:
    """Import the libraries the target's probes use (its kind's ``imports``) if not yet done;
    the scheduler does when it takes a target on, ``run_probe`` before its clock starts."""
    import_now(target.kind.imports(target.spec))


async def run_probe(target: Target[Any], clients: SharedClients, clock: Clock) -> ProbeResult:
    prepare(target)
    trace = ProbeTrace(clock)
    reason: Reason | None = None
    message = ""
    started = clock.monotonic()
    try:
        async with asyncio.timeout(target.timeout):
            await target.kind.probe(target.spec, ProbeContext(trace, clients))
    except ProbeFailure as failure:
        reason, message = failure.reason, failure.message
    except TimeoutError:
        reason = Reason.TIMEOUT
        during = f" during {trace.active}" if trace.active else ""
        message = f"no result within {format_duration(target.timeout)}{during}"
    except Exception as exc:
        log.exception("prober error", extra={"target": target.name})
        reason, message = Reason.ERROR, f"{type(exc).__name__}: {exc}"
    elapsed = clock.monotonic() - started
    return ProbeResult.from_trace(
        target.name,
        trace,
        duration=elapsed if trace.latency is None else trace.latency,
        finished_at=clock.time(),
        reason=reason,
        message=message,
    )
