"""The tls prober: certificate checks, versions, STARTTLS negotiations and certificate metrics."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
import yaml

from exporter import config
from exporter.clock import SystemClock
from exporter.config import Source
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.reasons import Reason
from exporter.results import ProbeResult
from tests.probes.conftest import (
    NOW,
    Pki,
    Prober,
    blocking_tls_server,
    fingerprint,
    smtp_protocol,
)
from tests.probes.support import (
    assert_fails_in_time_without_leaks,
    endless_banner,
    loopback_target,
    never_speaks,
    resets_mid_handshake,
    says,
)
from tests.processes import free_port
from tests.servers import Servers


async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


def tls_target(port: int, pki: Pki | None = None, **settings: Any) -> dict[str, Any]:
    tls = {"ca_file": str(pki.ca_file)} if pki else {}
    return loopback_target("tls", port, {**tls, **settings})


async def tls_port(servers: Servers, pki: Pki, cert: trustme.LeafCert) -> int:
    return await servers.start(idle, pki.server_context(cert))


async def test_valid_chain_passes_and_records_chain_version_and_phases(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.valid)
    result = await probe(tls_target(port, pki))
    assert result.success, result.message
    assert set(dict(result.phases)) == {"connect", "tls"}
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)
    assert result.tls_version == "TLSv1.3"
    assert [c.name for c in result.checks] == ["chain", "hostname"]


async def test_metrics_show_expiry_identity_and_version(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.valid)
    result = await probe(tls_target(port, pki))
    text = probe.metrics(result)
    leaf = result.chain[0]
    assert 'lookout_tls_cert_expiry_timestamp_seconds{target="dependency",kind="tls"}' in text
    assert f'fingerprint_sha256="{leaf.fingerprint_sha256}"' in text
    assert 'lookout_tls_version_info{target="dependency",kind="tls",version="TLSv1.3"} 1' in text


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        pytest.param("expired", Reason.CERT_EXPIRED, id="expired"),
        pytest.param("not_yet_valid", Reason.CERT_NOT_YET_VALID, id="not-yet-valid"),
        pytest.param("wrong_host", Reason.CERT_HOSTNAME, id="wrong-host"),
        pytest.param("untrusted", Reason.CERT_INVALID, id="untrusted"),
    ],
)
async def test_bad_certificate_fails_with_its_reason_and_still_exports_the_chain(
    probe: Prober, servers: Servers, pki: Pki, cert: str, reason: Reason
) -> None:
    leaf: trustme.LeafCert = getattr(pki, cert)
    port = await tls_port(servers, pki, leaf)
    result = await probe(tls_target(port, pki))
    assert result.reason is reason
    assert result.chain[0].fingerprint_sha256 == fingerprint(leaf)
    text = probe.metrics(result)
    assert "lookout_tls_cert_expiry_timestamp_seconds{" in text
    assert "lookout_tls_cert_info{" in text


async def test_expired_certificate_exports_its_past_not_after(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.expired)
    result = await probe(tls_target(port, pki))
    assert result.cert_expiry is not None
    assert result.cert_expiry < NOW.timestamp()


async def test_system_cas_do_not_trust_a_private_ca(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.valid)
    result = await probe(tls_target(port))
    assert result.reason is Reason.CERT_INVALID


async def test_server_name_overrides_the_address_host(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.wrong_host)
    result = await probe(tls_target(port, pki, server_name="other.example"))
    assert result.success, result.message


async def test_certificate_expiring_within_valid_for_fails_as_cert_expiring(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.expiring)
    target = {**tls_target(port, pki), "expect": {"valid_for": "14d"}}
    result = await probe(target)
    assert result.reason is Reason.CERT_EXPIRING
    assert "must stay valid for 14 days" in result.message
    assert result.checks[-1].name == "valid_for"


async def test_certificate_valid_long_enough_passes_valid_for(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.expiring)
    result = await probe({**tls_target(port, pki), "expect": {"valid_for": "2d"}})
    assert result.success, result.message


async def test_skipped_verification_still_fails_an_expired_chain_on_valid_for(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await tls_port(servers, pki, pki.expired)
    target = tls_target(port, insecure_skip_verify=True)
    result = await probe({**target, "expect": {"valid_for": "1d"}})
    assert result.reason is Reason.CERT_EXPIRED
    assert result.checks[0].detail == "not verified (insecure_skip_verify)"


async def test_negotiated_version_is_reported(probe: Prober, servers: Servers, pki: Pki) -> None:
    context = pki.server_context(pki.valid, max_version=ssl.TLSVersion.TLSv1_2)
    port = await servers.start(idle, context)
    result = await probe(tls_target(port, pki, min_version="TLS1.2"))
    assert result.success, result.message
    assert result.tls_version == "TLSv1.2"
    assert result.checks[-1].detail == "negotiated TLSv1.2, minimum TLS1.2"


async def test_server_below_min_version_fails_as_tls_version(probe: Prober, pki: Pki) -> None:
    context = pki.server_context(pki.valid, max_version=ssl.TLSVersion.TLSv1_2)
    with blocking_tls_server(context) as port:
        result = await probe(tls_target(port, pki, min_version="TLS1.3"))
    assert result.reason is Reason.TLS_VERSION
    assert result.checks[-1].name == "handshake"


async def test_a_server_hanging_up_after_its_certificate_rejected_the_handshake(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    """A TLS 1.2 server that requires a client certificate and gets none hangs up (asyncio's
    does, without an alert) after presenting its own: tls, as the HTTP prober says, not reset."""
    context = pki.server_context(pki.valid, max_version=ssl.TLSVersion.TLSv1_2)
    context.load_verify_locations(str(pki.ca_file))
    context.verify_mode = ssl.CERT_REQUIRED
    port = await servers.start(idle, context)
    result = await probe(tls_target(port, pki))
    assert result.reason is Reason.TLS
    assert result.message.startswith(
        "TLS handshake failed: the server closed the connection after presenting its certificate"
    )
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)


# --- STARTTLS ----------------------------------------------------------------------------------


def starttls_server(
    protocol: str, context: ssl.SSLContext
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A minimal server for ``protocol`` that upgrades to TLS when asked the usual way."""

    async def say(writer: asyncio.StreamWriter, text: bytes) -> None:
        writer.write(text)
        await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if protocol == "smtp":
            await say(writer, b"220-mx.test ESMTP\r\n220 ready\r\n")
            assert (await reader.readline()).startswith(b"EHLO ")
            await say(writer, b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            assert await reader.readline() == b"STARTTLS\r\n"
            await say(writer, b"220 2.0.0 Ready to start TLS\r\n")
        elif protocol == "imap":
            await say(writer, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
            assert await reader.readline() == b"L1 STARTTLS\r\n"
            await say(writer, b"* NOTE untagged first\r\nL1 OK Begin TLS negotiation now\r\n")
        elif protocol == "pop3":
            await say(writer, b"+OK POP3 ready\r\n")
            assert await reader.readline() == b"STLS\r\n"
            await say(writer, b"+OK Begin TLS negotiation\r\n")
        elif protocol == "ftp":
            await say(writer, b"220-Welcome\r\n this is a free-form line\r\n220 FTP ready\r\n")
            assert await reader.readline() == b"AUTH TLS\r\n"
            await say(writer, b"234 Proceed with negotiation.\r\n")
        else:
            assert await reader.readexactly(8) == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
            await say(writer, b"S")
        await writer.start_tls(context)
        await reader.read()

    return serve


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3", "ftp", "postgres"])
async def test_starttls_negotiation_then_handshake_passes(
    probe: Prober, servers: Servers, pki: Pki, protocol: str
) -> None:
    port = await servers.start(starttls_server(protocol, pki.server_context(pki.valid)))
    result = await probe(tls_target(port, pki, starttls=protocol))
    assert result.success, result.message
    assert set(dict(result.phases)) == {"connect", "starttls", "tls"}
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)


async def test_starttls_after_negotiation_still_reports_an_expired_chain(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await servers.start(starttls_server("postgres", pki.server_context(pki.expired)))
    result = await probe(tls_target(port, pki, starttls="postgres"))
    assert result.reason is Reason.CERT_EXPIRED
    assert result.cert_expiry is not None


REFUSALS = {
    "smtp-not-offered": (
        "smtp",
        b"220 mx.test\r\n",
        b"250-mx.test\r\n250 PIPELINING\r\n",
        "does not offer STARTTLS",
    ),
    "smtp-rejected": (
        "smtp",
        b"220 mx.test\r\n",
        b"250-mx.test\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n",
        "STARTTLS answered '454 4.7.0 TLS not available'",
    ),
    "smtp-bad-greeting": ("smtp", b"554 go away\r\n", b"", "expected 220"),
    "imap-no": ("imap", b"* OK ready\r\n", b"L1 NO not now\r\n", "answered 'L1 NO not now'"),
    "pop3-err": ("pop3", b"+OK ready\r\n", b"-ERR no TLS\r\n", "STLS answered"),
    "ftp-500": ("ftp", b"220 ready\r\n", b"500 unknown command\r\n", "AUTH TLS answered"),
    "postgres-no-ssl": ("postgres", b"", b"N", "answered N"),
    "garbage-greeting": ("smtp", b"HTTP/1.1 400 Bad Request\r\n", b"", "not a numbered reply"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refused_starttls_fails_as_starttls(
    probe: Prober, servers: Servers, pki: Pki, case: str
) -> None:
    protocol, greeting, answers, message = REFUSALS[case]

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read(1)
        writer.write(answers)
        await writer.drain()
        await reader.read()

    port = await servers.start(refuse)
    result = await probe(tls_target(port, pki, starttls=protocol))
    assert result.reason is Reason.STARTTLS, result.message
    assert message in result.message
    assert result.chain == ()


# --- hostile servers ---------------------------------------------------------------------------


HOSTILE = {
    "never-speaks": (never_speaks, None, Reason.TIMEOUT),
    "speaks-garbage": (
        says(b"\x16\x03\x01\x00\x05garbage that is not a ServerHello\r\n"),
        None,
        Reason.TLS,
    ),
    "endless-banner": (endless_banner, "smtp", Reason.STARTTLS),
    "resets-mid-handshake": (resets_mid_handshake, None, Reason.RESET),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_server_fails_in_time_without_leaking_tasks_or_sockets(
    probe: Prober,
    servers: Servers,
    pki: Pki,
    case: str,
    tasks_and_fds: Callable[[], tuple[int, int]],
) -> None:
    handler, starttls, reason = HOSTILE[case]
    port = await servers.start(handler)
    target = tls_target(port, pki, **({"starttls": starttls} if starttls else {}))
    await assert_fails_in_time_without_leaks(probe, target, reason, tasks_and_fds)


async def test_closed_port_is_refused(probe: Prober, pki: Pki) -> None:
    result = await probe(tls_target(free_port(), pki))
    assert result.reason is Reason.REFUSED


def test_chains_are_seen_under_uvloop_too(pki: Pki) -> None:
    """uvloop (the exporter's loop where installed) runs a handshake in the context its
    connection was made in; the chain must still reach the result for tls, tcp and smtp."""

    async def scenario() -> list[ProbeResult]:
        servers = Servers()
        port = await servers.start(idle, pki.server_context(pki.expired))
        smtp = await asyncio.get_running_loop().create_server(
            lambda: smtp_protocol(pki.expired), "127.0.0.1", 0
        )
        smtp_port = smtp.sockets[0].getsockname()[1]
        tls = {"ca_file": str(pki.ca_file)}
        targets = [
            {"name": "tls", "kind": "tls", "address": f"127.0.0.1:{port}", "tls": tls},
            {"name": "tcp", "kind": "tcp", "address": f"127.0.0.1:{port}", "tcp": {"tls": tls}},
            {
                "name": "smtp",
                "kind": "smtp",
                "address": f"127.0.0.1:{smtp_port}",
                "smtp": {"tls": tls},
            },
        ]
        text = yaml.safe_dump({"targets": targets})
        loaded = config.load_text(text, Source("lookout.yml", Path.cwd()), {})
        clients = SharedClients()
        try:
            return [await run_probe(t, clients, SystemClock()) for t in loaded.targets]
        finally:
            await clients.close()
            smtp.close()
            await smtp.wait_closed()
            await servers.stop()

    results = uvloop.run(scenario())
    assert [r.reason for r in results] == [Reason.CERT_EXPIRED] * 3
    assert [r.chain[0].fingerprint_sha256 for r in results] == [fingerprint(pki.expired)] * 3
