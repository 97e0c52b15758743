"""``lookout-exporter probe``: run one probe now and show everything it saw.

For someone writing a config: the request, each phase with its time, the response, every check
with why it passed or failed (the JSON Schema error path, the regex that did not match), the
presented certificate chain, and the metric lines this probe would produce, rendered by the real
probe collector. Works for every probe kind: it only reads the ``ProbeResult``.

Exit status 0 when the probe passed, 1 when it failed or could not run (unknown target, invalid
config). ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from exporter import config
from exporter.clock import Clock, SystemClock
from exporter.collectors.probes import ProbeCollector
from exporter.config import ConfigError, Source
from exporter.logs import setup_logging
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.results import ProbeResult
from exporter.stats import ProbeStats
from exporter.status import views
from exporter.targets import Target
from exporter.units import format_duration, parse_duration

__all__ = ["ADHOC_NAME", "add_parser", "probe_and_report", "render_text", "run"]

ADHOC_NAME = "adhoc"
DEFAULT_TIMEOUT = "10s"


class UsageError(Exception):
    """The command cannot run: what to fix is the message."""


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    probe = commands.add_parser(
        "probe",
        help="run one probe now and show its phases, checks, certificates and metrics",
        description="Run one probe of a configured target (or of an ad-hoc --url) now. "
        "Exit status 0 when it passed, 1 when it failed or could not run.",
    )
    probe.add_argument("name", nargs="?", help="name of a target in the --config file")
    probe.add_argument("--config", help="YAML config file holding the target")
    probe.add_argument("--url", help="probe this URL instead: an HTTP GET expecting 2xx")
    probe.add_argument(
        "--timeout",
        type=_duration,
        help=f"timeout of the --url probe (default {DEFAULT_TIMEOUT})",
    )
    probe.add_argument("--location", help="location label of the rendered metrics")
    probe.add_argument("--json", action="store_true", help="print one JSON document")


def resolve_target(args: argparse.Namespace) -> tuple[Target[Any], str | None]:
    """The target to probe and the location for its metrics, from the command line."""
    if args.url is not None:
        if args.name is not None or args.config is not None:
            raise UsageError("give either NAME with --config, or --url, not both")
        timeout = args.timeout or DEFAULT_TIMEOUT
        document = {
            "targets": [
                {
                    "name": ADHOC_NAME,
                    "kind": "http",
                    "url": args.url,
                    "interval": timeout,
                    "timeout": timeout,
                }
            ]
        }
        # JSON is YAML: the ad-hoc target passes the same schema and builders as a config.
        loaded = config.load_text(json.dumps(document), Source("--url", Path.cwd()), {})
        return loaded.targets[0], args.location
    if args.timeout is not None:
        raise UsageError("--timeout applies to --url only; a configured target has its own")
    if args.name is None:
        raise UsageError("name a target (with --config FILE) or give --url URL")
    if args.config is None:
        raise UsageError(f"probing target {args.name!r} needs --config FILE")
    loaded = config.load(args.config, target=args.name)  # other targets may be unready
    for target in loaded.targets:
        if target.name == args.name:
            return target, args.location or loaded.location
    known = ", ".join(t.name for t in loaded.targets) or "none"
    raise UsageError(f"{args.config}: no target named {args.name!r} (targets: {known})")


def run(args: argparse.Namespace) -> int:
    setup_logging("warning", "logfmt")
    try:
        target, location = resolve_target(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"lookout-exporter probe: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(probe_and_report(target, location, as_json=args.json, out=sys.stdout))


async def probe_and_report(
    target: Target[Any],
    location: str | None,
    *,
    as_json: bool,
    out: TextIO,
    clock: Clock | None = None,
) -> int:
    """Probe ``target`` once, write the report to ``out``; 0 if the probe passed, else 1."""
    clock = clock or SystemClock()
    clients = SharedClients()
    try:
        result = await run_probe(target, clients, clock)
    finally:
        await clients.close()
    report = build_report(target, location, result)
    if as_json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(render_text(report, clock.time()))
    return 0 if result.success else 1


def metrics_text(target: Target[Any], location: str | None, result: ProbeResult) -> str:
    """The exposition this one result produces, from the exporter's own probe collector."""
    stats = ProbeStats(target)
    stats.record(result)
    return "".join(ProbeCollector(lambda: [stats], lambda: location).expose())


