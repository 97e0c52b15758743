"""Reads the host when a scrape asks for it, in a worker thread, with a cache and a deadline.

``/metrics`` awaits ``fresh()`` before rendering. It starts a read (``HostReader.read``) in the
refresher's own worker thread (not the loop's shared executor, which a stuck host call must
never starve) and waits for it at most ``refresh_timeout``; the event loop serves other requests
meanwhile. The same thread hands the new ``HostSnapshot`` to ``publish`` (the runtime passes the
host collector's ``show``, which renders it there, once), so the collectors still only read
memory. Numbers younger than ``max_age`` are
served as they are, so concurrent or back-to-back scrapes share one read, and a refresh that
is still running is joined, never doubled up. When the deadline passes the scrape gets the
previous numbers; a scrape arriving while that refresh still runs does not wait at all.

Reading on demand rather than on a timer costs one read per scrape interval and nothing while
nobody scrapes, and the numbers are as fresh as node_exporter's (see docs/host-metrics.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from exporter.clock import Clock, SystemClock
from exporter.host.reading import HostReader
from exporter.host.settings import HostSettings
from exporter.host.snapshot import HostSnapshot

__all__ = ["HostRefresher"]

log = logging.getLogger(__name__)


class HostRefresher:
    """Runs ``reader`` under ``settings`` when a scrape needs fresh numbers; see the module."""

    def __init__(
        self,
        reader: HostReader,
        settings: HostSettings,
        publish: Callable[[HostSnapshot | None], None],
        clock: Clock | None = None,
    ) -> None:
        self._reader = reader
        self._settings = settings
        self._publish = publish  # called in the worker thread; None when disabled
        self._publishing = threading.Lock()  # a read in flight never undoes a disabling
        self._clock = clock or SystemClock()
        self._executor: ThreadPoolExecutor | None = None
        self._running: asyncio.Future[None] | None = None
        self._started = -math.inf  # monotonic time the latest refresh started
        self._late_logged = False

    @property
    def settings(self) -> HostSettings:
        return self._settings

    def configure(self, settings: HostSettings) -> None:
        """Use ``settings``; the next scrape reads the host again instead of using the cache.

        Disabling publishes None at once, and a read still running then publishes nothing.
        """
        with self._publishing:
            self._settings = settings
            if not settings.enabled:
                self._publish(None)
        self._started = -math.inf

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Own the worker thread while the context is open (for aiohttp's cleanup_ctx)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-host")
        try:
            yield
        finally:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False, cancel_futures=True)
            if self._running is not None and not self._running.done():
                # Normally done within filesystem_timeout; a stuck host call is not waited on.
                timeout = self._settings.filesystem_timeout + 1
                await asyncio.wait({self._running}, timeout=timeout)

    async def fresh(self) -> None:
        """Return once the published numbers are no older than ``max_age``, or at the deadline."""
        settings = self._settings
        if not settings.enabled or self._executor is None:
            return
        now = self._clock.monotonic()
        running = self._running
        if running is None or running.done():
            if now - self._started < settings.max_age:
                return
            self._started = now
            self._late_logged = False
            loop = asyncio.get_running_loop()
            running = self._running = loop.run_in_executor(self._executor, self._refresh)
            running.add_done_callback(self._finished)
        remaining = self._started + settings.refresh_timeout - now
        if remaining <= 0:
            return
        done, _ = await asyncio.wait({running}, timeout=remaining)
        if not done and not self._late_logged:
            self._late_logged = True
            log.warning(
                "reading the host took longer than host.refresh_timeout (%.3gs); "
                "serving the previous host numbers until it returns",
                settings.refresh_timeout,
            )

    def _refresh(self) -> None:
        """Read the host and publish what it found, unless the settings changed meanwhile."""
        settings = self._settings
        if not settings.enabled:  # disabled after this read was started
            return
        snapshot = self._reader.read(settings)
        with self._publishing:
            if self._settings is settings:
                self._publish(snapshot)

    def _finished(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and (error := future.exception()) is not None:
            log.error("reading the host failed", exc_info=error)
