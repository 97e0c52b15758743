"""The domain prober against a loopback RDAP server answering RFC 9083 documents: registered,
expiring, not found, rate limited; the bootstrap file (packaged, or the config's) picks it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.config import ConfigError
from exporter.probes.domain import BOOTSTRAP_FILE, DEFAULT_INTERVAL, DomainObservation
from exporter.reasons import Reason
from tests.probes.conftest import Pki, Prober

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
LATER = NOW + datetime.timedelta(days=400)
SOON = NOW + datetime.timedelta(days=5)
ASKED = web.AppKey("asked", list[tuple[str, str | None]])


def domain_object(name: str, expires: datetime.datetime) -> dict[str, Any]:
    """An RDAP domain object as registries answer it (RFC 9083, section 5.3)."""
    return {
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_1"],
        "objectClassName": "domain",
        "handle": "2336799_DOMAIN_COM-VRSN",
        "ldhName": name.upper(),
        "status": ["client transfer prohibited", "active"],
        "events": [
            {"eventAction": "registration", "eventDate": "1995-08-14T04:00:00Z"},
            {"eventAction": "expiration", "eventDate": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
            {"eventAction": "last update of RDAP database", "eventDate": "2026-01-01T00:00:00Z"},
        ],
        "entities": [
            {
                "objectClassName": "entity",
                "handle": "376",
                "roles": ["registrar"],
                "publicIds": [{"type": "IANA Registrar ID", "identifier": "376"}],
                "vcardArray": [
                    "vcard",
                    [
                        ["version", {}, "text", "4.0"],
                        ["fn", {}, "text", "RESERVED-Internet Assigned Numbers Authority"],
                    ],
                ],
            }
        ],
        "nameservers": [{"objectClassName": "nameserver", "ldhName": "A.IANA-SERVERS.NET"}],
    }


async def _domain(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request.app[ASKED].append((name, request.headers.get("Accept")))
    label = name.split(".")[0]
    if label == "missing":
        error = {"errorCode": 404, "title": "Not Found", "description": [f"{name} not found"]}
        return web.json_response(error, status=404, content_type="application/rdap+json")
    if label == "busy":
        error = {"errorCode": 429, "title": "Too Many Requests"}
        return web.json_response(
            error, status=429, headers={"Retry-After": "120"}, content_type="application/rdap+json"
        )
    if label == "broken":
        return web.Response(text="<html>oops</html>", content_type="text/html")
    if label == "entity":
        return web.json_response({"objectClassName": "entity", "handle": "X"})
    if label == "noexpiry":
        document = domain_object(name, LATER)
        document["events"] = document["events"][:1]
        return web.json_response(document, content_type="application/rdap+json")
    expires = SOON if label == "expiring" else LATER
    return web.json_response(domain_object(name, expires), content_type="application/rdap+json")


def rdap_app() -> web.Application:
    app = web.Application()
    app[ASKED] = []
    app.router.add_get("/rdap/domain/{name}", _domain)
    return app


@pytest.fixture
async def rdap(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(rdap_app())
    return server


def bootstrap(tmp_path: Path, url: str) -> Path:
    """An RFC 9224 bootstrap file naming ``url`` for .test and .example.test's registry."""
    path = tmp_path / "dns.json"
    document = {
        "version": "1.0",
        "publication": NOW.isoformat(),
        "description": "RDAP bootstrap file for Domain Name System registrations",
        "services": [[["other"], ["https://rdap.other.invalid/"]], [["test"], [url]]],
    }
    path.write_text(json.dumps(document))
    return path


def domain_target(tmp_path: Path, server: TestServer, name: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.port}/rdap/"
    return {
        "kind": "domain",
        "domain": name,
        "rdap": {"bootstrap_file": str(bootstrap(tmp_path, url))},
    }


