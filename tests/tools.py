"""Finding Debian's prometheus, promtool, alertmanager and amtool binaries for the tests.

``tests/run`` installs them. When one is still missing a test that needs it is skipped on a
developer's machine, but fails under ``CI=true``: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

# Debian names the Alertmanager binary prometheus-alertmanager.
ALIASES = {"alertmanager": ("prometheus-alertmanager", "alertmanager")}


def require_tool(name: str) -> str:
    """The path of tool ``name``; fails under CI and skips elsewhere when it is not installed."""
    for candidate in ALIASES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    unavailable(f"{name} is not installed (tests/run installs it with apt-get)")


def unavailable(message: str) -> NoReturn:
    """Fails under ``CI=true``, skips elsewhere: for a test whose environment lacks something
    ``tests/run`` provides."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
