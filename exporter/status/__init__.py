"""What Lookout sees, for people and scripts: the status pages (``page``, rendering the templates
in ``templates/`` through ``markup``) and the JSON API (``api``), both built from the same data
(``views``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from exporter.status import api, page

if TYPE_CHECKING:
    from exporter.app import Runtime

__all__ = ["add_routes"]


def add_routes(app: web.Application, runtime: Runtime) -> None:
    """Serve ``/``, ``/targets/{name}`` and ``/api/v1/...`` from ``runtime``."""
    page.add_routes(app, runtime)
    api.add_routes(app, runtime)