def build_report(target: Target[Any], location: str | None, result: ProbeResult) -> dict[str, Any]:
    return {
        "target": {
            "name": target.name,
            "kind": target.kind.name,
            "location": location,
            "labels": dict(target.labels),
        },
        "request": views.request_json(target),
        "result": views.result_json(result),
        "response": response_facts(result),
        "metrics": metrics_text(target, location, result),
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def response_facts(result: ProbeResult) -> list[str]:
    """What the peer answered, in short phrases: the kind's own facts, then the TLS version."""
    facts = result.observation.summary() if result.observation is not None else []
    if result.tls is not None and result.tls.version is not None:
        facts.append(result.tls.version)
    return facts


_STEP_STATES = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def _step_line(step: Mapping[str, Any], width: int) -> str:
    """One step of a flow: its verdict, name, request, status, duration, what it extracted."""
    parts = [f"  {_STEP_STATES[step['state']]}  {step['name']:<{width}}  {step['request']}"]
    if step["state"] != "skipped":
        status = step["status_code"]
        parts.append(f"{status if status is not None else 'no response'}")
        parts.append(_ms(step["duration_seconds"]))
    if step["extracted"]:
        parts.append(f"extracted {', '.join(step['extracted'])}")
    if step["message"]:
        parts.append(f"{step['reason'] or 'note'}: {step['message']}")
    return " · ".join(parts)


def render_text(report: Mapping[str, Any], now: float) -> str:
    """The report for people: one section per aspect of the probe."""
    target, request, result = report["target"], report["request"], report["result"]
    at = f" from {target['location']}" if target["location"] else ""
    lines = [f"Target    {target['name']} ({target['kind']}){at}"]
    if result["success"]:
        lines.append(f"Result    PASS in {_ms(result['duration_seconds'])}")
    else:
        lines.append(
            f"Result    FAIL in {_ms(result['duration_seconds'])}, reason {result['reason']}: "
            f"{result['message']}"
        )
    method = f"{request['method']} " if "method" in request else ""
    lines.append(f"Request   {method}{request['endpoint']}")
    lines.extend(f"          {h['name']}: {h['value']}" for h in request.get("headers", ()))
    if request.get("body_bytes"):
        lines.append(f"          body: {request['body_bytes']} bytes")
    settings = [f"{name} {value}" for name, value in request["options"].items()]
    settings.append(f"timeout {format_duration(request['timeout_seconds'])}")
    lines.append(f"          {' · '.join(settings)}")
    lines.append(f"Response  {', '.join(report['response']) or 'none received'}")
    steps = result["facts"].get("steps")
    if steps is not None:
        lines += ["", "Steps"]
        width = max(len(step["name"]) for step in steps)
        for step in steps:
            lines.append(_step_line(step, width))
    lines += ["", "Phases"]
    width = max((len(p["phase"]) for p in result["phases"]), default=0)
    lines.extend(f"  {p['phase']:<{width}}  {_ms(p['seconds']):>10}" for p in result["phases"])
    if not result["phases"]:
        lines.append("  none completed")
    lines += ["", "Checks"]
    width = max((len(c["name"]) for c in result["checks"]), default=0)
    for check in result["checks"]:
        verdict = "PASS" if check["passed"] else "FAIL"
        lines.append(f"  {verdict}  {check['name']:<{width}}  {check['detail']}".rstrip())
    if not result["checks"]:
        lines.append("  none ran (the probe ended before its checks)")
    lines += ["", "Certificate chain"]
    for index, cert in enumerate(result["certificates"]):
        days = (cert["not_after"] - now) / views.SECONDS_PER_DAY
        lines += [
            f"  [{index}] subject  {cert['subject']}",
            f"      issuer   {cert['issuer']}",
            f"      valid    {_utc(cert['not_before'])} to {_utc(cert['not_after'])} "
            f"({days:.1f} days left)",
            f"      names    {', '.join(cert['dns_names']) or '(none)'}",
            f"      serial   {cert['serial']}",
            f"      sha256   {cert['fingerprint_sha256']}",
        ]
    if not result["certificates"]:
        lines.append("  none presented")
    lines += ["", "Metrics", report["metrics"].rstrip("\n")]
    return "\n".join(lines) + "\n"
