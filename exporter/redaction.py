"""What the status page, the API and ``lookout-exporter probe`` never show: passwords in URLs
and the values of request headers that carry credentials.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_url", "secret_header"]

REDACTED = "<redacted>"
# Request headers whose values are secrets.
_SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|key|password", re.IGNORECASE)


def secret_header(name: str) -> bool:
    return _SECRET_HEADER.search(name) is not None


def redact_url(url: str) -> str:
    """The URL without a password in its user info (the page and API show URLs to anyone)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{parts.username}:{REDACTED}@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))
