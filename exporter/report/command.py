"""``lookout-exporter report``: asks a Prometheus for a period's incident counters and writes
the SLA report. Exit status 0 with a report, 1 when Prometheus cannot be reached or refuses a
query, when the period has no data, or when an option is wrong; the message says which."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from exporter.report.compute import NoData, build
from exporter.report.period import Period, between, parse_month, parse_time
from exporter.report.prometheus import Prometheus, PrometheusError
from exporter.report.render import FORMATS, render

__all__ = ["add_parser", "run"]

HELP = "write an SLA report of a month (or any period) from Prometheus"


def add_parser(commands: Any) -> None:
    report = commands.add_parser("report", help=HELP, description=HELP)
    report.add_argument(
        "--prometheus.url",
        dest="url",
        required=True,
        help="base URL of the Prometheus (or Thanos, Mimir) HTTP API, e.g. http://prometheus:9090",
    )
    report.add_argument(
        "--prometheus.bearer-token-file",
        dest="token_file",
        type=Path,
        help="file holding a bearer token sent with every query",
    )
    report.add_argument(
        "--prometheus.ca-file", dest="ca_file", type=Path, help="CA bundle for an https:// URL"
    )
    report.add_argument("--month", help="calendar month in UTC, YYYY-MM (e.g. 2026-11)")
    report.add_argument(
        "--from", dest="start", help="period start: date, RFC 3339 time or Unix seconds"
    )
    report.add_argument("--to", dest="end", help="period end: date, RFC 3339 time or Unix seconds")
    report.add_argument(
        "--selector",
        default="",
        help='label matchers narrowing the series, e.g. job="lookout",service="orders"',
    )
    report.add_argument("--format", choices=sorted(FORMATS), default="html")
    report.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")


def period_of(args: argparse.Namespace) -> Period:
    if args.month is not None:
        if args.start is not None or args.end is not None:
            raise ValueError("--month and --from/--to exclude each other")
        return parse_month(args.month)
    if args.start is None or args.end is None:
        raise ValueError("give --month YYYY-MM, or both --from and --to")
    return between(parse_time(args.start, "--from"), parse_time(args.end, "--to"))


def run(args: argparse.Namespace) -> int:
    try:
        period = period_of(args)
        prometheus = Prometheus(args.url, bearer_token_file=args.token_file, ca_file=args.ca_file)
        report = build(prometheus, period, args.selector)
    except (ValueError, PrometheusError, NoData) as exc:
        print(f"lookout-exporter report: {exc}", file=sys.stderr)
        return 1
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"lookout-exporter report: {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
