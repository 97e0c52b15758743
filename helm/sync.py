"""Copies the repository's alert rules and Grafana dashboards into the Helm chart.

Helm reads only files inside a chart, so the chart carries copies: the rule files under ``rules/``
(subdirectories included, e.g. ``rules/alerts/probes.yml``) become
``helm/lookout-exporter/files/rules/`` with the same relative paths (one PrometheusRule each), and
``grafana-dashboards/*.json`` become ``helm/lookout-exporter/files/dashboards/`` (one Grafana
sidecar ConfigMap each). This script keeps those copies byte-identical to their sources and removes
copies whose source is gone.

    python helm/sync.py            # copy, then list what changed
    python helm/sync.py --check    # list every difference, exit 1 if there is any

Only Prometheus rule files (a YAML mapping with ``groups``) are taken from ``rules/``; promtool test
files and Alertmanager examples stay out. ``rules/optional/`` (replacements loaded instead of a
default file) is copied too; the chart renders one only when ``prometheusRule.optionalRules``
names it. Only dashboards (a JSON object with ``panels``) are taken from ``grafana-dashboards/``.
A source that does not parse stops it with exit status 2 and the file's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

CHART_FILES = Path("helm/lookout-exporter/files")


class SourceError(Exception):
    """A source file that cannot be read or parsed; the message names the file and the reason."""


def is_rule_file(path: Path, text: str) -> bool:
    """True for a Prometheus rule file: a YAML mapping with a ``groups`` key."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {exc}") from None
    return isinstance(document, dict) and "groups" in document


def is_dashboard(path: Path, text: str) -> bool:
    """True for a Grafana dashboard: a JSON object with a ``panels`` key."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON: {exc}") from None
    return isinstance(document, dict) and "panels" in document


@dataclass(frozen=True, slots=True)
class Copy:
    """One source directory mirrored into one chart directory."""

    source: Path
    target: Path
    patterns: tuple[str, ...]
    wanted: Callable[[Path, str], bool]
    recursive: bool


COPIES = (
    Copy(Path("rules"), CHART_FILES / "rules", ("*.yml", "*.yaml"), is_rule_file, recursive=True),
    Copy(
        Path("grafana-dashboards"),
        CHART_FILES / "dashboards",
        ("*.json",),
        is_dashboard,
        recursive=False,
    ),
)


def desired(root: Path, copy: Copy) -> dict[str, bytes]:
    """Relative path -> content that ``copy.target`` must hold."""
    files: dict[str, bytes] = {}
    source = root / copy.source
    for pattern in copy.patterns:
        found = source.rglob(pattern) if copy.recursive else source.glob(pattern)
        for path in sorted(found):
            if not path.is_file():
                continue
            data = path.read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise SourceError(f"{path}: not UTF-8 text") from None
            if copy.wanted(path, text):
                files[path.relative_to(source).as_posix()] = data
    return files


def present(root: Path, copy: Copy) -> dict[str, bytes]:
    """Relative path -> content that ``copy.target`` holds now."""
    target = root / copy.target
    return {
        path.relative_to(target).as_posix(): path.read_bytes()
        for path in sorted(target.rglob("*"))
        if path.is_file()
    }


def differences(root: Path) -> list[str]:
    """Every way the chart's copies differ from their sources, one line each."""
    lines: list[str] = []
    for copy in COPIES:
        want, have = desired(root, copy), present(root, copy)
        for name in sorted(want.keys() | have.keys()):
            source, target = copy.source / name, copy.target / name
            if name not in have:
                lines.append(f"missing: {target} (copy of {source})")
            elif name not in want:
                lines.append(f"stale: {target} (no {source})")
            elif want[name] != have[name]:
                lines.append(f"differs: {target} from {source}")
    return lines


def sync(root: Path) -> list[str]:
    """Makes the chart's copies equal to their sources; returns what it changed."""
    changed = differences(root)
    for copy in COPIES:
        want, have = desired(root, copy), present(root, copy)
        target = root / copy.target
        target.mkdir(parents=True, exist_ok=True)
        for name in have.keys() - want.keys():
            (target / name).unlink()
        for name, data in want.items():
            if have.get(name) != data:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes(data)
        for directory in sorted(target.rglob("*"), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report differences")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="repository root (default: the one holding this script)",
    )
    args = parser.parse_args(argv)
    try:
        lines = differences(args.root) if args.check else sync(args.root)
    except (SourceError, OSError) as exc:
        print(f"sync: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    if args.check and lines:
        print("run: python helm/sync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
