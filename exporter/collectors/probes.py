"""Renders every target's ``ProbeStats`` as the probe metric families of the contract.

Sample of the exposition (one target, labels shortened)::

    # HELP lookout_probe_success 1 if the latest scheduled probe passed every check, else 0.
    # TYPE lookout_probe_success gauge
    lookout_probe_success{target="orders-api",kind="http",service="orders"} 1
    # TYPE lookout_probe_duration_seconds histogram
    lookout_probe_duration_seconds_bucket{target="orders-api",kind="http",le="0.005"} 0
    ...
    lookout_probe_failures_total{target="orders-api",kind="http",reason="status"} 3
    lookout_probe_phase_seconds{target="orders-api",kind="http",phase="connect"} 0.0004
    lookout_tls_cert_expiry_timestamp_seconds{target="orders-api",kind="http"} 1.7e+09
    lookout_http_status_code{target="orders-api",kind="http",service="orders"} 200
    lookout_probe_endpoint_info{target="orders-api",kind="http",\
endpoint="https://api.example.com/v2/orders"} 1
    lookout_probe_failure_info{target="orders-api",kind="http",reason="status",\
message="status 503 not in expect.status [200]"} 1

The families every kind shares are declared here; each kind adds its own (``Kind.families``,
written by its ``Observation``). ``target_samples`` says which samples a target has; the text
and the protobuf renderers both write exactly those. The collector owns a cache of each
target's rendering in each format, keyed by the target's name with the stats' ``generation``
and the location it was rendered for: ``refresh`` renders a target as its probe completes, so a
scrape of 10,000 targets is mostly joins, and a scrape renders afresh only the targets whose
cached rendering is stale (changed by a reload, a new location, or never rendered). The
protobuf rendering also carries the duration histogram's native buckets; it is made only once
a scrape has asked for protobuf.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from exporter.exposition import header, histogram_lines, label_pairs, sample
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes.registry import KINDS
from exporter.probes.values import PROBE_VALUE
from exporter.results import Sample
from exporter.stats import ProbeStats
from exporter.targets import NO_CONFIRMATION

if TYPE_CHECKING:
    from exporter.protobuf import exposition as protobuf
    from exporter.protobuf import metrics_pb2
    from exporter.protobuf.metrics_pb2 import MetricFamily
else:  # at the first scrape that asks for protobuf (see exporter.protobuf)
    protobuf = lazy_module("exporter.protobuf.exposition")
    metrics_pb2 = lazy_module("exporter.protobuf.metrics_pb2")

__all__ = [
    "BATCH",
    "CACHED_BATCH",
    "COMMON_FAMILIES",
    "FAMILIES",
    "PROTOBUF_BATCH",
    "ProbeCollector",
]

# Targets rendered, or joined into one chunk, between two chances for the caller to pause.
BATCH = 200
# Targets rendered afresh in protobuf between two chances to pause: a target's messages take
# about four times as long to build as its text.
PROTOBUF_BATCH = BATCH // 4
# Targets a scrape looks up in its cache, or transposes into columns, between two
# chances to pause: a few microseconds each, so 10,000 of them held the loop for tens of ms.
CACHED_BATCH = 2000

SUCCESS = Family(
    "lookout_probe_success",
    "gauge",
    "The target's confirmed state after its latest probe: 1 passing, 0 failing (see confirm).",
)
ATTEMPT_SUCCESS = Family(
    "lookout_probe_attempt_success",
    "gauge",
    "1 if the latest scheduled probe attempt passed every check, else 0, confirmed or not "
    "(targets with a confirm setting only).",
)
STATE_CHANGES = Family(
    "lookout_probe_confirmed_state_changes_total",
    "counter",
    "Changes of the confirmed state, passing to failing or back (targets with a confirm "
    "setting only).",
)
DURATION = Family(
    "lookout_probe_duration_seconds", "histogram", "Duration of every probe, passed or failed."
)
FAILURES = Family("lookout_probe_failures_total", "counter", "Failed probes by failure reason.")
PHASE = Family(
    "lookout_probe_phase_seconds", "gauge", "Duration of each phase of the latest scheduled probe."
)
LAST_RUN = Family(
    "lookout_probe_last_run_timestamp_seconds",
    "gauge",
    "When the latest scheduled probe finished, in seconds since the epoch.",
)
INCIDENTS = Family(
    "lookout_probe_incidents_total",
    "counter",
    "Incidents: times the confirmed state turned failing.",
)
DOWNTIME = Family(
    "lookout_probe_downtime_seconds_total",
    "counter",
    "Seconds in incidents: closed ones, and the open one up to its latest probe.",
)
INCIDENT_OPEN = Family(
    "lookout_probe_incident_open", "gauge", "1 while an incident is open, as of the latest probe."
)
INCIDENT_START = Family(
    "lookout_probe_incident_start_timestamp_seconds",
    "gauge",
    "When the open incident began (its first failed probe), as of the latest probe.",
)
SLA_OBJECTIVE = Family(
    "lookout_probe_sla_objective_ratio",
    "gauge",
    "The target's declared SLA availability as a ratio.",
)
SLO_OBJECTIVE = Family(
    "lookout_probe_slo_objective_ratio", "gauge", "The target's declared SLO objective as a ratio."
)
LATENCY_THRESHOLD = Family(
    "lookout_probe_latency_threshold_seconds", "gauge", "The target's latency SLO threshold."
)
SLOW = Family(
    "lookout_probe_slow_total", "counter", "Probes slower than the target's latency threshold."
)
CERT_EXPIRY = Family(
    "lookout_tls_cert_expiry_timestamp_seconds",
    "gauge",
    "Earliest NotAfter in the latest certificate chain presented to a scheduled probe, "
    "also when verification failed, and kept while the endpoint cannot be reached.",
)
CERT_INFO = Family(
    "lookout_tls_cert_info", "gauge", "Identity of the leaf certificate seen by the latest probe."
)
TLS_VERSION = Family(
    "lookout_tls_version_info", "gauge", "TLS version negotiated by the latest scheduled probe."
)
ENDPOINT_INFO = Family(
    "lookout_probe_endpoint_info",
    "gauge",
    "What the target probes (URL, address or DNS question, secrets redacted), as a label.",
)
FAILURE_INFO = Family(
    "lookout_probe_failure_info",
    "gauge",
    "The latest probe's failure reason and message, while the latest probe failed.",
)
# Characters of a failure message kept in lookout_probe_failure_info (the page has it all).
FAILURE_MESSAGE_CHARS = 300

COMMON_FAMILIES = (
    SUCCESS,
    ATTEMPT_SUCCESS,
    STATE_CHANGES,
    DURATION,
    FAILURES,
    PHASE,
    LAST_RUN,
    INCIDENTS,
    DOWNTIME,
    INCIDENT_OPEN,
    INCIDENT_START,
    SLA_OBJECTIVE,
    SLO_OBJECTIVE,
    LATENCY_THRESHOLD,
    SLOW,
    CERT_EXPIRY,
    CERT_INFO,
    TLS_VERSION,
    PROBE_VALUE,
    ENDPOINT_INFO,
    FAILURE_INFO,
)
# The common families, then each kind's own, in the registry's order.
FAMILIES: tuple[Family, ...] = COMMON_FAMILIES + tuple(
    family for kind in KINDS.values() for family in kind.families
)
# Where each family's text sits in a target's rendered tuple.
_POSITION = {family: index for index, family in enumerate(FAMILIES)}

# A target's rendering, one part per family of ``FAMILIES``, b"" where it has no sample: its
# sample lines as UTF-8 (kept as bytes: 16 bytes less per part than text, and a scrape sends
# them without encoding them first), or its serialized protobuf ``metric`` entries.
Rendered = tuple[bytes, ...]


def base_label_pairs(stats: ProbeStats, location: str | None) -> list[tuple[str, str]]:
    """The labels of every series of the target: target, kind, location, its static labels."""
    target = stats.target
    pairs = [("target", target.name), ("kind", target.kind.name)]
    if location:
        pairs.append(("location", location))
    pairs.extend(target.labels)
    return pairs


def target_samples(stats: ProbeStats) -> Iterator[Sample]:
    """The target's samples besides its duration histogram, in the order they are written:
    (family, value, label-pairs text of the sample's own labels besides the target's)."""
    for reason, count in sorted(stats.failures.items()):
        yield FAILURES, count, label_pairs([("reason", reason.value)])
    if stats.kept is not None:
        for (family, extra), total in stats.kept.counters.items():
            yield family, total, extra
    yield INCIDENTS, stats.incidents, ""
    yield DOWNTIME, stats.downtime, ""
    yield INCIDENT_OPEN, int(stats.incident_start is not None), ""
    if stats.incident_start is not None:
        yield INCIDENT_START, stats.incident_start, ""
    if stats.target.sla is not None:
        yield SLA_OBJECTIVE, stats.target.sla, ""
    slo = stats.target.slo
    if slo is not None:
        if slo.availability is not None:
            yield SLO_OBJECTIVE, slo.availability, 'slo="availability"'
        if slo.latency_objective is not None and slo.latency_threshold is not None:
            yield SLO_OBJECTIVE, slo.latency_objective, 'slo="latency"'
            yield LATENCY_THRESHOLD, slo.latency_threshold, ""
            yield SLOW, stats.slow, ""
    target = stats.target
    yield ENDPOINT_INFO, 1, label_pairs([("endpoint", target.endpoint)])
    last = stats.last
    if last is None:
        return
    if not last.success and last.reason is not None:
        message = last.message
        if len(message) > FAILURE_MESSAGE_CHARS:
            message = message[: FAILURE_MESSAGE_CHARS - 1] + "…"
        failure = [("reason", last.reason.value), ("message", message)]
        yield FAILURE_INFO, 1, label_pairs(failure)
    if stats.confirmed is not None:
        yield SUCCESS, 1 if stats.confirmed else 0, ""
    if stats.target.confirm != NO_CONFIRMATION:
        yield ATTEMPT_SUCCESS, 1 if last.success else 0, ""
        yield STATE_CHANGES, stats.state_changes, ""
    yield LAST_RUN, last.finished_at, ""
    for phase, seconds in last.phases:
        yield PHASE, seconds, label_pairs([("phase", phase)])
    if stats.cert_expiry is not None:
        yield CERT_EXPIRY, stats.cert_expiry, ""
    tls = last.tls
    if tls is not None:
        if tls.chain:
            leaf = tls.chain[0]
            identity = [
                ("subject", leaf.subject),
                ("issuer", leaf.issuer),
                ("serial", leaf.serial),
                ("fingerprint_sha256", leaf.fingerprint_sha256),
            ]
            yield CERT_INFO, 1, label_pairs(identity)
        if tls.version is not None:
            yield TLS_VERSION, 1, label_pairs([("version", tls.version)])
    if last.observation is not None:
        yield from last.observation.samples()


def render_target(stats: ProbeStats, location: str | None) -> Rendered:
    """One target's sample lines, one part per family of ``FAMILIES`` in its order. A tuple
    rather than a dict: about 200 bytes less per target."""
    base = label_pairs(base_label_pairs(stats, location))
    out = [""] * len(FAMILIES)
    out[_POSITION[DURATION]] = histogram_lines(DURATION, base, stats.durations)
    kept = stats.kept.histograms.items() if stats.kept is not None else ()
    for (family, extra), histogram in kept:
        out[_POSITION[family]] += histogram_lines(family, f"{base},{extra}", histogram)
    for family, value, extra in target_samples(stats):
        out[_POSITION[family]] += sample(family, f"{base},{extra}" if extra else base, value)
    return tuple(part.encode() for part in out)


def render_target_protobuf(stats: ProbeStats, location: str | None) -> Rendered:
    """The same samples as ``render_target``, as serialized ``metric`` entries of each
    family's ``MetricFamily``; the duration histogram with its native buckets too."""
    pairs = base_label_pairs(stats, location)
    base = protobuf.labelled(pairs)
    messages: list[MetricFamily | None] = [None] * len(FAMILIES)
    duration = messages[_POSITION[DURATION]] = metrics_pb2.MetricFamily()
    protobuf.add_histogram(duration, base, stats.durations)
    kept_histograms = stats.kept.histograms.items() if stats.kept is not None else ()
    for (family, extra), histogram in kept_histograms:
        position = _POSITION[family]
        kept = messages[position]
        if kept is None:
            kept = messages[position] = metrics_pb2.MetricFamily()
        labels = protobuf.labelled([*pairs, *protobuf.parse_label_pairs(extra)])
        protobuf.add_histogram(kept, labels, histogram)
    for family, value, extra in target_samples(stats):
        position = _POSITION[family]
        entries = messages[position]
        if entries is None:
            entries = messages[position] = metrics_pb2.MetricFamily()
        protobuf.add_sample(entries, family, base, extra, value)
    return tuple(b"" if m is None else m.SerializeToString() for m in messages)


