"""Secrets are redacted by where they came from: a value from a file or ``${VAR}`` is hidden
wherever it lands, query parameters of the documented list are masked, and headers whose names
say so are hidden too; on the unauthenticated pages, the API and the probe command."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from exporter import config
from exporter.app import create_app
from exporter.redaction import REDACTED, redact_url
from exporter.runtime import Options
from exporter.status import views

SECRETS = {
    "query-api-key": "qk-7f3a9",
    "query-token": "qt-55e1",
    "x-auth": "xa-9911",
    "x-api-pass": "xp-2231",
    "x-signature": "xs-8870",
    "header-file": "hf-4417",
    "environment": "env-6230",
    "path-environment": "pe-7193",
}

CONFIG = """
targets:
  - name: api
    kind: http
    url: "http://127.0.0.1:9/v1/${PATH_SECRET}/orders?api_key=qk-7f3a9&token=qt-55e1&limit=1"
    interval: 1h
    http:
      headers:
        X-Auth: xa-9911
        X-Api-Pass: xp-2231
        X-Signature: xs-8870
        X-Tenant: "${TENANT}"
        Accept: application/json
      header_files: {X-Partner: partner.secret}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> config.Config:
    (tmp_path / "partner.secret").write_text("hf-4417\n")
    path = tmp_path / "lookout.yml"
    path.write_text(CONFIG)
    return config.load(str(path), {"TENANT": "env-6230", "PATH_SECRET": "pe-7193"})


def test_the_request_shows_no_secret_of_any_source(loaded: config.Config) -> None:
    """What the API's request, the pages and ``lookout-exporter probe`` all show."""
    request = views.request_json(loaded.targets[0])
    shown = repr(request)
    for name, secret in SECRETS.items():
        assert secret not in shown, name
    assert request["endpoint"] == (
        f"http://127.0.0.1:9/v1/{REDACTED}/orders?api_key={REDACTED}&token={REDACTED}&limit=1"
    )
    values = {h["name"]: h["value"] for h in request["headers"]}
    assert values == {
        "X-Auth": REDACTED,
        "X-Api-Pass": REDACTED,
        "X-Signature": REDACTED,
        "X-Tenant": REDACTED,  # an innocent name, but its value came from the environment
        "Accept": "application/json",
        "X-Partner": REDACTED,  # read from a file
    }


async def test_no_page_or_api_answer_shows_a_secret(
    aiohttp_client: AiohttpClient, loaded: config.Config, tmp_path: Path
) -> None:
    app = create_app(Options(storage_path=tmp_path / "data"), loaded)
    client = await aiohttp_client(app)
    for url in ("/", "/targets/api", "/api/v1/targets", "/api/v1/targets/api"):
        response = await client.get(url)
        assert response.status == 200, url
        text = await response.text()
        for name, secret in SECRETS.items():
            assert secret not in text, (url, name)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://h.test/x?q=1", "https://h.test/x?q=1", id="nothing-secret"),
        pytest.param(
            "https://h.test/x?access_token=a&sig=b&X-Amz-Signature=c&page=2",
            f"https://h.test/x?access_token={REDACTED}&sig={REDACTED}"
            f"&X-Amz-Signature={REDACTED}&page=2",
            id="listed-parameters",
        ),
        pytest.param(
            "https://u:pw@h.test/x", f"https://u:{REDACTED}@h.test/x", id="user-info-password"
        ),
    ],
)
def test_urls_are_masked_by_the_documented_list(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_value_from_the_environment_is_masked_in_path_and_query() -> None:
    assert redact_url("https://h.test/a/s3cr3t/b?x=s3cr3t", ["s3cr3t"]) == (
        f"https://h.test/a/{REDACTED}/b?x={REDACTED}"
    )
