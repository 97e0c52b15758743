"""The probe collector's exposition: what a target shows before and after probes, escaping,
certificates of failed probes, and removal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import probes as probes_module
from exporter.collectors.probes import FAILURE_MESSAGE_CHARS, FAMILIES, ProbeCollector
from exporter.config import Source, load_text
from exporter.exposition import label_pair, label_pairs
from exporter.reasons import Reason
from exporter.results import Certificate, ProbeResult, TlsSeen
from exporter.stats import ProbeStats
from exporter.targets import Target
from tests.metrics import sample_value

CERT = Certificate(
    subject="CN=api.internal",
    issuer="CN=Internal CA",
    serial="1f",
    fingerprint_sha256="ab" * 32,
    not_before=1_700_000_000.0,
    not_after=1_760_000_000.0,
)


def make_target(labels: str = "{}", slo: str = "", name: str = "api") -> Target[Any]:
    text = (
        f"targets:\n  - {{name: {name}, kind: http, url: 'https://127.0.0.1/', "
        f"labels: {labels}{slo}}}\n"
    )
    return load_text(text, Source("t", Path(".")), {}).targets[0]


def render(*stats: ProbeStats, location: str | None = None) -> str:
    return "".join(ProbeCollector(lambda: stats, lambda: location).expose())


def test_before_the_first_probe_only_the_histogram_and_slo_show() -> None:
    stats = ProbeStats(
        make_target(slo=", slo: {availability: 99.5, latency: {threshold: 250ms, objective: 95}}")
    )
    text = render(stats)
    assert sample_value(text, "lookout_probe_success") is None
    assert sample_value(text, "lookout_probe_duration_seconds_count") == 0
    assert sample_value(text, "lookout_probe_slow_total") == 0
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="availability") == 0.995
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="latency") == 0.95
    assert sample_value(text, "lookout_probe_latency_threshold_seconds") == 0.25


def test_a_failed_tls_probe_still_exports_certificate_expiry_and_identity() -> None:
    stats = ProbeStats(make_target())
    stats.record(
        ProbeResult(
            target="api",
            success=False,
            duration=0.02,
            finished_at=1_800_000_000.0,
            reason=Reason.CERT_EXPIRED,
            message="certificate has expired",
            phase_names=("connect", "tls"),
            phase_seconds=(0.001, 0.004),
            tls=TlsSeen((CERT,), None),
        )
    )
    text = render(stats, location="lab")
    assert sample_value(text, "lookout_probe_success", location="lab") == 0
    assert sample_value(text, "lookout_probe_failures_total", reason="cert_expired") == 1
    assert sample_value(text, "lookout_tls_cert_expiry_timestamp_seconds") == 1_760_000_000
    assert sample_value(text, "lookout_tls_cert_info", serial="1f", issuer="CN=Internal CA") == 1
    assert sample_value(text, "lookout_probe_phase_seconds", phase="tls") == 0.004
    assert sample_value(text, "lookout_probe_duration_seconds_bucket", le="0.025") == 1
    assert sample_value(text, "lookout_probe_duration_seconds_bucket", le="0.01") == 0
    assert sample_value(text, "lookout_probe_last_run_timestamp_seconds") == 1_800_000_000


def test_an_unreachable_endpoint_keeps_the_expiry_of_the_last_chain_it_presented() -> None:
    """A refused connection has no certificate; the expiry seen before stays exported, so the
    expiry alerts do not resolve while the server is down."""
    stats = ProbeStats(make_target())
    at = 1_800_000_000.0
    stats.record(ProbeResult("api", True, 0.02, at, tls=TlsSeen((CERT,), None)))
    stats.record(ProbeResult("api", False, 0.001, at + 30, reason=Reason.REFUSED, message="no"))
    text = render(stats)
    assert sample_value(text, "lookout_probe_success") == 0
    assert sample_value(text, "lookout_tls_cert_expiry_timestamp_seconds") == 1_760_000_000
    assert sample_value(text, "lookout_tls_cert_info", serial="1f") is None


def test_label_values_are_escaped() -> None:
    stats = ProbeStats(make_target(labels='{team: "a \\"quoted\\" \\\\ name\\nline2"}'))
    text = render(stats)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sample = families["lookout_probe_duration_seconds"].samples[0]
    assert sample.labels["team"] == 'a "quoted" \\ name\nline2'


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20))
def test_a_repeated_label_is_escaped_as_any_other(name: str, value: str) -> None:
    """``label_pair`` keeps the text of labels that repeat (phases, reasons, TLS versions);
    asked twice, it answers as ``label_pairs`` does."""
    assert label_pair(name, value) == label_pairs([(name, value)])
    assert label_pair(name, value) == label_pairs([(name, value)])


def test_phase_names_are_escaped_in_the_phase_family() -> None:
    stats = ProbeStats(make_target())
    stats.record(
        ProbeResult("api", True, 0.01, 1.0, phase_names=('a "b"\\n',), phase_seconds=(0.002,))
    )
    families = {f.name: f for f in text_string_to_metric_families(render(stats))}
    (phase,) = families["lookout_probe_phase_seconds"].samples
    assert phase.labels["phase"] == 'a "b"\\n'
    assert phase.value == 0.002


def test_help_says_result_gauges_hold_the_latest_probe() -> None:
    configured = {
        "lookout_probe_slo_objective_ratio",
        "lookout_probe_sla_objective_ratio",
        "lookout_probe_latency_threshold_seconds",
        "lookout_probe_endpoint_info",
    }
    for family in FAMILIES:
        if family.type == "gauge" and family.name not in configured:
            assert "latest" in family.help, family.name


def counted_renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the targets rendered as text from now on, by collectors made after this."""
    rendered: list[str] = []
    real = probes_module.render_target

    def counting(stats: ProbeStats, location: str | None) -> tuple[bytes, ...]:
        rendered.append(stats.target.name)
        return real(stats, location)

    monkeypatch.setattr(probes_module, "render_target", counting)
    return rendered


