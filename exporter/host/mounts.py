"""Filesystem usage per mount point without ever waiting on a hung mount for long.

``statvfs`` on a dead NFS or FUSE mount can block for minutes and no thread can be interrupted
in it. So each call runs in its own daemon thread, all of a round share one deadline, and a
mount whose call misses it is *stuck*: it is reported as failed, and not called again until the
stuck call returns (at most one blocked thread per mount, however long it hangs).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial

__all__ = ["FilesystemStats", "FilesystemUsage", "StatVFS"]

log = logging.getLogger(__name__)

StatVFS = Callable[[str], os.statvfs_result]


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
    """Runs ``statvfs`` for many mount points concurrently under one deadline."""

    def __init__(self, statvfs: StatVFS = os.statvfs) -> None:
        self._statvfs = statvfs
        self._stuck: set[str] = set()
        self._lock = threading.Lock()

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
                continue
            future: Future[FilesystemUsage] = Future()
            threading.Thread(
                target=self._call,
                args=(mountpoint, future),
                name="lookout-statvfs",
                daemon=True,
            ).start()
            pending[mountpoint] = future
        started = time.monotonic()
        done, _ = wait(pending.values(), timeout=timeout)
        for mountpoint, future in pending.items():
            if future in done:
                error = future.exception()
                if error is None:
                    out[mountpoint] = future.result()
                else:
                    log.debug("statvfs(%r) failed: %s", mountpoint, error)
                    out[mountpoint] = None
                continue
            out[mountpoint] = None
            with self._lock:
                self._stuck.add(mountpoint)
            log.warning(
                "filesystem at %r did not answer statvfs within %.3gs; "
                "reporting it as failed until the call returns",
                mountpoint,
                time.monotonic() - started,
            )
            future.add_done_callback(partial(self._returned, mountpoint))
        return out

    def _call(self, mountpoint: str, future: Future[FilesystemUsage]) -> None:
        try:
            future.set_result(FilesystemUsage.from_statvfs(self._statvfs(mountpoint)))
        except Exception as exc:  # any failure of one mount is that mount's error
            future.set_exception(exc)

    def _returned(self, mountpoint: str, _: Future[FilesystemUsage]) -> None:
        with self._lock:
            self._stuck.discard(mountpoint)
        log.info("statvfs(%r) returned after being stuck; it is read again", mountpoint)
