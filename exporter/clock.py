"""The clock seam: everything that reads the time takes a ``Clock`` so tests can travel in time."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch, for timestamps people and Prometheus read."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for durations and schedules."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
