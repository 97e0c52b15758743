"""The flow kind: HTTP requests in order, each a full ``kind: http`` request with every option
and ``expect`` check, passing values from one response to the next requests.

A step may ``extract`` values (JSONPath, a header, a regex group) into variables that later
steps put into their URL, headers and body as ``{{ name }}`` (``templating``); ``export``
numbers as ``lookout_probe_value{name}``; and assert on values (``expect.values``, see
``values``). The first failed step ends the flow with its reason; steps marked ``always`` still
run after it (cleanup such as a logout), as far as the target's timeout allows. A timeout names
the step it hit.

Values marked ``secret`` are never shown: the status page, the API and the probe command show
``<secret>`` in their place, in request lines, check details and failure messages alike.

Besides the common probe series, a flow writes per step ``lookout_flow_step_success{step}``
(steps that ran in the latest probe), the ``lookout_flow_step_duration_seconds{step}``
histogram and ``lookout_flow_step_failures_total{step,reason}``; the histogram and the counter
are kept between probes by the target's stats (``results.Accumulating``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.probes import http
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.probes.templating import (
    SECRET,
    Template,
    Value,
    check_json,
    parse,
    render_json,
    template_names,
)
from exporter.probes.values import (
    PROBE_VALUE,
    Extraction,
    build_extractions,
    describe,
    parse_document,
)
from exporter.reasons import ProbeFailure, Reason
from exporter.redaction import REDACTED, redact_url, secret_header
from exporter.results import Accumulating, ProbeTrace, Sample, TlsSeen

__all__ = ["KIND", "FlowObservation", "FlowSpec", "Step", "StepRun"]

STEP_SUCCESS = Family(
    "lookout_flow_step_success",
    "gauge",
    "1 if the flow step passed in the latest scheduled probe, 0 if it failed (steps that ran).",
)
STEP_DURATION = Family(
    "lookout_flow_step_duration_seconds",
    "histogram",
    "Duration of every run of a flow step, passed or failed.",
)
STEP_FAILURES = Family(
    "lookout_flow_step_failures_total", "counter", "Failed runs of a flow step by failure reason."
)


@dataclass(frozen=True, slots=True)
class Step:
    """One step: the HTTP request and checks (templates left in), and what to read from it."""

    name: str
    http: http.HttpSpec
    url: Template
    headers: tuple[tuple[str, Template], ...]
    body: Template | None = None
    json_body: Any = field(default=None, repr=False)
    extract: tuple[Extraction, ...] = ()
    always: bool = False

    def variables(self) -> set[str]:
        """The variables this step needs."""
        names = set(self.url.names)
        for _name, template in self.headers:
            names.update(template.names)
        if self.body is not None:
            names.update(self.body.names)
        if self.json_body is not None:
            names.update(template_names(self.json_body))
        return names


@dataclass(frozen=True, slots=True)
class FlowSpec:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class StepRun:
    """How one step went in one probe; ``passed`` None: it did not run."""

    name: str
    request: str
    passed: bool | None
    duration: float = 0.0
    status_code: int | None = None
    reason: Reason | None = None
    message: str = ""
    extracted: tuple[str, ...] = ()
    always: bool = False

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "request": self.request,
            "state": "skipped" if self.passed is None else "passed" if self.passed else "failed",
            "duration_seconds": self.duration,
            "status_code": self.status_code,
            "reason": None if self.reason is None else self.reason.value,
            "message": self.message,
            "extracted": list(self.extracted),
            "always": self.always,
        }


@dataclass(frozen=True, slots=True)
class FlowObservation(Accumulating):
    """Every step of one probe, and the numbers its steps exported."""

    steps: tuple[StepRun, ...]
    values: tuple[tuple[str, float], ...] = ()

    @property
    def status_code(self) -> int | None:
        codes = [step.status_code for step in self.steps if step.status_code is not None]
        return codes[-1] if codes else None

    def samples(self) -> Iterator[Sample]:
        for step in self.steps:
            if step.passed is not None:
                yield STEP_SUCCESS, int(step.passed), label_pairs([("step", step.name)])
        for name, value in self.values:
            yield PROBE_VALUE, value, label_pairs([("name", name)])

    def accumulate(self) -> Iterator[Sample]:
        for step in self.steps:
            if step.passed is None:
                continue
            pairs = [("step", step.name)]
            yield STEP_DURATION, step.duration, label_pairs(pairs)
            if step.reason is not None:
                yield STEP_FAILURES, 1, label_pairs([*pairs, ("reason", step.reason.value)])

    def json(self) -> dict[str, Any]:
        return {"steps": [step.json() for step in self.steps], "values": dict(self.values)}

    def summary(self) -> list[str]:
        ran = [step for step in self.steps if step.passed is not None]
        failed = [step.name for step in ran if not step.passed]
        parts = [f"{len(ran)} of {len(self.steps)} steps ran"]
        if failed:
            parts.append(f"failed: {', '.join(failed)}")
        return parts


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> FlowSpec:
    steps: list[Step] = []
    known: list[str] = []
    names: set[str] = set()
    exports: set[str] = set()
    for index, item in enumerate(raw["flow"]["steps"]):
        where: KeyPath = (*at, "flow", "steps", index)
        if item["name"] in names:
            raise ConfigProblem((*where, "name"), f"step name {item['name']!r} is used twice")
        names.add(item["name"])
        for name in item.get("export", {}):
            if name in exports:
                raise ConfigProblem((*where, "export", name), f"{name!r} is exported twice")
            exports.add(name)
        steps.append(_build_step(item, where, source, tuple(known)))
        known.extend(extraction.name for extraction in steps[-1].extract)
    return FlowSpec(tuple(steps))


def _build_step(raw: Mapping[str, Any], at: KeyPath, source: Source, known: Sequence[str]) -> Step:
    options = dict(raw.get("http", {}))
    body: Template | None = None
    json_body = raw.get("json")
    if json_body is not None:
        if "body" in options or "body_file" in options:
            key = "body" if "body" in options else "body_file"
            raise ConfigProblem((*at, "json"), f"json and http.{key} cannot be used together")
        check_json(json_body, (*at, "json"), known)
        headers = dict(options.get("headers", {}))
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
        options["headers"] = headers
    spec = http.build(
        {
            "url": raw["url"],
            "http": options,
            "expect": raw.get("expect", {}),
            "export": raw.get("export", {}),
        },
        at,
        source,
    )
    extract = build_extractions(raw.get("extract", {}), (*at, "extract"))
    if any(e.header is None for e in extract):  # reads the body: keep its text for the step
        spec = dataclasses.replace(spec, keep_text=True)
    if spec.body is not None:
        key = "body" if "body" in options else "body_file"
        body = parse(spec.body.decode(), (*at, "http", key), known)
    configured = options.get("headers", {})
    headers_at = {name: (*at, "http", "headers", name) for name in configured}
    templates = tuple(
        (name, parse(value, headers_at.get(name, (*at, "http", "bearer_token")), known))
        for name, value in spec.headers
    )
    return Step(
        name=raw["name"],
        http=spec,
        url=parse(raw["url"], (*at, "url"), known),
        headers=templates,
        body=body,
        json_body=json_body,
        extract=extract,
        always=raw.get("always", False),
    )


def endpoint(spec: FlowSpec) -> str:
    return _shape(spec.steps[0])


def _shape(step: Step) -> str:
    """A step's URL with ``{{ name }}`` left in place of each variable."""
    return redact_url(_shape_text(step.url), step.http.secret_values)


