"""What Lookout sees, for people and scripts: the status pages (``page``, rendering the templates
in ``templates/`` through ``markup``) and the JSON API (``api``), both built from the same data
(``views``), and the maintenance API (``maintenance``: list, create, end windows).
"""

from __future__ import annotations

from aiohttp import web

from exporter.status import api, maintenance, page

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Serve ``/``, ``/targets/{name}`` and ``/api/v1/...`` from ``app[RUNTIME]``."""
    page.add_routes(app)
    api.add_routes(app)
    maintenance.add_routes(app)
