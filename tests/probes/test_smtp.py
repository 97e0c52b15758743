"""The smtp prober against aiosmtpd (with and without STARTTLS, implicit TLS, AUTH) and against
hand-written hostile SMTP servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import config
from exporter.config import ConfigError, Source
from exporter.probes.smtp import SmtpSpec
from exporter.reasons import Reason
from tests.probes.conftest import PASSWORD, USER, Pki, Prober, fingerprint
from tests.probes.support import (
    assert_fails_in_time_without_leaks,
    endless_banner,
    loopback_target,
    never_speaks,
    resets_mid_handshake,
)
from tests.servers import Servers

StartSmtp = Callable[..., Awaitable[int]]


def smtp_target(port: int, pki: Pki | None = None, **smtp: Any) -> dict[str, Any]:
    if pki is not None:
        smtp["tls"] = {"ca_file": str(pki.ca_file), **smtp.get("tls", {})}
    return loopback_target("smtp", port, smtp)


async def test_plain_conversation_passes_when_starttls_is_optional(
    probe: Prober, smtp_server: StartSmtp
) -> None:
    port = await smtp_server()
    result = await probe(smtp_target(port))
    assert result.success, result.message
    assert set(dict(result.phases)) == {"connect", "banner", "ehlo"}
    checks = {c.name: c for c in result.checks}
    assert checks["starttls"].detail == "not offered (optional)"
    assert checks["quit"].passed
    assert result.chain == ()


async def test_starttls_upgrades_and_exports_the_certificate(
    probe: Prober, smtp_server: StartSmtp, pki: Pki
) -> None:
    port = await smtp_server(starttls=pki.valid)
    result = await probe(smtp_target(port, pki, starttls="required"))
    assert result.success, result.message
    assert set(dict(result.phases)) == {"connect", "banner", "ehlo", "starttls", "tls"}
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)
    assert result.tls_version == "TLSv1.3"
    text = probe.metrics(result)
    assert 'lookout_tls_cert_expiry_timestamp_seconds{target="dependency",kind="smtp"}' in text


async def test_required_starttls_not_offered_fails_as_starttls(
    probe: Prober, smtp_server: StartSmtp
) -> None:
    port = await smtp_server()
    result = await probe(smtp_target(port, starttls="required"))
    assert result.reason is Reason.STARTTLS
    assert result.message == "the server does not offer STARTTLS"


async def test_starttls_never_stays_in_plaintext(
    probe: Prober, smtp_server: StartSmtp, pki: Pki
) -> None:
    port = await smtp_server(starttls=pki.valid)
    result = await probe(smtp_target(port, starttls="never"))
    assert result.success, result.message
    assert result.tls_version is None
    assert "starttls" not in dict(result.phases)


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        pytest.param("expired", Reason.CERT_EXPIRED, id="expired"),
        pytest.param("not_yet_valid", Reason.CERT_NOT_YET_VALID, id="not-yet-valid"),
        pytest.param("wrong_host", Reason.CERT_HOSTNAME, id="wrong-host"),
        pytest.param("untrusted", Reason.CERT_INVALID, id="untrusted"),
    ],
)
async def test_bad_certificate_after_starttls_keeps_the_chain(
    probe: Prober, smtp_server: StartSmtp, pki: Pki, cert: str, reason: Reason
) -> None:
    port = await smtp_server(starttls=getattr(pki, cert))
    result = await probe(smtp_target(port, pki))
    assert result.reason is reason, result.message
    assert result.chain[0].fingerprint_sha256 == fingerprint(getattr(pki, cert))


async def test_implicit_tls_times_tls_and_banner_apart(
    probe: Prober, smtp_server: StartSmtp, pki: Pki
) -> None:
    port = await smtp_server(implicit=pki.valid)
    result = await probe(smtp_target(port, pki, implicit_tls=True))
    assert result.success, result.message
    phases = dict(result.phases)
    assert set(phases) == {"connect", "tls", "banner", "ehlo"}
    assert result.tls_version is not None
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)


async def test_implicit_tls_with_a_wrong_host_fails_as_cert_hostname(
    probe: Prober, smtp_server: StartSmtp, pki: Pki
) -> None:
    port = await smtp_server(implicit=pki.wrong_host)
    result = await probe(smtp_target(port, pki, implicit_tls=True))
    assert result.reason is Reason.CERT_HOSTNAME
    assert result.cert_expiry is not None


async def test_auth_with_a_password_from_the_environment_passes(
    probe: Prober, smtp_server: StartSmtp, pki: Pki
) -> None:
    port = await smtp_server(starttls=pki.valid, auth=True)
    auth = {"username": USER, "password": "${SMTP_PASSWORD}"}
    result = await probe(smtp_target(port, pki, auth=auth), {"SMTP_PASSWORD": PASSWORD})
    assert result.success, result.message
    assert "auth" in dict(result.phases)


async def test_auth_with_a_password_file_passes(
    probe: Prober, smtp_server: StartSmtp, tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    port = await smtp_server(auth=True)
    auth = {"username": USER, "password_file": str(secret)}
    result = await probe(smtp_target(port, auth=auth))
    assert result.success, result.message


async def test_wrong_password_fails_as_smtp_auth(probe: Prober, smtp_server: StartSmtp) -> None:
    port = await smtp_server(auth=True)
    result = await probe(smtp_target(port, auth={"username": USER, "password": "wrong"}))
    assert result.reason is Reason.SMTP_AUTH
    assert "535" in result.message


async def test_auth_not_offered_fails_as_smtp_auth(probe: Prober, smtp_server: StartSmtp) -> None:
    port = await smtp_server()
    result = await probe(smtp_target(port, auth={"username": USER, "password": PASSWORD}))
    assert result.reason is Reason.SMTP_AUTH
    assert "not supported" in result.message


def scripted(*replies: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """An SMTP server that sends the greeting, then one reply per command it reads."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting, *answers = replies
        writer.write(greeting)
        await writer.drain()
        for answer in answers:
            if not await reader.readline():
                return
            writer.write(answer)
            await writer.drain()
        await reader.read()

    return serve


