"""Whether the exporter itself can reach the network: connectivity canaries.

An exporter that lost its own network would see every target fail at once and page for all of
them. With ``connectivity.canaries`` (targets of any kind that are always up: the resolvers,
two well-known endpoints), a failed probe first asks ``reachable(since)``, ``since`` being when
the probe started: when every canary fails too, in a check started after that, the failure is
the exporter's, and the scheduler records it as ``exporter_offline``, which does not change the
target's confirmed state. Checks are shared and spaced: one runs at a time, at most one per
``SPACING`` seconds, and every failed probe that started before a check began takes its verdict,
so a hundred targets failing together cost one round of canary probes. An offline verdict holds
for ``OFFLINE_HOLD`` seconds without a new check. A background loop checks the canaries every
``connectivity.interval`` as well, for ``lookout_exporter_connectivity_ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from exporter.clock import Clock
from exporter.config import ConnectivitySettings
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from exporter.results import ProbeResult
from exporter.targets import Target

__all__ = ["OFFLINE_HOLD", "SPACING", "Connectivity", "offline"]

log = logging.getLogger(__name__)

# Checks start at least this many seconds apart.
SPACING = 1.0
# An offline verdict answers without a new check for this long.
OFFLINE_HOLD = 5.0


def offline(result: ProbeResult) -> ProbeResult:
    """``result`` as a failure of the exporter's own connectivity, its own failure kept in the
    message."""
    return replace(
        result,
        reason=Reason.EXPORTER_OFFLINE,
        message=f"every connectivity canary failed too; the probe said {result.reason}: "
        f"{result.message}",
    )


class Connectivity:
    def __init__(self, clients: SharedClients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock
        self.settings = ConnectivitySettings()
        self.ok: bool | None = None  # None: no canaries, or not checked yet
        self.checked_at: float | None = None  # wall time of the latest verdict
        self.results: dict[str, ProbeResult] = {}
        self._started = -math.inf  # monotonic start of the latest check with a verdict
        self._last_start = -math.inf  # monotonic start of the latest check
        self._pending: asyncio.Future[bool] | None = None
        self._pending_start = -math.inf

    def configure(self, settings: ConnectivitySettings) -> None:
        if settings != self.settings:
            self.settings = settings
            self.ok = None
            self.checked_at = None
            self.results = {}
            self._started = -math.inf

    async def reachable(self, since: float) -> bool:
        """Whether at least one canary passes (True without canaries), as seen by a check that
        started at or after ``since`` (monotonic), or an offline verdict younger than
        ``OFFLINE_HOLD``."""
        while self.settings.canaries:
            now = self._clock.monotonic()
            if self.ok is False and now - self._started < OFFLINE_HOLD:
                return False
            if self.ok is not None and self._started >= since:
                return self.ok
            pending = self._pending
            if pending is None:
                self._pending_start = max(now, self._last_start + SPACING)
                pending = self._pending = asyncio.ensure_future(
                    self._check(self.settings.canaries, self._pending_start - now)
                )
                pending.add_done_callback(self._done)
            if self._pending_start >= since:
                return await asyncio.shield(pending)
            await asyncio.shield(pending)  # began too early for this probe: wait, then again
        return True

    def _done(self, _future: asyncio.Future[bool]) -> None:
        self._pending = None

    async def _check(self, canaries: Sequence[Target[Any]], delay: float) -> bool:
        if delay > 0:
            await asyncio.sleep(delay)
        started = self._last_start = self._clock.monotonic()
        results = await asyncio.gather(
            *(run_probe(canary, self._clients, self._clock) for canary in canaries)
        )
        ok = any(result.success for result in results)
        if canaries is self.settings.canaries:  # not reconfigured meanwhile
            if ok != self.ok and self.ok is not None:
                if ok:
                    log.info("connectivity restored")
                else:
                    failures = "; ".join(f"{r.target}: {r.message}" for r in results)
                    log.warning("every connectivity canary fails", extra={"detail": failures})
            self.ok = ok
            self.results = {result.target: result for result in results}
            self.checked_at = self._clock.time()
            self._started = started
        return ok

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Check the canaries every ``interval`` while the context is open."""
        task = asyncio.create_task(self._loop(), name="connectivity canaries")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._pending is not None:
                self._pending.cancel()

    async def _loop(self) -> None:
        while True:
            if self.settings.canaries:
                try:
                    await self.reachable(self._clock.monotonic())
                except Exception:  # a bug; the loop must go on
                    log.exception("checking the connectivity canaries failed")
            await asyncio.sleep(self.settings.interval)