# Which families of ``FAMILIES`` a target has samples in, by position: a handful of shapes
# for all targets together, one shared tuple each.
Shape = tuple[int, ...]
_SHAPES: dict[Shape, Shape] = {}


def _sparse(rendering: Rendered) -> tuple[Shape, Rendered]:
    """A rendering without its empty families: their positions (a shared tuple), then the
    non-empty texts or entries in that order. A target has samples in about half the families,
    so this keeps half the slots, and a scrape transposes only those."""
    shape = tuple(position for position, part in enumerate(rendering) if part)
    parts = tuple(part for part in rendering if part)
    return _SHAPES.setdefault(shape, shape), parts


def _columns(rendered: list[_Entry]) -> Generator[bytes, None, list[list[tuple[bytes, ...]]]]:
    """Per family of ``FAMILIES``, its parts in the targets' order, as columns of the runs of
    consecutive targets with the same shape (usually one run, or a few per ``CACHED_BATCH``
    targets); yields an empty chunk after every ``CACHED_BATCH`` targets transposed."""
    columns: list[list[tuple[bytes, ...]]] = [[] for _ in FAMILIES]
    start = 0
    while start < len(rendered):
        shape = rendered[start][2]
        end = start + 1
        stop = min(len(rendered), (start // CACHED_BATCH + 1) * CACHED_BATCH)
        while end < stop and rendered[end][2] is shape:
            end += 1
        transposed = zip(*(entry[3] for entry in rendered[start:end]), strict=True)
        for position, column in zip(shape, transposed, strict=True):
            columns[position].append(column)
        if end % CACHED_BATCH == 0:
            yield b""
        start = end
    return columns


def _batches(runs: list[tuple[bytes, ...]]) -> Iterator[bytes]:
    """A family's parts joined ``BATCH`` targets at a time."""
    parts = itertools.chain.from_iterable(runs)
    while chunk := b"".join(itertools.islice(parts, BATCH)):
        yield chunk


# A target's cached rendering: the stats generation and the location it was rendered from and
# for, then its shape and parts (``_sparse``).
_Entry = tuple[int, str | None, Shape, Rendered]


class _Renderings:
    """Each target's rendering in one format, by target name (``_Entry``)."""

    def __init__(self, render: Callable[[ProbeStats, str | None], Rendered], batch: int) -> None:
        self._render = render
        self._batch = batch
        self._entries: dict[str, _Entry] = {}
        # Renderings of the targets a reload is about to add (``prepare``), taken over by the
        # first scrape that finds them current; replaced by the next reload's.
        self._prepared: dict[str, _Entry] = {}

    def _entry(self, stats: ProbeStats, location: str | None) -> _Entry:
        shape, parts = _sparse(self._render(stats, location))
        return (stats.generation, location, shape, parts)

    def refresh(self, stats: ProbeStats, location: str | None) -> None:
        name = stats.target.name
        self._entries[name] = self._entry(stats, location)
        if self._prepared:
            self._prepared.pop(name, None)

    def prepare(self, fresh: Sequence[ProbeStats], location: str | None) -> Iterator[None]:
        """Render ``fresh`` (targets not live yet) ahead; yields after every batch."""
        prepared: dict[str, _Entry] = {}
        self._prepared = prepared
        for count, stats in enumerate(fresh, 1):
            prepared[stats.target.name] = self._entry(stats, location)
            if count % self._batch == 0:
                yield

    def current(
        self,
        snapshot: list[ProbeStats],
        location: str | None,
        live: Callable[[], Iterable[ProbeStats]],
    ) -> Generator[bytes, None, list[_Entry]]:
        """Yields an empty chunk after every batch of targets rendered afresh (those whose cached
        rendering is stale) and after every ``CACHED_BATCH`` targets of ``snapshot``, and
        returns the entries of ``snapshot``'s targets in order (no new tuple for a cached one).
        Forgets the targets that ``live()`` no longer has (removed by a reload)."""
        rendered: list[_Entry] = []
        entries = self._entries
        fresh = 0
        for start in range(0, len(snapshot), CACHED_BATCH):
            some = snapshot[start : start + CACHED_BATCH]
            for stats in some:
                name = stats.target.name
                cached = entries.get(name)
                if cached is not None and cached[0] == stats.generation and cached[1] == location:
                    rendered.append(cached)
                    continue
                cached = self._prepared.pop(name, None) if self._prepared else None
                if cached is None or cached[0] != stats.generation or cached[1] != location:
                    cached = self._entry(stats, location)
                    fresh += 1
                    if fresh % self._batch == 0:
                        yield b""
                entries[name] = cached
                rendered.append(cached)
            if len(some) == CACHED_BATCH:
                yield b""
        if len(entries) > len(rendered):
            current = {stats.target.name for stats in live()}
            for name in [name for name in entries if name not in current]:
                del entries[name]
        return rendered


class ProbeCollector:
    """Text and protobuf collector over the scheduler's stats; ``location()`` labels every
    series when set.

    Each target's text is rendered as its probe completes. Its protobuf entries are rendered
    alike once a scrape has asked for protobuf (before that, no CPU or memory goes to them).
    """

    def __init__(
        self, stats: Callable[[], Iterable[ProbeStats]], location: Callable[[], str | None]
    ) -> None:
        self._stats = stats
        self._location = location
        self._texts = _Renderings(render_target, BATCH)
        self._messages = _Renderings(render_target_protobuf, PROTOBUF_BATCH)
        self._protobuf_scraped = False

    def refresh(self, stats: ProbeStats) -> None:
        """Render ``stats`` now, as its probe completed, so that a scrape mostly joins."""
        location = self._location()
        self._texts.refresh(stats, location)
        if self._protobuf_scraped:
            self._messages.refresh(stats, location)

    def prepare(self, fresh: Sequence[ProbeStats]) -> Iterator[None]:
        """Render a reload's new targets before they go live, yielding after every batch, so
        that the first scrape after the reload joins their text instead of rendering every one
        of them; their protobuf entries too once a scrape has asked for protobuf."""
        location = self._location()
        yield from self._texts.prepare(fresh, location)
        if self._protobuf_scraped:
            yield from self._messages.prepare(fresh, location)

    def expose(self) -> Iterable[str]:
        """The text of ``expose_utf8`` as str (for the probe command)."""
        for chunk in self.expose_utf8():
            yield chunk.decode()

    def expose_utf8(self) -> Iterable[bytes]:
        """The probe families as UTF-8 text, following the slice protocol of
        ``exposition.TextCollector``: an empty chunk after every ``BATCH`` targets rendered
        afresh and every ``CACHED_BATCH`` looked up in the cache or transposed (the targets are
        a snapshot, so probes finishing or a reload in between change nothing in this
        scrape)."""
        snapshot = list(self._stats())
        rendered = yield from self._texts.current(snapshot, self._location(), self._stats)
        # The texts of each family, transposed in one pass per run of targets of one shape:
        # picking a family's texts out of 10,000 tuples once per family took most of a
        # scrape's time.
        columns = yield from _columns(rendered)
        for family, runs in zip(FAMILIES, columns, strict=True):
            if runs:
                yield header(family).encode()
                yield from _batches(runs)

    def expose_protobuf(self) -> Iterable[bytes]:
        """The probe families as delimited ``MetricFamily`` messages, sliced as ``expose``
        slices the text: one message per family, its entries in chunks of ``BATCH`` targets.

        A family's length goes in front of its entries, so its chunks are joined (an empty
        chunk after each, as ``expose`` yields one chunk each) before its frame is written:
        the length is then the sum of some fifty chunks' lengths rather than of every
        target's, which took as long as the joins themselves. The chunks of one family are
        held meanwhile, a few MiB at most with 10,000 targets."""
        self._protobuf_scraped = True
        snapshot = list(self._stats())
        rendered = yield from self._messages.current(snapshot, self._location(), self._stats)
        columns = yield from _columns(rendered)
        for family, runs in zip(FAMILIES, columns, strict=True):
            if runs:
                chunks = []
                for chunk in _batches(runs):
                    chunks.append(chunk)
                    yield b""
                yield protobuf.frame(family, sum(map(len, chunks)))
                yield from chunks
