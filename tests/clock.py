"""A clock for tests (the ``exporter.clock.Clock`` seam) that moves only when told to."""

from __future__ import annotations


class FakeClock:
    """Wall time ``now`` and a monotonic reading ``mono``; ``advance`` moves both."""

    def __init__(self, now: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self.now = now
        self.mono = mono

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds
