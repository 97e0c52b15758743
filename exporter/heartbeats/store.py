"""What every heartbeat store does, whichever engine holds the pings.

Two engines implement ``Store``: SQLite (``sqlite_store``, the default, one process) and
PostgreSQL (``postgres_store``, shared by several replicas). Both keep the same contract: a ping
is acknowledged only after the transaction holding it is committed; pings that queue up while a
commit runs are committed together (group commit); the published facts change only after their
commit, so a scrape never shows a ping that could still be lost.

``fold`` is the engine-independent part of a commit: it settles a batch of pings against the
facts and instance tracks they apply to, and lists the rows to write. A ping that cannot be
applied fails alone (logged and counted); the rest of its batch is committed.

The store also records when each heartbeat was first declared (``declare``): a facts row
without pings, ``Facts.declared_at``, from which the first deadline of a heartbeat that never
pinged counts. A heartbeat that a config no longer declares loses that row if it never pinged
(declaring it again later starts its first period then); one that pinged keeps its facts.

The store also keeps the maintenance windows created at run time (``maintenance``,
``save_maintenance``): the same durable place, so a restart, or another replica on the same
PostgreSQL database, sees them too. A window is forgotten ``KEEP_ENDED`` after it closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.heartbeats.spec import Heartbeat
from exporter.heartbeats.state import Facts, Instances, Ping, Signal, TooManyInstances, Track, judge
from exporter.maintenance import Scheduled

__all__ = [
    "KEEP_PINGS",
    "MAX_BATCH",
    "Folded",
    "Pending",
    "PingRow",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoredPing",
    "Waiting",
    "declarations",
    "fold",
]

log = logging.getLogger(__name__)

KEEP_PINGS = 100
MAX_BATCH = 4096


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says which and why."""


@dataclass(frozen=True, slots=True)
class StoredPing:
    seq: int
    at: float
    signal: Signal
    rid: str | None
    instance: str | None
    exit_code: int | None
    duration: float | None
    body: bytes


class Waiting(Protocol):
    """Work queued for a commit (a ping, a declaration, a maintenance window) that is answered
    through its future."""

    @property
    def future(self) -> asyncio.Future[Any]:
        """Answered with the outcome once the commit is done, or with its error."""


@dataclass(slots=True)
class StoreHealth:
    """What ``lookout_heartbeat_store_*`` exports: whether writes succeed, and the counts of
    failed operations and of damaged rows set aside."""

    engine: str
    up: bool = True
    errors: int = 0
    quarantined: int = 0

    def committed(self, where: Mapping[str, str]) -> None:
        """A commit went through: the store is up (logged once when it was down)."""
        if not self.up:
            log.warning("heartbeat pings stored again", extra=dict(where))
            self.up = True

    def failed(self, batch: Sequence[Waiting], error: Exception) -> None:
        """A commit failed: the store is down (logged once when it was up) and every ping of
        ``batch`` still waiting is answered with ``error``."""
        if self.up:
            log.error("heartbeat pings not stored", extra={"error": str(error)})
            self.up = False
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)


@dataclass(slots=True)
class Pending:
    """A ping waiting for its commit; ``future`` gets the facts after it, or the error."""

    ping: Ping
    spec: Heartbeat
    future: asyncio.Future[Facts]


# One row of the ping ring: heartbeat, slot, seq, at, signal, rid, instance, exit code,
# duration, body.
PingRow = tuple[str, int, int, float, str, str | None, str | None, int | None, float | None, bytes]


@dataclass(slots=True)
class Folded:
    """A batch settled: per pending ping its facts or its error, and what to write."""

    outcomes: list[Facts | Exception] = field(default_factory=list)
    facts: dict[str, Facts] = field(default_factory=dict)
    pings: list[PingRow] = field(default_factory=list)
    # (heartbeat, instance) -> its new track, or None when the name is forgotten.
    instances: dict[tuple[str, str], Track | None] = field(default_factory=dict)
    failures: int = 0

    def apply_instances(self, books: dict[str, Instances]) -> None:
        """Carry the batch's instance changes into ``books`` (after the commit)."""
        for (heartbeat, name), track in self.instances.items():
            book = books.setdefault(heartbeat, Instances())
            if track is None:
                book.remove(name)
            else:
                book.put(name, track)

    def answer(self, batch: Sequence[Pending]) -> None:
        """Answer each ping of ``batch`` (committed) with its outcome; a ping whose client gave
        up meanwhile is skipped."""
        for item, outcome in zip(batch, self.outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, Exception):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)


