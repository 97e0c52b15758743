"""The tcp prober against loopback servers: connect, TLS, dialogs, STARTTLS and hostile peers."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from exporter.reasons import Reason
from tests.probes.conftest import Pki, Prober, fingerprint
from tests.probes.support import loopback_target, says
from tests.processes import free_port
from tests.servers import Servers


async def redis_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers PING with +PONG, line by line, like Redis' inline commands."""
    while line := await reader.readline():
        if line.strip().upper() == b"PING":
            writer.write(b"+PONG\r\n")
        else:
            writer.write(b"-ERR unknown command\r\n")
        await writer.drain()


banner = says(b"SSH-2.0-OpenSSH_9.6\r\n")


def tcp_target(port: int, **tcp: Any) -> dict[str, Any]:
    return loopback_target("tcp", port, tcp)


async def test_connect_only_succeeds_with_resolve_and_connect_phases(
    probe: Prober, servers: Servers
) -> None:
    port = await servers.start(banner)
    result = await probe(
        {"kind": "tcp", "address": f"localhost:{port}", "tcp": {"ip_family": "ip4"}}
    )
    assert result.success, result.message
    phases = dict(result.phases)
    assert set(phases) == {"resolve", "connect"}
    assert all(seconds >= 0 for seconds in phases.values())


async def test_redis_ping_pong_dialog_passes(probe: Prober, servers: Servers) -> None:
    port = await servers.start(redis_like)
    dialog = [{"send": "PING"}, {"expect": r"^\+PONG$"}]
    result = await probe(tcp_target(port, dialog=dialog))
    assert result.success, result.message
    assert "dialog" in dict(result.phases)
    assert result.checks[-1].passed
    assert result.checks[-1].detail == "matched '+PONG'"


async def test_send_ending_in_newline_gets_no_second_line_ending(
    probe: Prober, servers: Servers
) -> None:
    seen: list[bytes] = []
    done = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readexactly(5))
        writer.write(b"ok\n")
        await writer.drain()
        seen.append(await reader.read())
        done.set()

    port = await servers.start(record)
    result = await probe(tcp_target(port, dialog=[{"send": "PING\n"}, {"expect": "^ok$"}]))
    assert result.success, result.message
    await asyncio.wait_for(done.wait(), 1)
    assert seen == [b"PING\n", b""]


async def test_banner_expect_matches_a_later_line(probe: Prober, servers: Servers) -> None:
    port = await servers.start(says(b"hello\r\nwelcome\r\n* OK IMAP4rev1 ready\r\n"))
    result = await probe(tcp_target(port, dialog=[{"expect": r"^\* OK .*ready$"}]))
    assert result.success, result.message


async def test_wrong_answer_fails_with_dialog_once_the_peer_closes(
    probe: Prober, servers: Servers
) -> None:
    async def wrong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"-ERR NOAUTH Authentication required.\r\n")
        await writer.drain()

    port = await servers.start(wrong)
    result = await probe(tcp_target(port, dialog=[{"send": "PING"}, {"expect": r"^\+PONG$"}]))
    assert result.reason is Reason.DIALOG
    assert "NOAUTH" in result.message
    assert "dialog step 2" in result.message


async def test_peer_closing_before_any_line_is_a_reset(probe: Prober, servers: Servers) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    port = await servers.start(hang_up)
    result = await probe(tcp_target(port, dialog=[{"expect": "anything"}]))
    assert result.reason is Reason.RESET


async def test_closed_port_is_refused(probe: Prober) -> None:
    result = await probe(tcp_target(free_port()))
    assert result.reason is Reason.REFUSED
    assert "refused" in result.message


async def test_unresolvable_name_is_a_dns_failure(probe: Prober) -> None:
    result = await probe({"kind": "tcp", "address": "bad..name:80"})
    assert result.reason is Reason.DNS
    assert "bad..name" in result.message


async def test_address_of_the_wrong_family_is_a_connect_failure(probe: Prober) -> None:
    result = await probe(tcp_target(free_port(), ip_family="ip6"))
    assert result.reason is Reason.CONNECT


