"""The short cuts of the load give what the general code gives: ``check_url`` accepts a URL
of the common shape without splitting it, an HTTP target without an ``http:`` block is built
without the code for headers, bodies, TLS and proxies, and ``redact_url`` gives a URL with
nothing to hide back without splitting it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config_source import ConfigProblem, Source, check_url
from exporter.probes import http
from exporter.redaction import _redacted, redact_url

# Pieces that make URLs on both sides of the short cut's edges: ports past 65535 and past five
# digits, brackets, user info, spaces and newlines, non-ASCII letters, schemes without ``//``.
_PIECES = st.sampled_from(
    [
        "http", "https", "ws", "h+t.t-p", "1http", "://", ":", "//", "/", "?", "#", "@", "[",
        "]", "::1", "a", "Z", "-", ".", "0", "8080", "65535", "65536", "99999", "123456",
        "10.0.0.1", " ", "\n", "\t", "é", "\uff46", "%41", "!", "~", "path", "q=1&r=2",
        "token=x", "user:pw@",
    ]
)  # fmt: skip


def _splits(url: str) -> bool:
    """The general check: whether ``urlsplit`` splits ``url`` and reads its port."""
    try:
        urlsplit(url).port  # noqa: B018 - reading the port checks it
    except ValueError:
        return False
    return True


def _accepted(url: str) -> bool:
    """The short cut's verdict: whether ``check_url`` gives ``url`` back."""
    try:
        return check_url(url, ("url",)) == url
    except ConfigProblem:
        return False


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_check_url_accepts_exactly_what_urlsplit_splits(url: str) -> None:
    assert _accepted(url) == _splits(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080/health",
        "http://10.0.0.1:65535/",
        "https://example.com",
        "http://a:0/x?y#z",
        "http://10.0.0.1:65536/",
        "http://10.0.0.1:123456/",
        "http://[::1/",
        "http://[::1]:8080/",
        "http://user:pw@host:8080/",
        "http://host:port/",
    ],
)
def test_check_url_on_the_edges_of_the_short_cut(url: str) -> None:
    assert _accepted(url) == _splits(url)


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "a", "kind": "http", "url": "http://127.0.0.1:1/"},
        {
            "name": "a",
            "kind": "http",
            "url": "http://127.0.0.1:1/?token=abc",
            "expect": {"status": ["2xx", 301], "body_matches": ["ok"], "max_size": "1KiB"},
            "export": {"depth": {"json": "$.queue.depth"}},
        },
    ],
)
def test_an_http_target_without_http_block_is_built_as_with_an_empty_one(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    at = ("targets", 0)
    source = Source("test.yml", tmp_path)
    source.from_environment[(*at, "url")] = ["abc"]
    short = http.build(raw, at, source)
    general = http.build({**raw, "http": {}}, at, source)
    assert short == general
    assert short.secret_values == ("abc",)
    assert [e.name for e in short.exports] == list(raw.get("export", {}))


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(_PIECES, max_size=12).map("".join),
    st.lists(st.sampled_from(["abc", "path", "secret", "8080", "q=1"]), max_size=2),
)
def test_redact_url_shows_what_redacting_by_the_urls_parts_shows(
    url: str, secrets: list[str]
) -> None:
    """The endpoint of every target is made at load: the short cut for a URL with nothing to
    hide gives what splitting it gives, a refusal included."""
    hidden = [s for s in secrets if len(s) >= 4]
    try:
        expected: str | type[ValueError] = _redacted(url, hidden)
    except ValueError:
        expected = ValueError
    try:
        shown: str | type[ValueError] = redact_url(url, secrets)
    except ValueError:
        shown = ValueError
    assert shown == expected