@pytest.mark.parametrize(
    ("server", "reason", "message"),
    [
        pytest.param(
            scripted(b"554 5.3.2 not accepting connections\r\n"),
            Reason.SMTP_BANNER,
            "greeting 554",
            id="banner-554",
        ),
        pytest.param(
            scripted(b"hello there\r\n"), Reason.SMTP_BANNER, "invalid greeting", id="garbage"
        ),
        pytest.param(
            scripted(b"220 mx.test\r\n", b"502 5.5.1 EHLO not implemented\r\n"),
            Reason.SMTP_EHLO,
            "EHLO answered 502",
            id="ehlo-rejected",
        ),
        pytest.param(
            scripted(
                b"220 mx.test\r\n",
                b"250-mx.test\r\n250 STARTTLS\r\n",
                b"454 4.7.0 TLS not available due to temporary reason\r\n",
            ),
            Reason.STARTTLS,
            "STARTTLS answered 454",
            id="starttls-rejected",
        ),
    ],
)
async def test_server_answers_fail_with_the_reason_of_their_step(
    probe: Prober, servers: Servers, server: Any, reason: Reason, message: str
) -> None:
    port = await servers.start(server)
    result = await probe(smtp_target(port))
    assert result.reason is reason, result.message
    assert message in result.message


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


HOSTILE = {
    "never-speaks": (never_speaks, False, Reason.TIMEOUT),
    "speaks-garbage": (scripted(b"\x00\xff garbage\r\n"), False, Reason.SMTP_BANNER),
    "endless-banner": (endless_banner, False, Reason.SMTP_BANNER),
    "hangs-up": (hangs_up, False, Reason.RESET),
    "resets-mid-handshake": (resets_mid_handshake, True, Reason.RESET),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_server_fails_in_time_without_leaking_tasks_or_sockets(
    probe: Prober,
    servers: Servers,
    pki: Pki,
    case: str,
    tasks_and_fds: Callable[[], tuple[int, int]],
) -> None:
    handler, implicit_tls, reason = HOSTILE[case]
    port = await servers.start(handler)
    target = smtp_target(port, pki, implicit_tls=implicit_tls)
    await assert_fails_in_time_without_leaks(probe, target, reason, tasks_and_fds)


async def test_unanswered_quit_times_out_naming_quit(probe: Prober, servers: Servers) -> None:
    port = await servers.start(scripted(b"220 mx.test\r\n", b"250 mx.test\r\n"))
    result = await probe({**smtp_target(port), "timeout": "200ms"})
    assert result.reason is Reason.TIMEOUT
    assert result.message == "no result within 200ms during QUIT"


async def test_never_speaking_server_times_out_during_the_banner(
    probe: Prober, servers: Servers
) -> None:
    port = await servers.start(never_speaks)
    result = await probe({**smtp_target(port), "timeout": "100ms"})
    assert result.message == "no result within 100ms during banner"


def smtp_spec(address: str, **smtp: Any) -> SmtpSpec:
    text = yaml.safe_dump(
        {"targets": [{"name": "s", "kind": "smtp", "address": address, "smtp": smtp}]}
    )
    spec = config.load_text(text, Source("lookout.yml", Path.cwd()), {}).targets[0].spec
    assert isinstance(spec, SmtpSpec)
    return spec


def test_port_465_means_implicit_tls_and_other_ports_do_not() -> None:
    assert smtp_spec("smtp.example:465").implicit_tls
    assert smtp_spec("smtp.example:465").starttls == "never"
    assert not smtp_spec("smtp.example:587").implicit_tls
    assert smtp_spec("smtp.example:587").starttls == "optional"
    assert not smtp_spec("smtp.example:465", implicit_tls=False).implicit_tls


def test_starttls_with_implicit_tls_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        smtp_spec("smtp.example:465", starttls="required")
    assert "targets[0].smtp.starttls: starttls: required cannot be used with implicit TLS" in str(
        caught.value
    )


def test_password_and_password_file_together_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        smtp_spec("smtp.example:587", auth={"username": "u", "password": "p", "password_file": "f"})
    assert "keys 'password' and 'password_file' cannot be used together" in str(caught.value)
