"""A probe kind's libraries are imported when a target of that kind is taken on, not before."""

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
    # A lazily bound module sits in sys.modules before it runs; its submodules do not.
    return sorted(
        name for name, inner in [
            ("cryptography.x509", "cryptography.x509.base"),
            ("aiosmtplib", "aiosmtplib.smtp"),
            ("dns.asyncquery", "dns.query"),
        ]
        if inner in sys.modules
    )

print(executed())
text = "targets:\\n  - {name: a, kind: icmp, host: 127.0.0.1}\\n"
text += "  - {name: b, kind: tcp, address: '127.0.0.1:1'}\\n"
for target in load_text(text, Source("t", Path(".")), {}).targets:
    prepare(target)
    print(target.kind.name, executed())
"""


def test_the_app_imports_a_kinds_libraries_only_for_a_target_of_that_kind() -> None:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    assert output.splitlines() == [
        "[]",
        "icmp []",
        "tcp ['cryptography.x509']",
    ]
