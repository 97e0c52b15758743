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
target's rendering in each format, a column per family and a row per target (``_Renderings``),
with the stats' ``generation`` and the location each row was rendered from and for:
``refresh`` renders a target as its probe completes, so a scrape of 10,000 targets is mostly
joins of the columns as they are, and a scrape renders afresh only the targets whose row is
stale (a new location, never rendered, or probed during a scrape). A reload lays out the rows
of its targets ahead (``prepare``), makes that layout current when it swaps them in
(``go_live``) and renders the targets it changed in place again (``rerender``), so that the
first scrape after it mostly joins too. The protobuf rendering also carries the duration
histogram's native buckets; it is made only once a scrape has asked for protobuf.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.collectors.column import Column
from exporter.exposition import header, histogram_lines, label_pair, label_pairs, sample
from exporter.families import Family
from exporter.lazy_import import lazy_module
from exporter.probes.registry import KINDS
from exporter.probes.values import PROBE_VALUE
from exporter.results import Sample
from exporter.stats import ProbeStats
from exporter.targets import NO_CONFIRMATION, Target

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
    "CHUNK_BYTES",
    "COMMON_FAMILIES",
    "CONFIG_FAMILIES",
    "FAMILIES",
    "PROTOBUF_BATCH",
    "ProbeCollector",
]

# Targets rendered, or joined into one chunk, between two chances for the caller to pause.
BATCH = 200
# Targets rendered afresh in protobuf between two chances to pause: a target's messages take
# about four times as long to build as its text.
PROTOBUF_BATCH = BATCH // 4
# Targets a scrape moves to new rows of its cache (after a reload, or at the first scrape)
# between two chances to pause: 10,000 of them at once held the loop for tens of ms.
CACHED_BATCH = 2000
# Bytes of a family's parts joined into one chunk: large enough to go out as one piece of the
# response without being joined again, small enough to join in a fraction of a millisecond.
CHUNK_BYTES = 256 * 1024

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
# The families whose samples come from the target's config alone (its objectives, its
# endpoint): rendered when a row gets its target, kept joined (``column.Column``), so that
# neither a probe nor a scrape goes through 10,000 parts of each of them.
CONFIG_FAMILIES = (SLA_OBJECTIVE, SLO_OBJECTIVE, LATENCY_THRESHOLD, ENDPOINT_INFO)
# Where each of those sits in a target's rendered config tuple.
_CONFIG_POSITION = {family: index for index, family in enumerate(CONFIG_FAMILIES)}

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
        yield FAILURES, count, label_pair("reason", reason.value)
    if stats.kept is not None:
        for (family, extra), total in stats.kept.counters.items():
            yield family, total, extra
    yield INCIDENTS, stats.incidents, ""
    yield DOWNTIME, stats.downtime, ""
    yield INCIDENT_OPEN, int(stats.incident_start is not None), ""
    if stats.incident_start is not None:
        yield INCIDENT_START, stats.incident_start, ""
    slo = stats.target.slo
    if slo is not None and slo.latency_objective is not None and slo.latency_threshold is not None:
        yield SLOW, stats.slow, ""
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
    for phase, seconds in zip(last.phase_names, last.phase_seconds, strict=True):
        yield PHASE, seconds, label_pair("phase", phase)
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
            yield TLS_VERSION, 1, label_pair("version", tls.version)
    if last.observation is not None:
        yield from last.observation.samples()


def config_samples(target: Target[Any]) -> Iterator[Sample]:
    """The samples of ``CONFIG_FAMILIES``, which come from the target's config alone, as
    ``target_samples`` gives the others."""
    if target.sla is not None:
        yield SLA_OBJECTIVE, target.sla, ""
    slo = target.slo
    if slo is not None:
        if slo.availability is not None:
            yield SLO_OBJECTIVE, slo.availability, 'slo="availability"'
        if slo.latency_objective is not None and slo.latency_threshold is not None:
            yield SLO_OBJECTIVE, slo.latency_objective, 'slo="latency"'
            yield LATENCY_THRESHOLD, slo.latency_threshold, ""
    yield ENDPOINT_INFO, 1, label_pairs([("endpoint", target.endpoint)])


def _text(
    samples: Iterable[Sample], base: str, out: list[str], position: dict[Family, int]
) -> Rendered:
    """``out`` with each sample's line added to its family's part, as UTF-8."""
    for family, value, extra in samples:
        out[position[family]] += sample(family, f"{base},{extra}" if extra else base, value)
    return tuple(map(str.encode, out))


