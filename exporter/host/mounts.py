"""Filesystem usage per mount point without ever waiting on a hung mount for long.

``statvfs`` on a dead NFS or FUSE mount can block for minutes and no thread can be interrupted
in it. So the calls run on a few daemon worker threads and each round of calls has a deadline.
A mount whose call misses it is *stuck*: it is reported as failed and not called again until
the stuck call returns, and the worker blocked in it is replaced, so the other mounts keep being
read. Workers are started on demand up to ``workers`` and kept between rounds (a host with
hundreds of mounts costs a queue hand-off per mount, not a thread start); one idle for
``IDLE_SECONDS`` ends. A worker whose stuck call returns rejoins the pool, or ends if the pool
is full again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass

__all__ = ["FilesystemStats", "FilesystemUsage", "StatVFS"]

log = logging.getLogger(__name__)

StatVFS = Callable[[str], os.statvfs_result]

IDLE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class FilesystemUsage:
    """Bytes and inodes of one filesystem, as ``statvfs`` reports them."""

    size: int
    free: int
    avail: int
    files: int
    files_free: int

    @classmethod
    def from_statvfs(cls, st: os.statvfs_result) -> FilesystemUsage:
        return cls(
            size=st.f_blocks * st.f_frsize,
            free=st.f_bfree * st.f_frsize,
            avail=st.f_bavail * st.f_frsize,
            files=st.f_files,
            files_free=st.f_ffree,
        )


class FilesystemStats:
    """Runs ``statvfs`` for many mount points on a small pool of threads under one deadline."""

    def __init__(self, statvfs: StatVFS = os.statvfs, workers: int = 4) -> None:
        self._statvfs = statvfs
        self._workers = workers
        self._jobs: queue.SimpleQueue[tuple[str, Future[FilesystemUsage]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stuck: set[str] = set()
        self._serving = 0  # worker threads not blocked in a stuck call

    def stuck(self) -> frozenset[str]:
        """Mount points whose call missed a deadline and has not returned yet."""
        with self._lock:
            return frozenset(self._stuck)

    def usage(
        self, mountpoints: Iterable[str], timeout: float
    ) -> dict[str, FilesystemUsage | None]:
        """Usage per mount point; None where the call failed, timed out or is still stuck."""
        out: dict[str, FilesystemUsage | None] = {}
        pending: dict[str, Future[FilesystemUsage]] = {}
        with self._lock:
            stuck = set(self._stuck)
        for mountpoint in mountpoints:
            if mountpoint in stuck:
                out[mountpoint] = None
            else:
                pending[mountpoint] = Future()
        started = time.monotonic()
        with self._lock:  # enqueue with the lock held so that no worker retires meanwhile
            missing = max(min(len(pending), self._workers) - self._serving, 0)
            self._serving += missing
            for job in pending.items():
                self._jobs.put(job)
        for _ in range(missing):
            threading.Thread(target=self._work, name="lookout-statvfs", daemon=True).start()
        wait(pending.values(), timeout=timeout)
        for mountpoint, future in pending.items():
            out[mountpoint] = None
            # A call still queued at the deadline is dropped; one still running is stuck.
            if not future.done() and not future.cancel():
                with self._lock:
                    if not future.done():
                        self._stuck.add(mountpoint)
                        self._serving -= 1
                        log.warning(
                            "filesystem at %r did not answer statvfs within %.3gs; reporting it "
                            "as failed until the call returns",
                            mountpoint,
                            time.monotonic() - started,
                        )
                        continue
            if future.cancelled():
                log.debug("statvfs(%r) was not started before the deadline", mountpoint)
            elif (error := future.exception()) is not None:
                log.debug("statvfs(%r) failed: %s", mountpoint, error)
            else:
                out[mountpoint] = future.result()
        return out

    def _work(self) -> None:
        while True:
            try:
                mountpoint, future = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._serving -= 1
                        return
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                usage = FilesystemUsage.from_statvfs(self._statvfs(mountpoint))
                error: Exception | None = None
            except Exception as exc:  # any failure of one mount is that mount's error
                error = exc
            with self._lock:  # settle the future and the stuck mark together (see usage())
                was_stuck = mountpoint in self._stuck
                rejoin = True
                if was_stuck:
                    self._stuck.discard(mountpoint)
                    rejoin = self._serving < self._workers
                    self._serving += rejoin
                if error is None:
                    future.set_result(usage)
                else:
                    future.set_exception(error)
            if was_stuck:
                log.info("statvfs(%r) returned after being stuck; it is read again", mountpoint)
            if not rejoin:
                return
