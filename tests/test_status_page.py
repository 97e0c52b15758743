"""The status page at ``/`` and the target pages under ``/targets/``: what they show, in which
order, and that nothing from a config or a probed server can inject markup into them."""

from __future__ import annotations

import ast
import datetime
import html
import json
import re
import ssl
import tomllib
from dataclasses import replace
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient
from jinja2 import UndefinedError
from markupsafe import Markup

from exporter import __version__, config
from exporter.app import create_app
from exporter.config import Source, load_text
from exporter.runtime import Options
from exporter.status import markup
from exporter.status import page as status_page
from exporter.status.markup import CSP, ENVIRONMENT, escape_text
from exporter.targets import Defaults, build_target
from tests.clock import FakeClock
from tests.status_support import (
    HOSTILE,
    HOSTILE_QUERY,
    empty_config,
    service_app,
    wait_probed,
    write_config,
)

ROW = re.compile(r'<tr class="target" data-state="(\w+)">.*?<a href="targets/([^"]+)">', re.S)


@pytest.fixture
async def probed(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> TestClient[Any, Any]:
    service = await aiohttp_server(service_app())
    path = write_config(tmp_path, str(service.make_url("")).rstrip("/"))
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await wait_probed(app, probes=2)
    return client


async def page(client: TestClient[Any, Any], url: str, status: int = 200) -> str:
    response = await client.get(url)
    assert response.status == status
    assert response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    return await response.text()


def assert_no_markup_from(hostile: str, text: str) -> None:
    """``hostile`` never appears raw in ``text``, only escaped."""
    assert hostile not in text
    assert html.escape(hostile) in text


async def test_page_lists_every_target_with_failing_ones_first(
    probed: TestClient[Any, Any],
) -> None:
    text = await page(probed, "/")
    assert ROW.findall(text) == [
        ("down", "m-hostile"),
        ("down", "z-broken"),
        ("up", "a-healthy"),
    ]
    assert f"version {__version__}" in text
    assert 'id="heartbeats"' not in text
    assert "status 500, expected 2xx" in text
    assert '<span class="bad">status</span> <span class="muted">(now)</span>' in text


async def test_page_sorts_by_name_and_filters_by_state(probed: TestClient[Any, Any]) -> None:
    by_name = await page(probed, "/?sort=name")
    assert [name for _, name in ROW.findall(by_name)] == ["a-healthy", "m-hostile", "z-broken"]
    up = await page(probed, "/?state=up")
    assert ROW.findall(up) == [("up", "a-healthy")]
    failing = await page(probed, "/?state=failing&sort=name")
    assert [name for _, name in ROW.findall(failing)] == ["m-hostile", "z-broken"]
    # Links keep the other choice: the filter keeps the sort, the sort keeps the filter.
    assert '<a href="?state=failing&amp;sort=name" aria-current="true">failing (2)</a>' in failing
    assert '<a href="?state=up&amp;sort=name">up (1)</a>' in failing
    assert '<a href="?state=failing">state</a>' in failing


async def test_an_invalid_filter_is_a_400_page_naming_the_choices(
    probed: TestClient[Any, Any],
) -> None:
    text = await page(probed, "/?state=<b>x</b>", 400)
    assert "invalid state=&#x27;&lt;b&gt;x&lt;/b&gt;&#x27;: use one of all, failing" in text


async def test_target_page_shows_recent_probes_with_phases_checks_and_messages(
    probed: TestClient[Any, Any],
) -> None:
    text = await page(probed, "/targets/z-broken")
    assert "<h1>z-broken</h1>" in text
    rows = re.findall(r'<tr data-success="(\w+)">', text)
    assert len(rows) >= 2
    assert set(rows) == {"false"}
    assert "connect " in text
    assert "processing " in text
    assert "<pre>status 500, expected 2xx</pre>" in text
    assert '<span class="badge fail">fail</span></td><td>status</td>' in text
    assert '<a href="../">' in text


async def test_an_unknown_target_page_is_a_404(probed: TestClient[Any, Any]) -> None:
    text = await page(probed, "/targets/nope", 404)
    assert "no target named &#x27;nope&#x27;" in text


async def test_markup_in_failure_messages_headers_bodies_and_urls_is_escaped(
    probed: TestClient[Any, Any],
) -> None:
    index = await page(probed, "/")
    detail = await page(probed, "/targets/m-hostile")
    for text in (index, detail):
        assert "<script>" not in text
        assert "<img" not in text
        assert "onerror=" not in text.replace("onerror=&quot;", "")
    # The target quotes response excerpts (http.response_excerpts), cut to 40 characters.
    assert len(HOSTILE) > 40
    assert_no_markup_from(f"X-Evil must match '^fine$', got {HOSTILE[:40] + '…'!r}", detail)
    assert html.escape('/hostile?q="><script>window.pwned=3</script>') in index


async def test_markup_in_target_names_labels_location_and_config_name_is_escaped(
    aiohttp_client: Any,
) -> None:
    hostile_name = "<b>x</b>\"'&"
    target = build_target(
        {
            "name": hostile_name,
            "kind": "http",
            "url": "http://127.0.0.1:9/",
            "labels": {"team": "<i>t</i>"},
        },
        ("targets", 0),
        Source("test", Path.cwd()),
        Defaults(interval=3600.0, timeout=1.0),
    )
    loaded = empty_config(
        location="<u>loc</u>", targets=(target,), source="<script>config</script>"
    )
    app = create_app(Options(), loaded, FakeClock())
    client = await aiohttp_client(app)
    index = await page(client, "/")
    assert "<b>" not in index
    assert "<u>" not in index
    assert "<script>" not in index
    assert html.escape(hostile_name) in index
    assert 'href="targets/%3Cb%3Ex%3C%2Fb%3E%22%27%26"' in index
    detail = await page(client, "/targets/%3Cb%3Ex%3C%2Fb%3E%22%27%26")
    assert "<b>" not in detail
    assert "<i>" not in detail
    assert html.escape("team=<i>t</i>") in detail


async def test_header_shows_uptime_and_a_failed_reload_with_its_error(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets: []\n", encoding="utf-8")
    clock = FakeClock()
    app = create_app(Options(config_path=str(path)), config.load(str(path)), clock)
    client = await aiohttp_client(app)
    clock.advance(2 * 3600 + 5 * 60)
    text = await page(client, "/")
    assert "up 2h 5m" in text
    assert "config loaded <span" in text
    assert "no targets" in text
    path.write_text("targets: [{name: '<b>', kind: http}]\n", encoding="utf-8")
    assert (await client.post("/-/reload")).status == 500
    text = await page(client, "/")
    assert "last config reload failed, running the config loaded" in text
    assert "<b>" not in text
    assert "targets[0].name: &#x27;&lt;b&gt;&#x27; is not a name of letters" in text
    assert f"{html.escape(str(path))}:1: targets[0]" in text


async def test_page_shows_certificate_days_left_and_the_chain(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert("127.0.0.1", not_after=now + datetime.timedelta(days=10, hours=1))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_context)
    service = await aiohttp_server(service_app(), ssl=server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    path = tmp_path / "lookout.yml"
    path.write_text(
        f"""
targets:
  - name: secure
    kind: http
    url: https://127.0.0.1:{service.port}/ok
    interval: 300ms
    timeout: 250ms
    http: {{tls: {{ca_file: {ca_file}}}}}
""",
        encoding="utf-8",
    )
    app: web.Application = create_app(Options(config_path=str(path)), config.load(str(path)))
    client = await aiohttp_client(app)
    await wait_probed(app)
    index = await page(client, "/")
    assert '<td class="num wide"><span class="warn">10.0</span></td>' in index
    detail = await page(client, "/targets/secure")
    assert "<h3>Certificate chain</h3>" in detail
    assert "127.0.0.1" in detail
    assert detail.count('<span class="warn">10.0</span>') == 2


HEARTBEAT_ROW = re.compile(
    r'<tr class="heartbeat" data-state="(\w+)">.*?<a href="heartbeats/([^"]+)">', re.S
)


async def test_page_lists_heartbeats_failing_first_with_their_last_failure(
    beating: TestClient[Any, Any],
) -> None:
    text = await page(beating, "/")
    assert HEARTBEAT_ROW.findall(text) == [
        ("failed", "c-broken"),
        ("down", "e-down"),
        ("failed", "g-secret"),
        ("late", "d-late"),
        ("new", "b-new"),
        ("up", "a-fine"),
        ("up", "f-workers"),
    ]
    assert "no targets" in text
    broken = text.split('<a href="heartbeats/c-broken">', 1)[1].split("</tr>", 1)[0]
    assert "every 1h, grace 1h" in broken
    assert "exit code 3)" in broken
    assert_no_markup_from(HOSTILE, broken)
    assert "<script>" not in text
    workers = text.split('<a href="heartbeats/f-workers">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num wide">42.00 s</td>' in workers
    assert '<td class="num">1 / 2</td>' in workers
    secret = text.split('<a href="heartbeats/g-secret">', 1)[1].split("</tr>", 1)[0]
    assert "body hidden: this heartbeat has a token" in secret
    assert "hunter2" not in text
    fine = text.split('<a href="heartbeats/a-fine">', 1)[1].split("</tr>", 1)[0]
    assert "1 since start, see its page" in fine
    assert '<a href="?state=late">late (1)</a>' in text
    assert '<a href="?state=failing">failing (4)</a>' in text


async def test_filters_apply_to_heartbeats_and_targets_alike(
    beating: TestClient[Any, Any],
) -> None:
    text = await page(beating, "/?state=new")
    assert HEARTBEAT_ROW.findall(text) == [("new", "b-new")]
    assert "no targets" in text
    text = await page(beating, "/?state=failing&sort=name")
    names = [name for _, name in HEARTBEAT_ROW.findall(text)]
    assert names == ["c-broken", "d-late", "e-down", "g-secret"]


async def test_heartbeat_page_shows_kept_pings_with_escaped_bodies(
    beating: TestClient[Any, Any],
) -> None:
    text = await page(beating, "/heartbeats/c-broken")
    assert "<h1>c-broken</h1>" in text
    assert re.findall(r'<tr data-signal="(\w+)">', text) == ["fail", "success"]
    assert "<pre>first run fine</pre>" in text
    assert_no_markup_from(HOSTILE, text)
    assert "<script>" not in text
    assert "success: 1, start: 0, fail: 1" in text


async def test_heartbeat_page_shows_bodies_of_a_token_heartbeat_only_with_its_token(
    beating: TestClient[Any, Any],
) -> None:
    hidden = await page(beating, "/heartbeats/g-secret")
    assert "hunter2" not in hidden
    assert "body hidden: this heartbeat has a token" in hidden
    shown = await page(beating, "/heartbeats/g-secret?token=s3cret")
    assert "<pre>password=hunter2</pre>" in shown


async def test_an_unknown_heartbeat_page_is_a_404(beating: TestClient[Any, Any]) -> None:
    text = await page(beating, "/heartbeats/nope", 404)
    assert "no heartbeat named &#x27;nope&#x27;" in text


# Tags of both kinds, quotes of both kinds, an ampersand and an entity that must stay text.
HOSTILE_TEXT = HOSTILE + " 'single' & &amp;"
# Every element the status pages are made of; an injected one would show up as another tag.
PAGE_TAGS = frozenset(
    {"html", "head", "meta", "link", "title", "style", "body", "header", "nav", "section"}
    | {"footer", "h1", "h2", "h3", "p", "a", "span", "div", "pre", "table", "thead", "tbody"}
    | {"tr", "th", "td", "dl", "dt", "dd", "time", "br"}
    # The pictures: uptime bar cells, inline SVG sparklines and charts.
    | {"i", "svg", "path", "polyline", "rect", "figure", "figcaption", "details", "summary"}
)


class PageParser(HTMLParser):
    """The elements and attribute names of a page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def assert_only_page_markup(text: str) -> None:
    parser = PageParser()
    parser.feed(text)
    assert parser.tags <= PAGE_TAGS, parser.tags - PAGE_TAGS
    assert not [name for name in parser.attributes if name.startswith("on")]
    assert HOSTILE_TEXT not in text


@pytest.fixture
async def hostile(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path) -> TestClient[Any, Any]:
    """An exporter whose config, probed server and job all bring ``HOSTILE_TEXT``: a target and a
    heartbeat named so with such label values, location and config name, a failure message
    quoting a hostile header, and a failed job's output."""
    service = await aiohttp_server(service_app())
    source = Source("test", Path.cwd())
    target = build_target(
        {
            "name": HOSTILE_TEXT,
            "kind": "http",
            "url": f"{str(service.make_url('')).rstrip('/')}/hostile{HOSTILE_QUERY}",
            "labels": {"team": HOSTILE_TEXT},
            "http": {"response_excerpts": True},
            "expect": {"headers": [{"name": "X-Evil", "matches": "^fine$"}]},
        },
        ("targets", 0),
        source,
        Defaults(interval=0.3, timeout=0.25),
    )
    beat = {"name": "job", "period": "1h", "grace": "1h", "labels": {"team": HOSTILE_TEXT}}
    beats = load_text(json.dumps({"heartbeats": [beat]}), source, {}).heartbeats
    loaded = empty_config(
        location=HOSTILE_TEXT,
        source=HOSTILE_TEXT,
        targets=(target,),
        heartbeats=(replace(beats[0], name=HOSTILE_TEXT),),
    )
    app = create_app(Options(storage_path=tmp_path / "data"), loaded)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    for signal, body in (("", "fine"), ("/fail", HOSTILE_TEXT)):
        response = await client.post(f"/ping/{quote(HOSTILE_TEXT, safe='')}{signal}", data=body)
        assert response.status == 200, await response.text()
    await wait_probed(app)
    return client


async def test_every_page_shows_hostile_config_server_and_job_text_escaped(
    hostile: TestClient[Any, Any],
) -> None:
    name = quote(HOSTILE_TEXT, safe="")
    escaped = html.escape(HOSTILE_TEXT)
    pages = {
        "/": 200,
        "/?state=failing&sort=name": 200,
        f"/targets/{name}": 200,
        f"/heartbeats/{name}": 200,
        f"/targets/{name}x": 404,
        f"/heartbeats/{name}x": 404,
        f"/?state={name}": 400,
    }
    for url, status in pages.items():
        text = await page(hostile, url, status)
        assert_only_page_markup(text)
        if status == 200:
            assert escaped in text, url
    index = await page(hostile, "/")
    assert f'href="targets/{name}"' in index
    assert f'href="heartbeats/{name}"' in index
    assert f"location {escaped}" in index
    assert f"config {escaped}" in index
    detail = await page(hostile, f"/targets/{name}")
    assert f"team={escaped}" in detail
    # The target quotes response excerpts (http.response_excerpts), cut to 40 characters.
    assert len(HOSTILE) > 40
    assert_no_markup_from(f"X-Evil must match '^fine$', got {HOSTILE[:40] + '…'!r}", detail)
    beat = await page(hostile, f"/heartbeats/{name}")
    assert f"team={escaped}" in beat
    assert f"<pre>{escaped}</pre>" in beat


TEMPLATES = Path(markup.__file__).parent / "templates"


def test_no_template_marks_a_value_safe_or_turns_autoescape_off() -> None:
    names = sorted(path.name for path in TEMPLATES.iterdir())
    assert "index.html" in names
    for path in TEMPLATES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b", text), path.name
        assert "autoescape" not in text, path.name
        assert "Markup" not in text, path.name


def markup_makers(path: Path) -> set[str]:
    """The functions of a module that call ``Markup(...)``, and ``<module>`` for its top level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    makers = set()
    for node in tree.body:
        calls = [
            call
            for call in ast.walk(node)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "Markup"
        ]
        if calls:
            makers.add(node.name if isinstance(node, ast.FunctionDef) else "<module>")
    return makers


def test_markup_is_made_only_by_the_filters_that_build_it_from_escaped_parts() -> None:
    """Each of these is read and allowed here: a new one needs the same review."""
    modules = {path.name: markup_makers(path) for path in TEMPLATES.parent.glob("*.py")}
    assert {name: makers for name, makers in modules.items() if makers} == {
        # NONE (the dash for a missing value), then filters of package literals, numbers formatted
        # as numbers and escape_text()'d text.
        "markup.py": {"<module>", "ago", "badge", "days_left", "timestamp", "until"},
    }


def test_markup_filters_escape_any_text_they_are_given() -> None:
    assert str(markup.badge(HOSTILE_TEXT)) == (
        f'<span class="badge {html.escape(HOSTILE_TEXT)}">{html.escape(HOSTILE_TEXT)}</span>'
    )
    with pytest.raises(TypeError):
        markup.days_left(HOSTILE_TEXT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("plain-name_1.2", id="plain"),
        pytest.param(HOSTILE_TEXT, id="hostile"),
        pytest.param("&amp;", id="entity"),
        pytest.param(404, id="int"),
        pytest.param(None, id="none"),
        pytest.param(0.25, id="float"),
    ],
)
def test_escape_text_escapes_text_as_html_escape_does(value: object) -> None:
    assert escape_text(value) == html.escape(str(value))


def test_escape_text_keeps_markup_as_it_is() -> None:
    class Fragment:
        def __html__(self) -> str:
            return "<b>made here</b>"

    assert escape_text(Markup("<i>x</i>")) == "<i>x</i>"
    assert escape_text(Fragment()) == "<b>made here</b>"


def test_every_template_compiles_each_output_to_the_page_escaper() -> None:
    """Guards the code generator hook of ``markup._CodeGenerator`` across Jinja releases."""
    loader = ENVIRONMENT.loader
    assert loader is not None
    for name in ENVIRONMENT.list_templates(extensions=["html"]):
        source = loader.get_source(ENVIRONMENT, name)[0]
        code = ENVIRONMENT.compile(source, name, raw=True)
        assert ("environment.escape_text(" in code) == ("{{" in source), name
        assert not re.search(r"(?<![\w.])escape\(", code), name


def test_a_template_refuses_to_render_a_view_without_a_field_it_shows() -> None:
    with pytest.raises(UndefinedError, match="message"):
        ENVIRONMENT.get_template("error.html").render(status=404, home="../")
    beat = {"name": "job", "status": "up", "schedule": "every 1h"}
    with pytest.raises(KeyError, match="max_runtime_seconds"):
        ENVIRONMENT.get_template("heartbeat.html").render(
            detail=beat, now=0.0, refresh=0, refresh_link=None, cells=[], workers=[]
        )


def test_every_template_ships_in_the_package() -> None:
    pyproject = tomllib.loads((TEMPLATES.parents[2] / "pyproject.toml").read_text("utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["exporter.status"]
    for path in TEMPLATES.iterdir():
        assert any(fnmatch(f"templates/{path.name}", glob) for glob in globs), path.name


def test_targets_group_by_their_label_failing_groups_first_and_open() -> None:
    def row(name: str, state: str, **labels: str) -> dict[str, Any]:
        return {"name": name, "state": state, "labels": labels}

    rows = [
        row("cart", "up", service="shop"),
        row("db", "up"),
        row("login", "down", service="auth"),
        row("pay", "pending", service="shop"),
        row("sso", "up", service="auth"),
    ]
    grouped = status_page.groups(rows, "service", "state")
    assert [(g["value"], g["state"], g["open"]) for g in grouped] == [
        ("auth", "down", True),
        ("shop", "pending", False),
        (None, "up", False),
    ]
    assert grouped[0]["counts"] == [("down", 1), ("up", 1)]
    assert [item["name"] for item in grouped[1]["items"]] == ["cart", "pay"]
    by_name = status_page.groups(rows, "service", "name")
    assert [g["value"] for g in by_name] == ["auth", "shop", None]
    (only,) = status_page.groups(rows[:2], "team", "state")
    assert only["open"]
    assert only["value"] is None


def test_a_page_of_many_targets_sends_no_rows_of_collapsed_groups() -> None:
    rows = [
        {
            "name": f"t{i:04d}",
            "state": "down" if i == 7 else "up",
            "labels": {"service": f"s{i % 3}"},
        }
        for i in range(status_page.INLINE_ROWS + 1)
    ]
    grouped = status_page.groups(rows, "service", "state", {"sort": "name"})
    assert [(g["value"], g["open"], len(g["items"]), g["size"]) for g in grouped] == [
        ("s1", True, 334, 334),
        ("s0", False, 0, 334),
        ("s2", False, 0, 333),
    ]
    assert grouped[1]["link"] == "?sort=name&group=s0"
    healthy = [{**row, "state": "up", "labels": {"service": "s1"}} for row in rows]
    (alone,) = status_page.groups(healthy, "service", "state", {"group": "s1"}, expand=True)
    assert (alone["open"], len(alone["items"])) == (True, len(rows))


def test_open_groups_send_no_more_rows_than_the_page_holds() -> None:
    """Rows of open groups, in page order, while they fit in ``INLINE_ROWS``; a group that does
    not fit links to its own page, and a smaller one after it still shows its rows."""
    limit = status_page.INLINE_ROWS
    sizes = {"a": limit // 2, "b": limit // 2 + 1, "c": limit // 2 - 1, "d": 5}
    rows = [
        {"name": f"{service}{i:04d}", "state": "down", "labels": {"service": service}}
        for service, size in sizes.items()
        for i in range(size)
    ]
    grouped = status_page.groups(rows, "service", "state")
    assert [(g["value"], g["open"], len(g["items"])) for g in grouped] == [
        ("a", True, limit // 2),
        ("b", True, 0),
        ("c", True, limit // 2 - 1),
        ("d", True, 0),
    ]
    assert grouped[1]["link"] == "?group=b"
    one = [{**row, "state": "up", "labels": {}} for row in rows[: limit + 1]]
    (alone,) = status_page.groups(one, "service", "state")
    assert (alone["open"], alone["items"], alone["link"]) == (True, [], "?group=")
    (chosen,) = status_page.groups(one, "service", "state", {"group": ""}, expand=True)
    assert len(chosen["items"]) == limit + 1
