"""The dependency examples pass ``check-config``, and docs/probes.md names every key and reason."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import config
from tests.processes import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))
DOCS = (ROOT / "docs" / "probes.md").read_text(encoding="utf-8")
KINDS = ("tcp", "tls", "dns", "smtp", "websocket", "grpc", "domain", "icmp")
# The secrets the examples read from the environment.
SECRETS = {
    "REDIS_PASSWORD": "example",
    "SMTP_PASSWORD": "example",
    "CHAT_TOKEN": "example",
    "ORDERS_KEY": "example",
    "OAUTH_CLIENT_SECRET": "example",
    "RABBITMQ_PASSWORD": "example",
    "ORDERS_TOKEN": "example",
}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check_config(example: Path) -> None:
    result = run(
        [sys.executable, "-m", "exporter", "check-config", str(example)],
        cwd=ROOT,
        env={**os.environ, **SECRETS},
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_examples_cover_every_dependency_kind_and_the_named_dependencies() -> None:
    targets = [t for e in EXAMPLES for t in yaml.safe_load(e.read_text())["targets"]]
    assert {t["kind"] for t in targets} >= set(KINDS)
    addresses = {t.get("address") for t in targets}
    assert {"api.push.apple.com:443", "fcm.googleapis.com:443"} <= addresses
    assert any(t.get("tls", {}).get("starttls") == "postgres" for t in targets)


def _keys(node: Any, prefix: str) -> Iterator[str]:
    """Dotted key paths of a schema section; keys of list items (dialog steps) by their name."""
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield f"{prefix}{name}"
        yield from _keys(sub, f"{prefix}{name}.")
        yield from _keys(sub.get("items", {}), "")


@pytest.mark.parametrize("kind", KINDS)
def test_docs_name_every_key_of_the_kind(kind: str) -> None:
    section = config.schema()["$defs"][f"{kind}_target"]
    assert [key for key in _keys(section, "") if f"`{key}" not in DOCS] == []
    assert f"## `kind: {kind}`" in DOCS


def test_docs_name_every_reason_the_dependency_probes_use() -> None:
    reasons = [
        "dns",
        "refused",
        "connect",
        "reset",
        "timeout",
        "tls",
        "tls_version",
        "cert_expired",
        "cert_not_yet_valid",
        "cert_hostname",
        "cert_invalid",
        "cert_expiring",
        "dialog",
        "starttls",
        "protocol",
        "dns_rcode",
        "dns_answer",
        "smtp_banner",
        "smtp_ehlo",
        "smtp_auth",
        "ws_reply",
        "grpc_status",
        "domain_not_found",
        "rate_limited",
        "packet_loss",
    ]
    assert [r for r in reasons if f"`{r}`" not in DOCS] == []