def _messages(
    samples: Iterable[Sample],
    base: metrics_pb2.Metric,
    messages: list[MetricFamily | None],
    position: dict[Family, int],
) -> Rendered:
    """``messages`` with each sample added to its family's entries, serialized."""
    for family, value, extra in samples:
        index = position[family]
        entries = messages[index]
        if entries is None:
            entries = messages[index] = metrics_pb2.MetricFamily()
        protobuf.add_sample(entries, family, base, extra, value)
    return tuple(b"" if m is None else m.SerializeToString() for m in messages)


def render_target(stats: ProbeStats, location: str | None) -> Rendered:
    """One target's sample lines, one part per family of ``FAMILIES`` in its order (b"" for
    ``CONFIG_FAMILIES``: see ``render_config``). A tuple rather than a dict: about 200 bytes
    less per target."""
    base = label_pairs(base_label_pairs(stats, location))
    out = [""] * len(FAMILIES)
    out[_POSITION[DURATION]] = histogram_lines(DURATION, base, stats.durations)
    kept = stats.kept.histograms.items() if stats.kept is not None else ()
    for (family, extra), histogram in kept:
        out[_POSITION[family]] += histogram_lines(family, f"{base},{extra}", histogram)
    return _text(target_samples(stats), base, out, _POSITION)


def render_config(stats: ProbeStats, location: str | None) -> Rendered:
    """The target's sample lines of ``CONFIG_FAMILIES``, one part per family in its order."""
    base = label_pairs(base_label_pairs(stats, location))
    out = [""] * len(CONFIG_FAMILIES)
    return _text(config_samples(stats.target), base, out, _CONFIG_POSITION)


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
    return _messages(target_samples(stats), base, messages, _POSITION)


def render_config_protobuf(stats: ProbeStats, location: str | None) -> Rendered:
    """The same samples as ``render_config``, as ``render_target_protobuf`` writes them."""
    base = protobuf.labelled(base_label_pairs(stats, location))
    messages: list[MetricFamily | None] = [None] * len(CONFIG_FAMILIES)
    return _messages(config_samples(stats.target), base, messages, _CONFIG_POSITION)


_NAME_OF = operator.attrgetter("target.name")
_GENERATION_OF = operator.attrgetter("generation")
# Columns: one per family of ``FAMILIES``, a part per target (b"" where it has no sample).
Columns = list[list[bytes]]