def test_a_new_result_rerenders_only_that_target(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = counted_renders(monkeypatch)
    one, other = ProbeStats(make_target()), ProbeStats(make_target(name="other"))
    collector = ProbeCollector(lambda: [one, other], lambda: None)
    "".join(collector.expose())
    "".join(collector.expose())
    assert rendered == ["api", "other"]
    one.record(ProbeResult(target="api", success=True, duration=0.01, finished_at=2.0))
    text = "".join(collector.expose())
    assert rendered == ["api", "other", "api"]
    assert sample_value(text, "lookout_probe_success", target="api") == 1


def test_a_result_rendered_as_its_probe_completes_is_not_rendered_again_by_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = counted_renders(monkeypatch)
    stats = ProbeStats(make_target())
    collector = ProbeCollector(lambda: [stats], lambda: None)
    stats.record(ProbeResult(target="api", success=True, duration=0.01, finished_at=2.0))
    collector.refresh(stats)
    assert sample_value("".join(collector.expose()), "lookout_probe_success") == 1
    assert rendered == ["api"]


def test_at_start_probes_render_into_their_rows_and_the_first_scrape_renders_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows are there before the first scrape, which moves no rendering into them (with
    2 targets to a batch, a scrape that made its rows would pause after the first two)."""
    rendered = counted_renders(monkeypatch)
    monkeypatch.setattr(probes_module, "CACHED_BATCH", 2)
    live = [ProbeStats(make_target(name=f"t-{n}")) for n in range(3)]
    collector = ProbeCollector(lambda: live, lambda: None)
    collector.lay_out(live)
    assert rendered == []
    live[1].record(ProbeResult(target="t-1", success=True, duration=0.01, finished_at=2.0))
    collector.refresh(live[1])
    assert rendered == ["t-1"]
    chunks = list(collector.expose())
    assert chunks.count("") == 0
    text = "".join(chunks)
    assert rendered == ["t-1", "t-0", "t-2"]
    assert "".join(collector.expose()) == text
    assert len(rendered) == 3, "the second scrape renders nothing"
    assert text == render(*live)


def test_targets_prepared_before_they_go_live_are_not_rendered_again_by_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload renders its new targets ahead (``prepare``); the first scrape with them live
    takes those renderings, except for a target that probed meanwhile or a new location."""
    rendered = counted_renders(monkeypatch)
    old = [ProbeStats(make_target(name="old"))]
    new = [ProbeStats(make_target(name=f"new-{n}")) for n in range(3)]
    live = old
    location: list[str | None] = [None]
    collector = ProbeCollector(lambda: live, lambda: location[0])
    "".join(collector.expose())
    assert list(collector.prepare(new)) == []  # fewer than a batch: no pause
    assert rendered == ["old", "new-0", "new-1", "new-2"]
    "".join(collector.expose())  # before the swap: the prepared ones are kept for later
    live = new
    collector.go_live()  # the swap
    new[1].record(ProbeResult(target="new-1", success=True, duration=0.01, finished_at=2.0))
    text = "".join(collector.expose())
    assert rendered == ["old", "new-0", "new-1", "new-2", "new-1"]
    assert sample_value(text, "lookout_probe_success", target="new-1") == 1
    assert sample_value(text, "lookout_probe_success", target="old") is None
    assert list(collector.prepare(new[:1])) == []
    location[0] = "lab"
    "".join(collector.expose())
    assert rendered[-3:] == ["new-0", "new-1", "new-2"]


def test_preparing_pauses_after_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes_module, "BATCH", 2)
    monkeypatch.setattr(probes_module, "PROTOBUF_BATCH", 1)
    collector = ProbeCollector(list, lambda: None)
    fresh = [ProbeStats(make_target(name=f"new-{n}")) for n in range(4)]
    assert len(list(collector.prepare(fresh))) == 2
    list(collector.expose_protobuf())  # protobuf entries are prepared too from now on
    assert len(list(collector.prepare(fresh))) == 2 + 4