class Store(Protocol):
    """A heartbeat store as the service uses it."""

    health: StoreHealth

    @property
    def facts(self) -> Mapping[str, Facts]:
        """The committed facts of every heartbeat (memory only)."""

    @property
    def running(self) -> bool:
        """Whether pings can be recorded at all (the writer is alive)."""

    def describe(self) -> str:
        """Where the store is, for log lines (no secrets)."""

    def instances(self, heartbeat: str) -> Instances | None:
        """The committed instance tracks of ``heartbeat`` (memory only)."""

    @property
    def maintenance(self) -> Mapping[str, Scheduled]:
        """The committed run-time maintenance windows by id (memory only); a new mapping object
        after every change, so a reader can tell by identity whether anything changed."""

    async def declare(self, names: Collection[str], at: float) -> None:
        """Record ``at`` as the declaration time of each of ``names`` that has no facts yet, and
        forget the heartbeats not in ``names`` that never pinged; returns once committed
        (raises ``StoreError`` if not)."""

    async def save_maintenance(self, window: Scheduled, forget_before: float) -> None:
        """Write ``window`` (new, or ended early) and forget the windows closed before
        ``forget_before``; returns once that is committed (raises ``StoreError`` if not)."""

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def record(self, ping: Ping, spec: Heartbeat) -> Facts:
        """The heartbeat's facts with ``ping`` applied, once the ping is committed."""

    async def recent(self, heartbeat: str, limit: int = KEEP_PINGS) -> list[StoredPing]:
        """The latest kept pings of ``heartbeat``, newest first."""

    async def latest_failures(self, after: Mapping[str, int]) -> dict[str, StoredPing]:
        """For each heartbeat in ``after``, its newest kept ``fail`` above that seq."""

    async def check(self) -> None:
        """Raise ``StoreError`` unless the store can be written now; mark it up if it can."""


def declarations(
    names: Collection[str], at: float, facts: Mapping[str, Facts]
) -> tuple[dict[str, Facts], list[str]]:
    """What ``declare`` writes: facts for the newly declared heartbeats, and the names to forget
    (heartbeats without pings that are no longer declared)."""
    added = {name: Facts(declared_at=at) for name in names if name not in facts}
    gone = [name for name, f in facts.items() if f.seq == 0 and name not in names]
    return added, sorted(gone)


def fold(
    batch: Sequence[Pending],
    facts_of: Callable[[str], Facts],
    books: Callable[[str], Instances],
    known: Callable[[str, str], Track | None] | None = None,
) -> Folded:
    """Apply ``batch`` in order to the facts ``facts_of`` gives; the instance tracks come from
    ``known`` (the writer's authoritative copy, when it has one) or the ``books``."""
    folded = Folded()
    for item in batch:
        ping, spec = item.ping, item.spec
        name = ping.heartbeat
        facts = folded.facts.get(name) or facts_of(name)
        try:
            judged = judge(ping, facts, spec)
            facts = facts.apply(judged, spec)
            if ping.instance is not None:
                _apply_instance(folded, judged, spec, books(name), known)
        except TooManyInstances as refused:
            folded.outcomes.append(refused)
            continue
        except Exception as exc:  # a ping must never stop the writer: it fails alone
            log.exception("heartbeat ping not applied", extra={"heartbeat": name})
            folded.failures += 1
            folded.outcomes.append(StoreError(f"ping of {name!r} could not be applied: {exc}"))
            continue
        folded.facts[name] = facts
        folded.outcomes.append(facts)
        folded.pings.append(
            (
                name,
                facts.seq % KEEP_PINGS,
                facts.seq,
                judged.at,
                str(judged.signal),
                judged.rid,
                judged.instance,
                judged.exit_code,
                judged.duration,
                judged.body,
            )
        )
    return folded


def _apply_instance(
    folded: Folded,
    ping: Ping,
    spec: Heartbeat,
    book: Instances,
    known: Callable[[str, str], Track | None] | None,
) -> None:
    assert ping.instance is not None
    key = (ping.heartbeat, ping.instance)
    if key in folded.instances:
        current = folded.instances[key]
    else:
        current = known(*key) if known is not None else book.get(ping.instance)
    if current is None:
        touched = frozenset(n for h, n in folded.instances if h == ping.heartbeat)
        added = sum(
            1
            for (h, n), t in folded.instances.items()
            if h == ping.heartbeat and t is not None and book.get(n) is None
        )
        removed = sum(
            1 for (h, n), t in folded.instances.items() if h == ping.heartbeat and t is None
        )
        evict = book.make_room(spec, ping.at, touched, extra=added - removed)
        if evict is not None:
            folded.instances[(ping.heartbeat, evict)] = None
    folded.instances[key] = (current or Track()).apply(ping, spec)
