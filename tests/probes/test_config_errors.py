"""Mistakes in tcp, tls, dns and smtp targets are reported with their key path and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import config
from exporter.config import ConfigError, Source

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "dialog-step-with-two-actions": (
        {"kind": "tcp", "address": "h:1", "tcp": {"dialog": [{"send": "a", "expect": "b"}]}},
        "targets[0].tcp.dialog[0]: keys 'send' and 'expect' cannot be used together",
    ),
    "dialog-step-without-action": (
        {"kind": "tcp", "address": "h:1", "tcp": {"dialog": [{}]}},
        "targets[0].tcp.dialog[0]: {} should be non-empty",
    ),
    "dialog-starttls-false": (
        {"kind": "tcp", "address": "h:1", "tcp": {"dialog": [{"starttls": False}]}},
        "targets[0].tcp.dialog[0].starttls: True was expected",
    ),
    "two-tls-steps": (
        {"kind": "tcp", "address": "h:1", "tcp": {"tls": True, "dialog": [{"starttls": True}]}},
        "targets[0].tcp.dialog[0].starttls: tcp.tls already starts TLS right after connecting",
    ),
    "second-starttls-step": (
        {"kind": "tcp", "address": "h:1", "tcp": {"dialog": [{"starttls": True}] * 2}},
        "targets[0].tcp.dialog[1].starttls: TLS already starts at dialog step 0",
    ),
    "bad-expect-regex": (
        {"kind": "tcp", "address": "h:1", "tcp": {"dialog": [{"expect": "(+PONG"}]}},
        "targets[0].tcp.dialog[0].expect: invalid regular expression '(+PONG'",
    ),
    "unknown-tls-key": (
        {"kind": "tcp", "address": "h:1", "tcp": {"tls": {"verify": False}}},
        "targets[0].tcp.tls.verify: unknown key",
    ),
    "unknown-tls-kind-key": (
        {"kind": "tls", "address": "h:1", "tls": {"verify": False}},
        "targets[0].tls.verify: unknown key",
    ),
    "cert-without-key": (
        {"kind": "tls", "address": "h:1", "tls": {"cert_file": "c.pem"}},
        "targets[0].tls: 'key_file' is a dependency of 'cert_file'",
    ),
    "port-out-of-range": (
        {"kind": "tcp", "address": "h:70000"},
        "targets[0].address: port 70000 is out of range (1-65535)",
    ),
    "missing-address": ({"kind": "tls"}, "targets[0]: 'address' is a required property"),
    "unknown-starttls-protocol": (
        {"kind": "tls", "address": "h:1", "tls": {"starttls": "xmpp"}},
        "targets[0].tls.starttls: 'xmpp' is not one of ['smtp', 'imap', 'pop3', 'ftp', 'postgres']",
    ),
    "bad-valid-for": (
        {"kind": "tls", "address": "h:1", "expect": {"valid_for": "two weeks"}},
        "targets[0].expect.valid_for: 'two weeks' is not a duration",
    ),
    "missing-ca-file": (
        {"kind": "tls", "address": "h:1", "tls": {"ca_file": "nowhere/ca.pem"}},
        "targets[0].tls.ca_file: file",
    ),
    "unknown-record": (
        {"kind": "dns", "query": "example.com", "record": "A6"},
        "targets[0].record: 'A6' is not one of",
    ),
    "max-below-min": (
        {"kind": "dns", "query": "example.com", "expect": {"min_answers": 2, "max_answers": 1}},
        "targets[0].expect.max_answers: max_answers (1) is below min_answers (2)",
    ),
    "ehlo-name-with-space": (
        {"kind": "smtp", "address": "h:25", "smtp": {"ehlo_name": "my host"}},
        "targets[0].smtp.ehlo_name: 'my host' is not a host name without spaces",
    ),
    "missing-password-file": (
        {
            "kind": "smtp",
            "address": "h:25",
            "smtp": {"auth": {"username": "u", "password_file": "nope"}},
        },
        "targets[0].smtp.auth.password_file: cannot read file",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_mistake_is_named_with_its_key_path(case: str, tmp_path: Path) -> None:
    target, expected = CASES[case]
    text = yaml.safe_dump({"targets": [{"name": "t", **target}]})
    with pytest.raises(ConfigError) as caught:
        config.load_text(text, Source("lookout.yml", tmp_path), {})
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 1, problems
    assert problems[0].startswith("lookout.yml:"), problems
    assert expected in problems[0]
