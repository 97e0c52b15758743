"""Lookout: a Prometheus exporter for backend services.

It probes configured endpoints on its own schedule, receives heartbeats from jobs and reports the
host it runs on. See ``exporter.cli`` for the entry point and ``docs/`` for the references.

``__version__`` is read from the installed package's metadata when first asked for, since
importing ``importlib.metadata`` is a noticeable part of ``check-config``'s start.
"""

from __future__ import annotations

from functools import cache

__all__ = ["__version__"]


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookout-exporter")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'exporter' has no attribute {name!r}")
