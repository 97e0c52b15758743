"""The token check shared by the ping routes and the read API.

A heartbeat with a ``token`` accepts it as ``Authorization: Bearer TOKEN`` or as the ``token``
query parameter; the comparison takes the same time wherever the strings differ.
"""

from __future__ import annotations

import hmac

from aiohttp import web

__all__ = ["authorized"]


def authorized(request: web.Request, token: str) -> bool:
    supplied = request.query.get("token")
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        supplied = credentials.strip()
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode(), token.encode())
