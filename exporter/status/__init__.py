"""What Lookout sees, for people and scripts: the status pages (``page``, rendering the templates
in ``templates/`` through ``markup``, with the pictures of ``pictures``) and the JSON API
(``api``), both built from the same data (``views``), the maintenance API (``maintenance``:
list, create, end windows), and the public status page for customers (``public``), built only
from what ``status_page.public`` names.
"""

from __future__ import annotations

from aiohttp import web

from exporter.status import api, maintenance, page, public

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Serve ``/``, ``/targets/{name}``, ``/api/v1/...`` and ``/status...`` from
    ``app[RUNTIME]``."""
    page.add_routes(app)
    api.add_routes(app)
    maintenance.add_routes(app)
    public.add_routes(app)
