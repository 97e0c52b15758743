"""Lookout: a Prometheus exporter for backend services.

It probes configured endpoints on its own schedule, receives heartbeats from jobs and reports the
host it runs on. See ``exporter.cli`` for the entry point and ``docs/`` for the references.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lookout-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
