"""What a probe observed: the mutable ``ProbeTrace`` a prober writes into while it runs, and the
frozen ``ProbeResult`` the runner makes of it once the probe passed, failed or timed out.

The trace outlives a timeout or an exception, so phases and certificates seen before the failure
still reach the metrics (an expired certificate must still show its NotAfter).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from exporter.clock import Clock
from exporter.reasons import Reason

__all__ = ["Certificate", "Check", "ProbeResult", "ProbeTrace"]


@dataclass(frozen=True, slots=True)
class Certificate:
    """One certificate of a presented chain, as far as the metrics and the status page need it."""

    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    not_before: float
    not_after: float
    dns_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation and how it went, for ``lookout-exporter probe`` and the status page."""

    name: str
    passed: bool
    detail: str


@dataclass(slots=True)
class ProbeTrace:
    """Everything a prober records while it runs. Probers only ever add to it."""

    clock: Clock
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    chain: tuple[Certificate, ...] = ()
    tls_version: str | None = None
    status_code: int | None = None
    http_version: str | None = None
    response_size: int | None = None
    dns_answers: int | None = None
    active: str | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name`` (recorded even if the block raises)."""
        start = self.clock.monotonic()
        self.active = name
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + self.clock.monotonic() - start
        self.active = None

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe; ``reason`` and ``message`` are set exactly when it failed."""

    target: str
    success: bool
    duration: float
    finished_at: float
    reason: Reason | None = None
    message: str = ""
    phases: tuple[tuple[str, float], ...] = ()
    checks: tuple[Check, ...] = ()
    chain: tuple[Certificate, ...] = ()
    tls_version: str | None = None
    status_code: int | None = None
    http_version: str | None = None
    response_size: int | None = None
    dns_answers: int | None = None

    @property
    def cert_expiry(self) -> float | None:
        """The earliest NotAfter of the presented chain, if a chain was seen."""
        return min(cert.not_after for cert in self.chain) if self.chain else None

    @classmethod
    def from_trace(
        cls,
        target: str,
        trace: ProbeTrace,
        *,
        duration: float,
        finished_at: float,
        reason: Reason | None,
        message: str,
    ) -> ProbeResult:
        return cls(
            target=target,
            success=reason is None,
            duration=duration,
            finished_at=finished_at,
            reason=reason,
            message=message,
            phases=tuple(trace.phases.items()),
            checks=tuple(trace.checks),
            chain=trace.chain,
            tls_version=trace.tls_version,
            status_code=trace.status_code,
            http_version=trace.http_version,
            response_size=trace.response_size,
            dns_answers=trace.dns_answers,
        )