async def test_silent_peer_times_out_during_the_dialog(probe: Prober, servers: Servers) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    port = await servers.start(silent)
    result = await probe({**tcp_target(port, dialog=[{"expect": "^220"}]), "timeout": "300ms"})
    assert result.reason is Reason.TIMEOUT
    assert "during dialog" in result.message
    assert result.duration < 1


async def test_implicit_tls_then_dialog_records_chain_and_version(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await servers.start(redis_like, pki.server_context(pki.valid))
    tls = {"ca_file": str(pki.ca_file)}
    result = await probe(
        tcp_target(port, tls=tls, dialog=[{"send": "PING"}, {"expect": r"^\+PONG$"}])
    )
    assert result.success, result.message
    assert set(dict(result.phases)) == {"connect", "tls", "dialog"}
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert result.chain[0].fingerprint_sha256 == fingerprint(pki.valid)


async def test_implicit_tls_with_an_untrusted_chain_fails_but_keeps_the_chain(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    port = await servers.start(redis_like, pki.server_context(pki.untrusted))
    result = await probe(tcp_target(port, tls={"ca_file": str(pki.ca_file)}))
    assert result.reason is Reason.CERT_INVALID
    assert len(result.chain) == 1
    assert result.cert_expiry is not None


async def test_starttls_step_upgrades_in_the_middle_of_the_dialog(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    context = pki.server_context(pki.valid)

    async def imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK IMAP4rev1 ready\r\n")
        await writer.drain()
        assert await reader.readline() == b"a1 STARTTLS\r\n"
        writer.write(b"a1 OK Begin TLS negotiation now\r\n")
        await writer.drain()
        await writer.start_tls(context)
        assert await reader.readline() == b"a2 NOOP\r\n"
        writer.write(b"a2 OK NOOP completed\r\n")
        await writer.drain()
        await reader.read()

    port = await servers.start(imap)
    dialog = [
        {"expect": r"^\* OK"},
        {"send": "a1 STARTTLS"},
        {"expect": "^a1 OK"},
        {"starttls": {"ca_file": str(pki.ca_file), "server_name": "localhost"}},
        {"send": "a2 NOOP"},
        {"expect": "^a2 OK"},
    ]
    result = await probe(tcp_target(port, dialog=dialog))
    assert result.success, result.message
    assert result.tls_version is not None
    assert "tls" in dict(result.phases)


async def test_starttls_step_with_an_expired_certificate_fails_as_cert_expired(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    context = pki.server_context(pki.expired)

    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await writer.start_tls(context)

    port = await servers.start(upgrade)
    result = await probe(tcp_target(port, dialog=[{"starttls": {"ca_file": str(pki.ca_file)}}]))
    assert result.reason is Reason.CERT_EXPIRED
    assert result.cert_expiry is not None


@pytest.mark.parametrize(
    ("output", "expect", "message"),
    [
        pytest.param(b"x" * 4096, "^OK", "longer than", id="one-endless-line"),
        pytest.param(
            b"220-still talking\r\n" * 100, "^220 ", "first 65536 bytes", id="endless-lines"
        ),
    ],
)
async def test_endless_output_fails_as_dialog_at_its_limit_without_waiting_for_the_timeout(
    probe: Prober, servers: Servers, output: bytes, expect: str, message: str
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(output)
            await writer.drain()

    port = await servers.start(endless)
    result = await probe(tcp_target(port, dialog=[{"expect": expect}]))
    assert result.reason is Reason.DIALOG
    assert message in result.message


async def test_reset_during_the_tls_handshake_is_a_reset(
    probe: Prober, servers: Servers, pki: Pki
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the ClientHello has begun
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    port = await servers.start(reset)
    result = await probe(tcp_target(port, tls={"ca_file": str(pki.ca_file)}))
    assert result.reason is Reason.RESET
    assert result.duration < 1


async def test_garbage_instead_of_tls_is_a_tls_failure(probe: Prober, servers: Servers) -> None:
    port = await servers.start(says(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    result = await probe(tcp_target(port, tls=True))
    assert result.reason is Reason.TLS