def test_a_scrape_pauses_after_every_cached_batch_it_moves_to_new_rows_in_both_formats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Moving 10,000 renderings to new rows (the first scrape, or the first after a reload)
    held the event loop for tens of milliseconds: each ``CACHED_BATCH`` targets of either
    step are followed by a pause. A scrape of current rows only joins, without a pause, and
    the exposition is the same however it is sliced."""
    targets = [ProbeStats(make_target(name=f"api-{n}")) for n in range(6)]
    live = targets[:5]
    collector = ProbeCollector(lambda: live, lambda: None)
    list(collector.expose_protobuf())  # from now on a probe renders protobuf too
    for stats in targets:
        stats.record(ProbeResult(stats.target.name, True, 0.01, 1_800_000_000.0))
        collector.refresh(stats)
    text, messages = list(collector.expose()), list(collector.expose_protobuf())
    assert text.count("") == 0
    monkeypatch.setattr(probes_module, "CACHED_BATCH", 2)
    live = targets  # a sixth target: every target moves to a new row
    sliced_text, sliced_messages = list(collector.expose()), list(collector.expose_protobuf())
    # two pauses while taking the five old rows, three while building the six new ones
    assert sliced_text[:5] == [""] * 5
    assert sliced_text.count("") == 5
    assert sliced_messages.count(b"") - messages.count(b"") == 5
    again_text, again_messages = list(collector.expose()), list(collector.expose_protobuf())
    assert again_text.count("") == 0
    assert again_messages.count(b"") == messages.count(b"")
    assert "".join(again_text) == "".join(sliced_text)
    assert b"".join(again_messages) == b"".join(sliced_messages)
    live = targets[:5]
    assert "".join(collector.expose()) == "".join(text)
    assert b"".join(collector.expose_protobuf()) == b"".join(messages)


def test_a_reload_lays_out_its_rows_ahead_so_the_next_scrape_moves_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``prepare`` with the targets a reload makes live lays out their rows (old rows kept,
    new targets rendered), pausing as a scrape would; the first scrape after the swap takes
    that layout without a pause and shows what a layout made by the scrape itself shows."""
    monkeypatch.setattr(probes_module, "CACHED_BATCH", 2)
    kept = [ProbeStats(make_target(name=f"api-{n}")) for n in range(3)]
    added = [ProbeStats(make_target(name=f"new-{n}")) for n in range(3)]
    live = kept
    collector = ProbeCollector(lambda: live, lambda: None)
    for stats in kept:
        stats.record(ProbeResult(stats.target.name, True, 0.01, 1_800_000_000.0))
    list(collector.expose())
    planned = [*added, *kept]
    assert list(collector.prepare(planned)).count(b"") == 1 + 3  # old rows taken, new built
    kept[0].record(ProbeResult("api-0", False, 0.01, 1_800_000_060.0))  # after the layout
    live = planned
    collector.go_live()  # the swap
    swapped = list(collector.expose())
    assert swapped.count("") == 0
    text = "".join(swapped)
    assert sample_value(text, "lookout_probe_success", target="api-0") == 0
    assert sample_value(text, "lookout_probe_success", target="api-1") == 1
    unprepared = ProbeCollector(lambda: planned, lambda: None)
    assert "".join(unprepared.expose()) == text


