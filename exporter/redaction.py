"""What the status page, the API and ``lookout-exporter probe`` never show.

Secrets are recognised by where they came from, not only by what they are called:

- a request header whose value was read from a file (``header_files``, ``bearer_token_file``,
  ``basic_auth.password_file``) or written with ``${VAR}`` is a secret whatever its name;
- a header whose name says so (``SECRET_HEADER``: authorization, cookie, token, secret, key,
  password, auth, pass, signature, credential, session) is a secret whatever its source;
- in a URL: the password of its user info; the value of every query parameter whose name is in
  the documented list (``SECRET_PARAMETER``); and every part of the path or query that holds a
  value written with ``${VAR}``. The scheme, host and port are shown as configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["REDACTED", "SECRET_HEADER", "SECRET_PARAMETER", "redact_url", "secret_header"]

REDACTED = "<redacted>"
# Request headers whose values are secrets by their name.
SECRET_HEADER = re.compile(
    r"authorization|cookie|token|secret|key|passw|pass$|auth|signature|credential|session",
    re.IGNORECASE,
)
# Query parameters whose values are secrets by their name (compared in lower case).
SECRET_PARAMETER = re.compile(
    r"(^|[_.-])(api[_-]?key|apikey|key|token|access[_-]?token|auth|secret|client[_-]?secret|"
    r"password|passwd|pwd|pass|signature|sig|session|sessionid|code|jwt|credential|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token)$"
    r"|token|secret|passw|signature",
    re.IGNORECASE,
)
# Values from the environment shorter than this are not searched for in URLs (too likely to
# match by chance); headers written with them are redacted all the same.
_MIN_SECRET = 4


def secret_header(name: str) -> bool:
    return SECRET_HEADER.search(name) is not None


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """The URL without a password in its user info, secret query values and the ``secrets``
    (values from the environment) in its path or query: the page and API show URLs to anyone."""
    hidden = [s for s in secrets if len(s) >= _MIN_SECRET]
    # No user info, no query and nothing from the environment: nothing to hide. ASCII without
    # brackets: nothing that splitting it could refuse. Most targets' endpoints, made at load.
    plain = url.isascii() and "[" not in url and "]" not in url
    if plain and not hidden and "@" not in url and "?" not in url:
        return url
    return _redacted(url, hidden)


def _redacted(url: str, hidden: list[str]) -> str:
    """``redact_url`` by the URL's parts."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{parts.username}:{REDACTED}@{host}{port}"
    path = "/".join(_without(segment, hidden) for segment in parts.path.split("/"))
    query = "&".join(_parameter(item, hidden) for item in parts.query.split("&"))
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=query))


def _parameter(item: str, hidden: list[str]) -> str:
    name, equals, value = item.partition("=")
    if not equals:
        return _without(item, hidden)
    if value and SECRET_PARAMETER.search(unquote_plus(name)) is not None:
        return f"{name}={REDACTED}"
    return f"{_without(name, hidden)}={_without(value, hidden)}"


def _without(text: str, hidden: list[str]) -> str:
    """``text`` with each secret replaced; all of it when a secret shows only once decoded."""
    for secret in hidden:
        if secret in text:
            text = text.replace(secret, REDACTED)
        elif secret in unquote_plus(text):
            return REDACTED
    return text