def _chunks(column: list[bytes] | Column, head: bytes = b"") -> Iterator[bytes]:
    """A family's parts as a scrape writes them, ``head`` in front: a ``Column``'s blocks as
    they are (``head`` a chunk of its own), or a list's parts joined into chunks of about
    ``CHUNK_BYTES``, as many targets each as its first part suggests (a family's parts are of
    much the same size; ``head`` joined with the first). Nothing when no target has a part."""
    if isinstance(column, Column):
        for block in column.blocks():
            if head:
                yield head
                head = b""
            yield block
        return
    first = column[0] if column else b""
    if not first:
        # Most columns of a kind no target has are all b"": counted in C at a few ns a part,
        # where looking for a part that is not empty costs several times that.
        if column.count(b"") == len(column):
            return
        first = next(filter(None, column))
    per_chunk = max(1, CHUNK_BYTES // len(first))
    for start in range(0, len(column), per_chunk):
        yield b"".join((head, *column[start : start + per_chunk]))
        head = b""


def _family_parts(layout: _Layout) -> Iterator[tuple[Family, list[bytes] | Column]]:
    """Each family of ``FAMILIES`` with its parts: its column, or its config column."""
    for family, column in zip(FAMILIES, layout.columns, strict=True):
        config = _CONFIG_POSITION.get(family)
        yield family, column if config is None else layout.configs[config]


@dataclass(frozen=True, slots=True)
class _Layout:
    """The rows of one list of targets (``stats``): names, row by name, and each row's
    generation and parts (one column per family), rendered for ``location``; the parts of
    ``CONFIG_FAMILIES`` in ``configs`` (a ``Column`` each), with the target each row's were
    rendered from (``config_of``).

    Every column in which no row has a part is ``empty`` itself (``b""`` per row), one list
    shared by those columns and never written to, so that the families of kinds no target
    has, and those no target has a sample in, do not take 8 bytes per target each (24 of the
    36 columns at 10,000 HTTP targets: 1.9 MiB). A column gets its own list when a part
    first lands in it."""

    stats: list[ProbeStats]
    names: list[str]
    rows: dict[str, int]
    generations: list[int]
    columns: Columns
    location: str | None
    empty: list[bytes]
    configs: list[Column]
    config_of: list[Target[Any] | None]

    def put(self, row: int, generation: int, rendering: Rendered) -> None:
        """Row ``row`` as ``rendering``, rendered from the stats' ``generation``."""
        columns = self.columns
        empty = self.empty
        for index, part in enumerate(rendering):
            column = columns[index]
            if column is empty:
                if not part:
                    continue
                column = columns[index] = empty.copy()
            column[row] = part
        self.generations[row] = generation

    def put_config(self, row: int, target: Target[Any], rendering: Rendered) -> None:
        """Row ``row``'s parts of ``CONFIG_FAMILIES`` as ``rendering``, rendered from ``target``."""
        for column, part in zip(self.configs, rendering, strict=True):
            column.put(row, part)
        self.config_of[row] = target


def _new_layout(
    stats: list[ProbeStats],
    names: list[str],
    rows: dict[str, int],
    generations: list[int],
    columns: Columns,
    location: str | None,
    configs: Columns,
) -> _Layout:
    """A ``_Layout`` whose columns without a part are its shared empty one, with
    ``configs``'s parts joined, rendered from the stats' targets."""
    empty = [b""] * len(names)
    shared = [empty if column.count(b"") == len(column) else column for column in columns]
    joined = list(map(Column.of, configs))
    config_of: list[Target[Any] | None] = [each.target for each in stats]
    return _Layout(stats, names, rows, generations, shared, location, empty, joined, config_of)


class _Renderings:
    """Each target's rendering in one format, kept as ``Columns``: a row per target, in the
    order of the latest scrape's targets. A scrape joins slices of each family's column as
    they are; transposing 10,000 renderings into columns at every scrape took half its time.

    A row is current when its stats' ``generation`` is the one it was rendered from, for the
    location the scrape is for. A completed probe renders its row at once (``refresh``),
    except while a scrape is under way: the columns it reads then change only by the catching
    up it does itself (or a scrape at the same time does), and a row whose probe completed
    meanwhile is rendered by the next scrape."""

    def __init__(
        self,
        render: Callable[[ProbeStats, str | None], Rendered],
        render_config: Callable[[ProbeStats, str | None], Rendered],
        batch: int,
    ) -> None:
        self._render = render
        self._render_config = render_config
        self._batch = batch
        self._current = _new_layout(
            [], [], {}, [], [[] for _ in FAMILIES], None, [[] for _ in CONFIG_FAMILIES]
        )
        self._scrapes = 0
        # Renderings of targets probed before a scrape gave them a row, by name, with the
        # generation and location each was rendered from and for. Taken by that scrape, which
        # drops the rest (targets no longer scraped).
        self._prepared: dict[str, tuple[int, str | None, Rendered]] = {}
        # The rows of the targets a reload is about to make live (``prepare``), current from
        # its swap on (``go_live``).
        self._planned: _Layout | None = None

    def refresh(self, stats: ProbeStats, location: str | None) -> None:
        name = stats.target.name
        current = self._current
        row = current.rows.get(name)
        if row is None:
            self._prepared[name] = (stats.generation, location, self._render(stats, location))
        elif not self._scrapes and location == current.location:
            self._render_row(current, row, stats, location)

    def _render_row(
        self, layout: _Layout, row: int, stats: ProbeStats, location: str | None
    ) -> None:
        """Render ``stats`` into ``layout``'s row ``row``, its config parts too when they
        were rendered from another target (a reload changed it in place)."""
        layout.put(row, stats.generation, self._render(stats, location))
        if layout.config_of[row] is not stats.target:
            layout.put_config(row, stats.target, self._render_config(stats, location))

    def lay_out(self, targets: Sequence[ProbeStats], location: str | None) -> None:
        """Rows for ``targets`` with nothing rendered in them yet (at start, before the first
        probe): each probe then renders into its target's row, and the first scrape renders
        only the targets not probed yet. Without it the first probes' renderings waited for the
        first scrape as tuples, which it moved into columns and freed: 3-4 MiB at 10,000
        targets that the allocator kept. The parts of ``CONFIG_FAMILIES`` are rendered now
        (about 50 ms for 10,000 targets)."""
        names = list(map(_NAME_OF, targets))
        count = len(names)
        rows = dict(zip(names, range(count), strict=True))
        configs = [self._render_config(stats, location) for stats in targets]
        config_columns: Columns = [list(parts) for parts in zip(*configs, strict=True)]
        # Generation 0 is no stats' generation (they count from 1): every row is stale.
        self._current = _new_layout(
            list(targets),
            names,
            rows,
            [0] * count,
            [[b""] * count] * len(FAMILIES),
            location,
            config_columns or [[] for _ in CONFIG_FAMILIES],
        )
        self._prepared.clear()

    def prepare(self, planned: Sequence[ProbeStats], location: str | None) -> Iterator[bytes]:
        """Lay out the rows of ``planned``, the targets a reload is about to make live in the
        order they will be scraped, ahead: the layout goes live with them (``go_live``), so the
        first scrape after the reload does not move 10,000 renderings to new rows while it
        answers. Yields after every batch rendered and every ``CACHED_BATCH`` moved."""
        names = list(map(_NAME_OF, planned))
        layout = yield from self._layout(planned, names, location)
        self._planned = layout

    def go_live(self) -> None:
        """The reload whose rows ``prepare`` laid out has swapped its targets in: its layout is
        the current one from now on, so that probes completing from now on render into it. A
        scrape under way keeps reading (and catching up) the columns it started with."""
        if self._planned is not None:
            self._current, self._planned = self._planned, None

    @contextlib.contextmanager
    def scraping(self) -> Iterator[None]:
        """While a scrape reads the columns: ``refresh`` leaves them alone."""
        self._scrapes += 1
        try:
            yield
        finally:
            self._scrapes -= 1

    def current(
        self, snapshot: list[ProbeStats], location: str | None
    ) -> Generator[bytes, None, _Layout]:
        """The layout of ``snapshot``'s targets in its order, every row current. Yields an
        empty chunk after every batch of targets rendered afresh and after every
        ``CACHED_BATCH`` targets moved to new rows (after a reload, or at the first scrape)."""
        # This scrape's rows, kept even if a reload's swap or another scrape makes another
        # layout current while this one renders its stale rows. The same stats in the same
        # order have the same names (a target's stats keep their name), which the list's
        # identity comparison tells without reading 10,000 names.
        layout = self._current
        if snapshot != layout.stats or location != layout.location:
            names = list(map(_NAME_OF, snapshot))
            if names != layout.names or location != layout.location:
                layout = yield from self._layout(snapshot, names, location)
                self._current = layout
            else:
                layout.stats[:] = snapshot
        self._prepared.clear()
        generations = list(map(_GENERATION_OF, snapshot))
        if generations != layout.generations:
            stale = [
                row
                for row, (now, then) in enumerate(zip(generations, layout.generations, strict=True))
                if now != then
            ]
            for count, row in enumerate(stale, 1):
                self._render_row(layout, row, snapshot[row], location)
                if count % self._batch == 0:
                    yield b""
        return layout

    def _layout(
        self, snapshot: Sequence[ProbeStats], names: list[str], location: str | None
    ) -> Generator[bytes, None, _Layout]:
        """Rows for ``snapshot``'s targets (``names``): each from its old row or its prepared
        rendering when that is current, else rendered afresh; its config parts from its old
        row when rendered from the same target, else rendered afresh."""
        current = self._current
        old_rows = current.rows if location == current.location else {}
        old_generations = current.generations
        old_config_of = current.config_of
        # The old rows as tuples, transposed in C a slice at a time (the config parts split
        # out of their joined columns).
        old: list[Rendered] = []
        old_configs: list[Rendered] = []
        for start in range(0, len(current.names), CACHED_BATCH):
            stop = start + CACHED_BATCH
            old.extend(zip(*(column[start:stop] for column in current.columns), strict=True))
            split = [column.parts(start, stop) for column in current.configs]
            old_configs.extend(zip(*split, strict=True))
            if len(old) == stop:
                yield b""
        prepared = self._prepared
        rows: list[Rendered] = []
        configs: list[Rendered] = []
        generations: list[int] = []
        fresh = 0
        for stats, name in zip(snapshot, names, strict=True):
            generation = stats.generation
            row = old_rows.get(name)
            rendered = False
            if row is not None and old_generations[row] == generation:
                rows.append(old[row])
            elif (ahead := prepared.pop(name, None)) is not None and ahead[:2] == (
                generation,
                location,
            ):
                rows.append(ahead[2])
            else:
                rows.append(self._render(stats, location))
                rendered = True
            if row is not None and old_config_of[row] is stats.target:
                configs.append(old_configs[row])
            else:
                configs.append(self._render_config(stats, location))
                rendered = True
            if rendered:
                fresh += 1
                if fresh % self._batch == 0:
                    yield b""
            generations.append(generation)
        columns: Columns = [[] for _ in FAMILIES]
        config_columns: Columns = [[] for _ in CONFIG_FAMILIES]
        # The row of each name, made in the same slices: with 100,000 targets in a large heap
        # the whole dictionary at once held the event loop for 0.1-0.2 s.
        row_of: dict[str, int] = {}
        for start in range(0, len(rows), CACHED_BATCH):
            stop = start + CACHED_BATCH
            some = rows[start:stop]
            for column, parts in zip(columns, zip(*some, strict=True), strict=True):
                column.extend(parts)
            for column, parts in zip(
                config_columns, zip(*configs[start:stop], strict=True), strict=True
            ):
                column.extend(parts)
            row_of.update(
                zip(names[start : start + len(some)], range(start, start + len(some)), strict=True)
            )
            if len(some) == CACHED_BATCH:
                yield b""
        return _new_layout(
            list(snapshot), names, row_of, generations, columns, location, config_columns
        )


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
        self._texts = _Renderings(render_target, render_config, BATCH)
        self._messages = _Renderings(render_target_protobuf, render_config_protobuf, PROTOBUF_BATCH)
        self._protobuf_scraped = False

    def refresh(self, stats: ProbeStats) -> None:
        """Render ``stats`` now, as its probe completed, so that a scrape mostly joins."""
        location = self._location()
        self._texts.refresh(stats, location)
        if self._protobuf_scraped:
            self._messages.refresh(stats, location)

    def lay_out(self, targets: Sequence[ProbeStats]) -> None:
        """Rows for the targets the exporter starts with, before their first probes, so that
        those render into them (text; protobuf waits for a protobuf scrape)."""
        self._texts.lay_out(targets, self._location())

    def prepare(self, planned: Sequence[ProbeStats]) -> Iterator[bytes]:
        """Render a reload's new targets and lay out the rows of all of ``planned`` (the
        targets it makes live, in their order) before they go live, yielding after every
        batch, so that the first scrape after the reload joins their text instead of
        rendering and moving all of them; their protobuf entries too once a scrape has asked
        for protobuf."""
        location = self._location()
        yield from self._texts.prepare(planned, location)
        if self._protobuf_scraped:
            yield from self._messages.prepare(planned, location)

    def go_live(self) -> None:
        """The targets ``prepare`` was given are live now (the scheduler swapped them in)."""
        self._texts.go_live()
        self._messages.go_live()

    def rerender(self, targets: Sequence[ProbeStats]) -> Iterator[None]:
        """Render ``targets`` again, a reload having changed their config in place (after
        ``go_live``), yielding after every ``BATCH``: the next scrape then finds their rows
        current instead of rendering all of them while it answers."""
        for count, stats in enumerate(targets, 1):
            self.refresh(stats)
            if count % BATCH == 0:
                yield

    def expose(self) -> Iterable[str]:
        """The text of ``expose_utf8`` as str (for the probe command)."""
        for chunk in self.expose_utf8():
            yield chunk.decode()

    def expose_utf8(self) -> Iterable[bytes]:
        """The probe families as UTF-8 text, following the slice protocol of
        ``exposition.TextCollector``: an empty chunk after every ``BATCH`` targets rendered
        afresh and every ``CACHED_BATCH`` moved to new rows, and chunks of about
        ``CHUNK_BYTES`` (the targets are a snapshot, so a reload in between changes nothing in
        this scrape, nor does a probe finishing)."""
        snapshot = list(self._stats())
        with self._texts.scraping():
            layout = yield from self._texts.current(snapshot, self._location())
            for family, parts in _family_parts(layout):
                yield from _chunks(parts, header(family).encode())

    def expose_protobuf(self) -> Iterable[bytes]:
        """The probe families as delimited ``MetricFamily`` messages, sliced as ``expose``
        slices the text: one message per family, its entries in chunks of about
        ``CHUNK_BYTES``.

        A family's length goes in front of its entries, so its chunks are joined (an empty
        chunk after each, as ``expose`` yields one chunk each) before its frame is written:
        the length is then the sum of a few chunks' lengths rather than of every target's,
        which took as long as the joins themselves. The chunks of one family are held
        meanwhile, a few MiB at most with 10,000 targets."""
        self._protobuf_scraped = True
        snapshot = list(self._stats())
        with self._messages.scraping():
            layout = yield from self._messages.current(snapshot, self._location())
            for family, parts in _family_parts(layout):
                chunks = []
                for chunk in _chunks(parts):
                    chunks.append(chunk)
                    yield b""
                if chunks:
                    yield protobuf.frame(family, sum(map(len, chunks)))
                    yield from chunks
