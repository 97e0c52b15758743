"""Keeps the host collector's numbers fresh from a background task, never from a scrape.

Every ``refresh_interval`` the task runs ``HostCollector.refresh`` in the refresher's own worker
thread (not the loop's shared executor, which a stuck host call must never starve) and waits for
it at most one interval. A refresh still running when the next one is due is not doubled up:
that round is skipped and the previous numbers stay on ``/metrics``. ``configure`` applies
reloaded settings and refreshes at once, so changed filters show on the next scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from exporter.collectors.host import HostCollector
from exporter.host.settings import HostSettings

__all__ = ["HostRefresher"]

log = logging.getLogger(__name__)


class HostRefresher:
    def __init__(self, collector: HostCollector) -> None:
        self.collector = collector
        self._wake = asyncio.Event()
        self._running: asyncio.Future[None] | None = None

    def configure(self, settings: HostSettings) -> None:
        """Use ``settings`` now: the next refresh starts without waiting out the interval."""
        self.collector.configure(settings)
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Refresh in the background while the context is open (for aiohttp's cleanup_ctx).

        The first refresh happens before the context opens, so the first scrape already shows
        the host; the loop then refreshes every ``refresh_interval``.
        """
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-host")
        task: asyncio.Task[None] | None = None
        try:
            settings = self.collector.settings
            if settings.enabled:
                await self._refresh_once(loop, executor, settings.refresh_interval)
            task = asyncio.create_task(self._run(loop, executor), name="lookout-host-refresher")
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            executor.shutdown(wait=False, cancel_futures=True)
            if self._running is not None and not self._running.done():
                # Normally done within filesystem_timeout; a stuck host call is not waited on.
                timeout = self.collector.settings.filesystem_timeout + 1
                await asyncio.wait({self._running}, timeout=timeout)

    async def _run(self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.collector.settings.refresh_interval
                )
            self._wake.clear()
            settings = self.collector.settings
            if settings.enabled:
                await self._refresh_once(loop, executor, settings.refresh_interval)

    async def _refresh_once(
        self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, deadline: float
    ) -> None:
        if self._running is not None and not self._running.done():
            log.warning("the previous host refresh is still running; keeping its numbers")
            return
        self._running = running = loop.run_in_executor(executor, self.collector.refresh)
        done, _ = await asyncio.wait({running}, timeout=deadline)
        if not done:
            log.warning(
                "host refresh took longer than %.3gs; keeping the previous numbers", deadline
            )
            running.add_done_callback(self._finished)
            return
        self._finished(running)

    def _finished(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and (error := future.exception()) is not None:
            log.error("host refresh failed", exc_info=error)