def options(spec: FlowSpec) -> dict[str, str]:
    cleanup = sum(step.always for step in spec.steps)
    names = " → ".join(step.name for step in spec.steps)
    settings = {"steps": names}
    if cleanup:
        settings["always"] = ", ".join(step.name for step in spec.steps if step.always)
    return settings | http.options(spec.steps[0].http)


def request(spec: FlowSpec) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": step.name,
                "method": step.http.method,
                "url": _shape(step),
                "headers": [
                    {
                        "name": name,
                        "value": REDACTED
                        if name in step.http.secret_headers or secret_header(name)
                        else _shape_text(template),
                    }
                    for name, template in step.headers
                ],
                "extract": [extraction.name for extraction in step.extract],
                "always": step.always,
            }
            for step in spec.steps
        ],
    }


def _shape_text(template: Template) -> str:
    return "".join(
        part if i % 2 == 0 else f"{{{{ {part} }}}}" for i, part in enumerate(template.parts)
    )


class _Secrets:
    """The secret values seen so far, to scrub from every text people see."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, value: Value) -> None:
        text = value.text()
        if value.secret and text and text not in self.texts:
            self.texts.append(text)
            self.texts.sort(key=len, reverse=True)  # longer first: one may contain another

    def scrub(self, text: str) -> str:
        for secret in self.texts:
            text = text.replace(secret, SECRET)
        return text


async def probe(spec: FlowSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    variables: dict[str, Value] = {}
    secrets = _Secrets()
    runs: list[StepRun] = []
    values: list[tuple[str, float]] = []
    failure: ProbeFailure | None = None
    for step in spec.steps:
        if failure is not None and not step.always:
            runs.append(StepRun(step.name, _shape(step), None, always=step.always))
            continue
        missing = sorted(step.variables() - variables.keys())
        if missing:  # an always step after the step that should have set them failed
            note = f"not run: {', '.join(missing)} not set"
            runs.append(StepRun(step.name, _shape(step), None, message=note, always=True))
            continue
        try:
            run, exported = await _run_step(step, ctx, variables, secrets, runs, values)
        except asyncio.CancelledError:  # the timeout: the steps after this one did not run
            cut = trace.observation
            if isinstance(cut, FlowObservation):
                rest = spec.steps[len(cut.steps) :]
                skipped = tuple(StepRun(s.name, _shape(s), None, always=s.always) for s in rest)
                trace.observation = dataclasses.replace(cut, steps=cut.steps + skipped)
            raise
        runs.append(run)
        values.extend(exported)
        trace.observation = FlowObservation(tuple(runs), tuple(values))
        if run.reason is not None and failure is None:
            failure = ProbeFailure(run.reason, f"step {step.name}: {run.message}")
    trace.observation = FlowObservation(tuple(runs), tuple(values))
    if failure is not None:
        raise failure


async def _run_step(
    step: Step,
    ctx: ProbeContext,
    variables: dict[str, Value],
    secrets: _Secrets,
    runs: list[StepRun],
    values: list[tuple[str, float]],
) -> tuple[StepRun, list[tuple[str, float]]]:
    """Run one step in a trace of its own, merged into the probe's trace as it ends (also
    when the timeout cancels it)."""
    trace, clock = ctx.trace, ctx.clock
    concrete = dataclasses.replace(
        step.http,
        url=step.url.render(variables),
        headers=tuple((name, template.render(variables)) for name, template in step.headers),
        body=_body(step, variables),
        secret_values=(*step.http.secret_values, *secrets.texts),
    )
    url = redact_url(step.url.render(variables, shown=True), step.http.secret_values)
    shown = f"{step.http.method} {url}"
    sub = ProbeTrace(clock)
    trace.active = f"step {step.name}"
    started = clock.monotonic()
    exchange: http.Exchange | None = None
    try:
        try:
            exchange = await http.exchange(concrete, ProbeContext(sub, ctx.clients))
            failures = exchange.failures
        except ProbeFailure as exc:
            failures = [exc]
    except asyncio.CancelledError:
        during = f" ({sub.active})" if sub.active else ""
        trace.active = f"step {step.name}{during}"
        _merge(trace, sub, step.name, secrets)
        cut = StepRun(
            step.name,
            shown,
            False,
            clock.monotonic() - started,
            _status(sub),
            Reason.TIMEOUT,
            f"timed out during {sub.active}" if sub.active else "timed out",
            always=step.always,
        )
        trace.observation = FlowObservation((*runs, cut), tuple(values))
        raise
    extracted: list[str] = []
    exported: list[tuple[str, float]] = []
    if exchange is not None and not failures:
        failures = _extract(step, exchange, sub, variables, secrets, extracted)
        observed = sub.observation
        if isinstance(observed, http.HttpObservation):
            exported = list(observed.values)
    duration = clock.monotonic() - started
    trace.active = None
    _merge(trace, sub, step.name, secrets)
    first = failures[0] if failures else None
    return (
        StepRun(
            step.name,
            shown,
            first is None,
            duration,
            _status(sub),
            None if first is None else first.reason,
            "" if first is None else secrets.scrub(first.message),
            tuple(extracted),
            step.always,
        ),
        exported,
    )


def _body(step: Step, variables: Mapping[str, Value]) -> bytes | None:
    if step.json_body is not None:
        return json.dumps(render_json(step.json_body, variables)).encode()
    if step.body is not None:
        return step.body.render(variables).encode()
    return None


def _status(sub: ProbeTrace) -> int | None:
    return sub.observation.status_code if sub.observation is not None else None


def _extract(
    step: Step,
    exchange: http.Exchange,
    sub: ProbeTrace,
    variables: dict[str, Value],
    secrets: _Secrets,
    extracted: list[str],
) -> list[ProbeFailure]:
    """Read the step's extractions into ``variables``; an ``extract`` failure for the first
    one missing."""
    if not step.extract:
        return []
    text = exchange.text or ""
    document = exchange.document
    if document is None and any(e.json_path is not None for e in step.extract):
        document, not_json = parse_document(text, sub, "extract")
        if not_json is not None:
            return [ProbeFailure(Reason.EXTRACT, not_json.message)]
    for extraction in step.extract:
        value, missing = extraction.read(document, text, exchange.headers)
        name = f"extract {extraction.name}"
        if missing:
            sub.check(name, False, missing)
            return [ProbeFailure(Reason.EXTRACT, f"extract {extraction.name}: {missing}")]
        variable = Value(value, extraction.secret)
        secrets.add(variable)
        variables[extraction.name] = variable
        extracted.append(extraction.name)
        shown = SECRET if extraction.secret else describe(value)
        sub.check(name, True, f"{extraction.source()}: {shown}")
    return []


def _merge(trace: ProbeTrace, sub: ProbeTrace, step: str, secrets: _Secrets) -> None:
    """Add a step's phases, checks (named after the step, secrets scrubbed) and certificates
    to the probe's trace; of the chains seen, the one that expires first is kept."""
    for phase, seconds in sub.phases.items():
        trace.add_phase(phase, seconds)
    for check in sub.checks:
        trace.check(f"{step}: {check.name}", check.passed, secrets.scrub(check.detail))
    if sub.tls is not None and _replaces(trace.tls, sub.tls):
        trace.tls = sub.tls


def _replaces(kept: TlsSeen | None, seen: TlsSeen) -> bool:
    if kept is None or not kept.chain:
        return True
    if not seen.chain:
        return False
    return min(c.not_after for c in seen.chain) < min(c.not_after for c in kept.chain)


KIND = Kind(
    name="flow",
    imports=always("aiohttp", "cryptography.x509"),
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(STEP_SUCCESS, STEP_DURATION, STEP_FAILURES),
    request=request,
)