async def test_a_registered_domain_exports_expiry_registrar_and_status(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    result = await probe(domain_target(tmp_path, rdap, "Example.TEST."))
    assert result.success, result.message
    assert result.observation == DomainObservation(
        200,
        LATER.timestamp(),
        "RESERVED-Internet Assigned Numbers Authority",
        ("active", "client transfer prohibited"),
    )
    assert rdap.app[ASKED] == [("example.test", "application/rdap+json")]
    assert {"connect", "processing", "transfer"} <= dict(result.phases).keys()
    text = probe.metrics(result)
    assert (
        f'lookout_domain_expiry_timestamp_seconds{{target="dependency",kind="domain"}} '
        f"{int(LATER.timestamp())}" in text
    )
    assert (
        'lookout_domain_info{target="dependency",kind="domain",'
        'registrar="RESERVED-Internet Assigned Numbers Authority",'
        'status="active,client transfer prohibited"} 1' in text
    )


async def test_an_expiring_domain_still_passes_and_shows_its_expiry(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    result = await probe(domain_target(tmp_path, rdap, "expiring.test"))
    assert result.success, result.message
    assert result.observation is not None
    assert result.observation.json()["domain_expiry"] == SOON.timestamp()
    assert [c.detail for c in result.checks if c.name == "expiration"] == ["expires in 5.0 days"]


async def test_not_found_fails_as_domain_not_found(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    result = await probe(domain_target(tmp_path, rdap, "missing.test"))
    assert result.reason is Reason.DOMAIN_NOT_FOUND
    assert result.message == "the registry knows no domain missing.test (404)"
    assert result.status_code == 404
    assert "lookout_domain_expiry_timestamp_seconds" not in probe.metrics(result)


async def test_rate_limiting_fails_as_rate_limited_with_retry_after(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    result = await probe(domain_target(tmp_path, rdap, "busy.test"))
    assert result.reason is Reason.RATE_LIMITED
    assert result.message == "the RDAP server is rate limiting (429, retry after 120)"


@pytest.mark.parametrize(
    ("name", "reason", "message"),
    [
        pytest.param("broken.test", Reason.JSON, "the RDAP answer is not JSON", id="html"),
        pytest.param(
            "entity.test", Reason.PROTOCOL, "the answer is not an RDAP domain", id="entity"
        ),
    ],
)
async def test_an_answer_that_is_not_a_domain_object_fails(
    probe: Prober, rdap: TestServer, tmp_path: Path, name: str, reason: Reason, message: str
) -> None:
    result = await probe(domain_target(tmp_path, rdap, name))
    assert result.reason is reason
    assert result.message.startswith(message)


async def test_a_registry_without_an_expiration_event_passes_without_expiry(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    result = await probe(domain_target(tmp_path, rdap, "noexpiry.test"))
    assert result.success, result.message
    assert "lookout_domain_expiry_timestamp_seconds" not in probe.metrics(result)
    assert "lookout_domain_info" in probe.metrics(result)


async def test_https_rdap_server_with_the_configured_ca(
    probe: Prober, aiohttp_server: Any, pki: Pki
) -> None:
    server = await aiohttp_server(rdap_app(), ssl=Pki.server_context(pki.valid))
    target = {
        "kind": "domain",
        "domain": "example.test",
        "rdap": {
            "server": f"https://127.0.0.1:{server.port}/rdap",
            "tls": {"ca_file": str(pki.ca_file)},
        },
    }
    result = await probe(target)
    assert result.success, result.message
    assert "tls" in dict(result.phases)


async def test_the_default_interval_is_hours_unless_the_target_sets_one(
    probe: Prober, rdap: TestServer, tmp_path: Path
) -> None:
    await probe(domain_target(tmp_path, rdap, "example.test"))
    assert probe.target is not None
    assert probe.target.interval == DEFAULT_INTERVAL
    await probe({**domain_target(tmp_path, rdap, "example.test"), "interval": "1h"})
    assert probe.target.interval == 3600


async def test_the_packaged_bootstrap_file_finds_the_registries(probe: Prober) -> None:
    document = json.loads(BOOTSTRAP_FILE.read_text())
    assert document["description"] == "RDAP bootstrap file for Domain Name System registrations"
    from exporter.probes.domain import _bootstrap, rdap_server

    table = _bootstrap(BOOTSTRAP_FILE, ())
    assert rdap_server("example.com", table) == "https://rdap.verisign.com/com/v1/"
    assert rdap_server("shop.example.org", table) == (
        "https://rdap.publicinterestregistry.net/rdap/org/"
    )
    # Loading a target is enough: the bootstrap lookup happens at load, with no fetch.
    with pytest.raises(ConfigError, match=r"targets\[0\]\.domain: no RDAP server for \.invalid"):
        await probe({"kind": "domain", "domain": "example.invalid"})


async def test_a_broken_bootstrap_file_is_a_config_error(probe: Prober, tmp_path: Path) -> None:
    path = tmp_path / "dns.json"
    path.write_text('{"services": 7}')
    with pytest.raises(
        ConfigError, match=r"targets\[0\]\.rdap\.bootstrap_file: .* is not an RDAP bootstrap file"
    ):
        await probe({"kind": "domain", "domain": "a.test", "rdap": {"bootstrap_file": str(path)}})
    with pytest.raises(ConfigError, match=r"targets\[0\]\.rdap\.bootstrap_file: cannot read file"):
        await probe(
            {"kind": "domain", "domain": "a.test", "rdap": {"bootstrap_file": str(tmp_path / "x")}}
        )
