"""A probe kind's libraries are imported when a target that needs them is taken on, not before:
the app alone executes neither the config schema's compiled validator nor dnspython nor
cryptography's certificate parser, and an http target of a plain http URL needs no parser."""

from __future__ import annotations

import subprocess
import sys

# Run in a fresh interpreter: this test process has imported every library already.
SCRIPT = """
import sys
from pathlib import Path

import exporter.app
from exporter.config import Source, load_text
from exporter.probes.runner import prepare

def executed():
    # A lazily bound module sits in sys.modules as a _LazyModule until it runs.
    return sorted(
        name
        for name in (
            "cryptography.x509", "aiosmtplib", "dns.asyncquery", "dns.name", "jsonschema_rs"
        )
        if name in sys.modules and type(sys.modules[name]).__name__ != "_LazyModule"
    )

print(executed())
targets = [
    "{name: a, kind: icmp, host: 127.0.0.1}",
    "{name: b, kind: http, url: 'http://127.0.0.1:1/'}",
    "{name: c, kind: http, url: 'https://127.0.0.1:1/'}",
    "{name: d, kind: dns, query: example.org, dns: {nameserver: 127.0.0.1}}",
]
config = load_text("targets: [" + ", ".join(targets) + "]", Source("t", Path(".")), {})
print(executed())
for target in config.targets:
    prepare(target)
    print(target.name, executed())
"""


def test_the_app_imports_a_kinds_libraries_only_for_a_target_of_that_kind() -> None:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    # Loading the config in this process checks it and builds the DNS target's name.
    loaded = "'dns.name', 'jsonschema_rs'"
    assert output.splitlines() == [
        "[]",
        f"[{loaded}]",
        f"a [{loaded}]",
        f"b [{loaded}]",
        f"c ['cryptography.x509', {loaded}]",
        f"d ['cryptography.x509', 'dns.asyncquery', {loaded}]",
    ]