def test_a_target_probed_between_a_reload_and_its_first_scrape_is_rendered_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new target probed after a reload's swap, before the next scrape, is rendered once,
    when its probe completes (the swap gave it its row): that scrape joins the rendering
    instead of rendering it again, and so does every scrape after its next probe."""
    rendered = counted_renders(monkeypatch)
    old = [ProbeStats(make_target(name=f"api-{n}")) for n in range(2)]
    live = old
    collector = ProbeCollector(lambda: live, lambda: None)
    list(collector.expose())
    new = [ProbeStats(make_target(name=f"new-{n}")) for n in range(2)]
    list(collector.prepare(new))
    live = new
    collector.go_live()  # the swap
    new[0].record(ProbeResult("new-0", False, 0.01, 1_800_000_000.0))
    collector.refresh(new[0])
    rendered.clear()
    text = "".join(collector.expose())
    assert rendered == []
    assert sample_value(text, "lookout_probe_success", target="new-0") == 0
    new[0].record(ProbeResult("new-0", True, 0.01, 1_800_000_030.0))
    collector.refresh(new[0])
    assert rendered == ["new-0"]
    text = "".join(collector.expose())
    assert rendered == ["new-0"]
    assert sample_value(text, "lookout_probe_success", target="new-0") == 1


def test_a_probe_completing_during_a_scrape_shows_in_the_next_one() -> None:
    """A scrape's families all come from the same results: a probe completing while the
    scrape pauses changes nothing in it, and the next scrape has its result."""
    stats = ProbeStats(make_target())
    collector = ProbeCollector(lambda: [stats], lambda: None)
    stats.record(ProbeResult(target="api", success=True, duration=0.01, finished_at=2.0))
    collector.refresh(stats)
    "".join(collector.expose())
    chunks = iter(collector.expose())
    first = next(chunks)  # the success family
    stats.record(ProbeResult(target="api", success=False, duration=0.01, finished_at=3.0))
    collector.refresh(stats)
    during = first + "".join(chunks)
    assert sample_value(during, "lookout_probe_success") == 1
    assert sample_value(during, "lookout_probe_last_run_timestamp_seconds") == 2.0
    after = "".join(collector.expose())
    assert sample_value(after, "lookout_probe_success") == 0
    assert sample_value(after, "lookout_probe_last_run_timestamp_seconds") == 3.0


def test_a_new_location_or_a_changed_target_rerenders_the_cached_text() -> None:
    stats = ProbeStats(make_target())
    location: list[str | None] = [None]
    collector = ProbeCollector(lambda: [stats], lambda: location[0])
    stats.record(ProbeResult(target="api", success=True, duration=0.01, finished_at=2.0))
    collector.refresh(stats)
    location[0] = "lab"
    assert sample_value("".join(collector.expose()), "lookout_probe_success", location="lab") == 1
    stats.retarget(make_target(slo=", slo: {availability: 99.5}"))
    text = "".join(collector.expose())
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="availability") == 0.995


def test_the_endpoint_and_the_latest_failure_are_info_labels() -> None:
    """What notifications quote: the URL, and the reason and message while the probe fails."""
    stats = ProbeStats(make_target())
    stats.record(_result(False, Reason.STATUS, "status 503 not in expect.status [200]"))
    families = {f.name: f for f in text_string_to_metric_families(render(stats))}
    (endpoint,) = families["lookout_probe_endpoint_info"].samples
    assert endpoint.labels["endpoint"].startswith("http")
    (failure,) = families["lookout_probe_failure_info"].samples
    assert failure.labels["reason"] == "status"
    assert failure.labels["message"] == "status 503 not in expect.status [200]"
    stats.record(_result(True))
    families = {f.name: f for f in text_string_to_metric_families(render(stats))}
    assert "lookout_probe_failure_info" not in families


def test_a_long_failure_message_is_cut_in_its_info_label() -> None:
    stats = ProbeStats(make_target())
    stats.record(_result(False, Reason.BODY, "x" * 1000))
    families = {f.name: f for f in text_string_to_metric_families(render(stats))}
    (failure,) = families["lookout_probe_failure_info"].samples
    assert len(failure.labels["message"]) == FAILURE_MESSAGE_CHARS


def _result(success: bool, reason: Reason | None = None, message: str = "") -> ProbeResult:
    return ProbeResult(
        target="api",
        success=success,
        duration=0.02,
        finished_at=1_800_000_000.0,
        reason=reason,
        message=message,
    )


# What a reload makes of each name: kept as it is, changed in place (a new SLO, the same
# series), replaced by a new target of that name, or gone; names not live yet may come.
_RELOAD = st.sampled_from(["keep", "change", "replace", "drop", "add"])
_STEP = st.one_of(
    st.tuples(st.just("probe"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("scrape")),
    st.tuples(st.just("reload"), st.lists(_RELOAD, min_size=6, max_size=6), st.booleans()),
)
_TARGETS = {
    (name, slo): make_target(name=name, slo=slo)
    for name in (f"t-{n}" for n in range(6))
    for slo in ("", ", slo: {availability: 99.5}")
}


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_STEP, max_size=25), laid_out=st.booleans())
def test_every_scrape_shows_what_a_fresh_collector_renders_whatever_came_before(
    steps: list[tuple[Any, ...]], laid_out: bool
) -> None:
    """Probes, scrapes and reloads (laid out ahead, swapped in, changed targets rendered again;
    sometimes while a scrape is under way, which keeps reading its own columns) in any
    order: each full scrape's text is what a collector without a cache renders of the same
    targets."""
    live: list[ProbeStats] = [ProbeStats(_TARGETS[(f"t-{n}", "")]) for n in range(3)]
    collector = ProbeCollector(lambda: live, lambda: None)
    if laid_out:  # as the exporter starts
        collector.lay_out(live)
    clock = 1_800_000_000.0
    for step in steps:
        if step[0] == "probe" and live:
            stats = live[step[1] % len(live)]
            clock += 1
            stats.record(ProbeResult(stats.target.name, step[2], 0.01, clock))
            collector.refresh(stats)
        elif step[0] == "scrape":
            assert "".join(collector.expose()) == render(*live)
        elif step[0] == "reload":
            _, choices, during_a_scrape = step
            by_name = {stats.target.name: stats for stats in live}
            planned: list[ProbeStats] = []
            changed: list[tuple[ProbeStats, Target[Any]]] = []
            for n, choice in enumerate(choices):
                name = f"t-{n}"
                old = by_name.get(name)
                if old is None:
                    if choice == "add":
                        planned.append(ProbeStats(_TARGETS[(name, "")]))
                elif choice in ("keep", "add"):
                    planned.append(old)
                elif choice == "change":
                    slo = (
                        ""
                        if old.target.slo != _TARGETS[(name, "")].slo
                        else ", slo: {availability: 99.5}"
                    )
                    changed.append((old, _TARGETS[(name, slo)]))
                    planned.append(old)
                elif choice == "replace":
                    planned.append(ProbeStats(_TARGETS[(name, "")]))
            before = render(*live)
            scrape = iter(collector.expose()) if during_a_scrape else None
            first = next(scrape, "") if scrape is not None else ""
            list(collector.prepare(planned))
            live = planned
            for stats, target in changed:
                stats.retarget(target)
            collector.go_live()
            list(collector.rerender([stats for stats, _ in changed]))
            if scrape is not None:
                assert first + "".join(scrape) == before


def test_the_config_families_are_rendered_once_per_config_of_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The objectives and the endpoint come from the target's config alone: its probes do not
    render them again, a change of its config in place does (as the reload renders the
    target again, or as the scrape catches up), and a new location renders them afresh."""
    rendered: list[str] = []
    real = probes_module.render_config

    def counting(stats: ProbeStats, location: str | None) -> tuple[bytes, ...]:
        rendered.append(f"{stats.target.name}@{location}")
        return real(stats, location)

    monkeypatch.setattr(probes_module, "render_config", counting)
    stats = ProbeStats(make_target(slo=", slo: {availability: 99.5}"))
    location: list[str | None] = [None]
    collector = ProbeCollector(lambda: [stats], lambda: location[0])
    collector.lay_out([stats])
    assert rendered == ["api@None"]
    for n in range(3):
        stats.record(ProbeResult("api", True, 0.01, 1_800_000_000.0 + n))
        collector.refresh(stats)
    text = "".join(collector.expose())
    assert rendered == ["api@None"]
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="availability") == 0.995
    stats.retarget(make_target(slo=", slo: {availability: 99.9}"))
    text = "".join(collector.expose())  # caught up by the scrape
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="availability") == 0.999
    assert rendered == ["api@None"] * 2
    stats.retarget(make_target(slo=", slo: {availability: 99}"))
    collector.refresh(stats)  # rendered again, as a reload does
    assert rendered == ["api@None"] * 3
    text = "".join(collector.expose())
    assert sample_value(text, "lookout_probe_slo_objective_ratio", slo="availability") == 0.99
    assert rendered == ["api@None"] * 3
    location[0] = "eu"
    text = "".join(collector.expose())
    assert rendered == ["api@None"] * 3 + ["api@eu"]
    assert sample_value(text, "lookout_probe_endpoint_info", location="eu") == 1
