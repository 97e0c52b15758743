"""What a probe observed: the mutable ``ProbeTrace`` a prober writes into while it runs, and the
frozen ``ProbeResult`` the runner makes of it once the probe passed, failed or timed out.

Every kind records the same common facts (phases, checks, what a TLS handshake presented) and
its own facts as one frozen ``Observation`` value declared in its module (HTTP: status code,
version, size; DNS: the answer count). The trace outlives a timeout or an exception, so phases,
certificates and facts seen before the failure still reach the metrics (an expired certificate
must still show its NotAfter).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from exporter.clock import Clock
from exporter.families import Family
from exporter.reasons import Reason

__all__ = [
    "Accumulating",
    "Certificate",
    "Check",
    "Observation",
    "ProbeResult",
    "ProbeTrace",
    "Sample",
    "TlsSeen",
    "shared",
]


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


@dataclass(frozen=True, slots=True)
class TlsSeen:
    """What a TLS handshake presented: the chain (verified or not) and the negotiated version
    (None unless the handshake completed)."""

    chain: tuple[Certificate, ...]
    version: str | None


# Checks, tuples of checks and observations that passing probes of many targets repeat word for
# word ("status 200 in 2xx"): one shared object each instead of one per target's latest result.
# Forgotten when it grows past ``_SHARED_LIMIT`` (details with changing numbers would otherwise
# pile up).
_SHARED_LIMIT = 4096
_SHARED: dict[Any, Any] = {}
_Value = TypeVar("_Value")


def shared(value: _Value) -> _Value:
    """``value``, or an equal one kept from an earlier call (``value`` must be hashable)."""
    if len(_SHARED) >= _SHARED_LIMIT:
        _SHARED.clear()
    kept: _Value = _SHARED.setdefault(value, value)
    return kept


# A sample an observation adds to its target's series: the family, the value, and the
# label pairs text of its own labels besides the target's ("" for none).
Sample = tuple[Family, float, str]


class Observation(Protocol):
    """A kind's own facts about one probe, one frozen value declared in the kind's module."""

    @property
    def status_code(self) -> int | None:
        """The status the peer answered with, for the history table (None when none)."""
        ...

    def samples(self) -> Iterable[Sample]:
        """The samples of the kind's own families (``Kind.families``)."""
        ...

    def json(self) -> dict[str, Any]:
        """The facts for the API's ``facts`` object (``docs/openapi.yaml``)."""
        ...

    def summary(self) -> list[str]:
        """The facts for people, as short phrases (``lookout-exporter probe``'s Response line)."""
        ...


class Accumulating(abc.ABC):
    """An observation that also feeds series kept between probes (a flow's per-step
    histogram and failure counters); the target's stats keep them. A base class rather than a
    runtime-checkable protocol: the stats check every result against it, and a protocol's
    check took 11-12 us per probe."""

    __slots__ = ()

    @abc.abstractmethod
    def accumulate(self) -> Iterable[Sample]:
        """Samples to keep: a histogram family's value is observed, a counter's is added."""


@dataclass(slots=True)
class ProbeTrace:
    """Everything a prober records while it runs. Probers only ever add to it."""

    clock: Clock
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    tls: TlsSeen | None = None
    observation: Observation | None = None
    active: str | None = None
    # The probe's own latency, which the runner reports as its duration instead of the wall
    # time (icmp: the average round trip, not count x interval); None: the wall time.
    latency: float | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name`` (recorded even if the block raises)."""
        start = self.clock.monotonic()
        self.active = name
        try:
            yield
        finally:
            self.add_phase(name, self.clock.monotonic() - start)
        self.active = None

    def add_phase(self, name: str, seconds: float) -> None:
        """Add ``seconds`` (negative counts as 0) to phase ``name``, measured by the prober."""
        self.phases[name] = self.phases.get(name, 0.0) + max(seconds, 0.0)

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(shared(Check(name, passed, detail)))
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
    # The phases the prober timed, in order: their names (one tuple for all the results that
    # timed the same ones) and their seconds; ``phases`` pairs them. Two flat tuples rather
    # than a tuple of pairs: about 200 bytes less per target's latest result.
    phase_names: tuple[str, ...] = ()
    phase_seconds: tuple[float, ...] = ()
    checks: tuple[Check, ...] = ()
    tls: TlsSeen | None = None
    observation: Observation | None = None

    @property
    def phases(self) -> tuple[tuple[str, float], ...]:
        """(name, seconds) of each phase, in order."""
        return tuple(zip(self.phase_names, self.phase_seconds, strict=True))

    @property
    def chain(self) -> tuple[Certificate, ...]:
        """The presented certificate chain, empty when no handshake presented one."""
        return self.tls.chain if self.tls is not None else ()

    @property
    def cert_expiry(self) -> float | None:
        """The earliest NotAfter of the presented chain, if a chain was seen."""
        chain = self.chain
        return min(cert.not_after for cert in chain) if chain else None

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version, None unless a handshake completed."""
        return self.tls.version if self.tls is not None else None

    @property
    def status_code(self) -> int | None:
        return self.observation.status_code if self.observation is not None else None

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
            phase_names=shared(tuple(trace.phases)),
            phase_seconds=tuple(trace.phases.values()),
            checks=shared(tuple(trace.checks)),
            tls=trace.tls,
            observation=trace.observation,
        )
