"""Loopback servers and certificates for the dependency probe tests (``servers`` comes from
``tests/conftest.py``).

- ``pki``: a trustme CA and its certificates (valid, expired, not yet valid, wrong host,
  expiring soon, and one from a CA the probes do not trust), with the CA bundle as a file.
- ``blocking_tls_server``: a one-handshake OpenSSL server in a thread, which (unlike asyncio's)
  sends its alert when it rejects a handshake; the HTTP prober tests use it too.
- ``dns_server``: a DNS server on 127.0.0.1 (UDP and TCP) answering from dnspython-built
  messages, with NXDOMAIN, SERVFAIL, truncated, slow, silent, garbage and (TCP) hang-up names.
- ``smtp_server``: aiosmtpd on 127.0.0.1 in the test's event loop, with or without STARTTLS,
  implicit TLS and AUTH.
- ``probe``: runs one target, given as its config mapping, through the real config loader and
  ``run_probe``, like the scheduler does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
import trustme
import yaml
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter import config
from exporter.clock import SystemClock
from exporter.collectors.probes import CONFIG_FAMILIES, FAMILIES, render_config, render_target
from exporter.probes.clients import SharedClients
from exporter.probes.runner import run_probe
from exporter.results import ProbeResult
from exporter.stats import ProbeStats
from exporter.targets import Target
from tests.servers import Servers

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    valid: trustme.LeafCert
    expired: trustme.LeafCert
    not_yet_valid: trustme.LeafCert
    wrong_host: trustme.LeafCert
    expiring: trustme.LeafCert
    untrusted: trustme.LeafCert

    @staticmethod
    def server_context(
        cert: trustme.LeafCert, max_version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        if max_version is not None:
            context.maximum_version = max_version
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    hosts = ("127.0.0.1", "localhost")
    return Pki(
        ca=ca,
        ca_file=ca_file,
        valid=ca.issue_cert(*hosts),
        expired=ca.issue_cert(*hosts, not_before=NOW - 30 * DAY, not_after=NOW - DAY),
        not_yet_valid=ca.issue_cert(*hosts, not_before=NOW + DAY, not_after=NOW + 30 * DAY),
        wrong_host=ca.issue_cert("other.example"),
        expiring=ca.issue_cert(*hosts, not_before=NOW - DAY, not_after=NOW + 3 * DAY),
        untrusted=trustme.CA().issue_cert(*hosts),
    )


@contextlib.contextmanager
def blocking_tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """An OpenSSL server in a thread: unlike asyncio's, it sends its alert when it rejects."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        with (
            contextlib.suppress(OSError),
            listener.accept()[0] as conn,
            context.wrap_socket(conn, server_side=True),
        ):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()


def fingerprint(cert: trustme.LeafCert) -> str:
    """SHA-256 of the leaf certificate's DER, as ``lookout_tls_cert_info`` shows it."""
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- DNS ---------------------------------------------------------------------------------------

A_RECORDS = ("192.0.2.10", "192.0.2.11")


def dns_answer(query: dns.message.Message, *, tcp: bool) -> bytes | None:
    """The answer to ``query``, by name; None for the silent name."""
    question = query.question[0]
    name = question.name.to_text()
    response = dns.message.make_response(query)
    label = name.split(".")[0]
    if label == "silent":
        return None
    if label == "garbage":
        return b"\x00\x01not a dns message"
    if label == "nx":
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif label == "fail":
        response.set_rcode(dns.rcode.SERVFAIL)
    elif label == "big" and not tcp:
        response.flags |= dns.flags.TC
    elif label == "txt":
        response.answer.append(
            dns.rrset.from_text(name, 60, "IN", "TXT", '"v=spf1 -all"', '"site-verification=1"')
        )
    elif label == "mx":
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "MX", "10 mx1.example."))
    elif label == "alias":
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "target.example."))
        response.answer.append(dns.rrset.from_text("target.example.", 60, "IN", "A", "192.0.2.7"))
    elif label == "big":
        addresses = [f"192.0.2.{i}" for i in range(1, 101)]
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", *addresses))
    elif label != "empty":
        response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", *A_RECORDS))
    wire: bytes = response.to_wire()
    return wire


@dataclass
class DnsServer:
    port: int
    queries: list[dns.message.Message] = field(default_factory=list)

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        query = dns.message.from_wire(wire)
        self.queries.append(query)
        if query.question[0].name.to_text().startswith("slow."):
            await asyncio.sleep(0.3)
        return dns_answer(query, tcp=tcp)


class _DnsUdp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, tasks: set[asyncio.Task[None]]) -> None:
        self.server = server
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        async def reply() -> None:
            answer = await self.server.answer(data, tcp=False)
            if answer is not None and self.transport is not None:
                self.transport.sendto(answer, addr)

        task = asyncio.get_running_loop().create_task(reply())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@pytest.fixture
async def dns_server(servers: Servers) -> AsyncIterator[DnsServer]:
    """UDP and TCP on the same loopback port."""
    tasks: set[asyncio.Task[None]] = set()
    state = DnsServer(port=0)

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            wire = await reader.readexactly(size)
            if dns.message.from_wire(wire).question[0].name.to_text().startswith("hangup."):
                return  # closes the connection without an answer
            answer = await state.answer(wire, tcp=True)
            if answer is None:
                await reader.read()
                return
            writer.write(len(answer).to_bytes(2, "big") + answer)
            await writer.drain()

    # Bind TCP first, then UDP on the same number (retry if that UDP port is taken).
    loop = asyncio.get_running_loop()
    for _ in range(20):
        state.port = await servers.start(tcp)
        try:
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _DnsUdp(state, tasks), local_addr=("127.0.0.1", state.port)
            )
        except OSError:
            continue
        break
    else:
        pytest.fail("no loopback port free for both UDP and TCP")
    yield state
    transport.close()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


# --- SMTP --------------------------------------------------------------------------------------

USER, PASSWORD = "probe", "s3cret"


class _Accept:
    """aiosmtpd handler: the probes never send mail, so no hooks are needed."""


def _authenticate(
    _server: SMTP, _session: Any, _envelope: Any, _mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


def smtp_protocol(starttls: trustme.LeafCert | None = None, auth: bool = False) -> SMTP:
    """aiosmtpd's protocol for one connection, offering STARTTLS with ``starttls``."""
    return SMTP(
        _Accept(),
        hostname="mx.test",
        tls_context=Pki.server_context(starttls) if starttls else None,
        authenticator=_authenticate if auth else None,
        # Without auth, AUTH is not offered at all (before TLS, aiosmtpd's default).
        auth_require_tls=not auth,
    )


@pytest.fixture
async def smtp_server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Start aiosmtpd: ``await smtp_server(starttls=cert, implicit=cert, auth=True)``."""
    started: list[asyncio.Server] = []

    async def start(
        *,
        starttls: trustme.LeafCert | None = None,
        implicit: trustme.LeafCert | None = None,
        auth: bool = False,
    ) -> int:
        server = await asyncio.get_running_loop().create_server(
            lambda: smtp_protocol(starttls, auth),
            "127.0.0.1",
            0,
            ssl=Pki.server_context(implicit) if implicit else None,
        )
        started.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in started:
        server.close()
        with contextlib.suppress(Exception):
            server.close_clients()  # type: ignore[attr-defined]  # Python 3.13+
        await server.wait_closed()


# --- running probes ----------------------------------------------------------------------------


class Prober:
    """``await probe({"kind": "tcp", ...})``: load the target through the config, run it once.

    ``metrics(result)`` renders that result the way ``/metrics`` shows it.
    """

    def __init__(self, clients: SharedClients, directory: Path) -> None:
        self.clients = clients
        self.directory = directory
        self.target: Target[Any] | None = None

    async def __call__(
        self, target: dict[str, Any], environ: dict[str, str] | None = None
    ) -> ProbeResult:
        item = {"name": "dependency", "timeout": "2s", **target}
        path = self.directory / "lookout.yml"
        path.write_text(yaml.safe_dump({"targets": [item]}), encoding="utf-8")
        self.target = config.load(str(path), environ or {}).targets[0]
        return await run_probe(self.target, self.clients, SystemClock())

    def metrics(self, result: ProbeResult) -> str:
        assert self.target is not None
        stats = ProbeStats(self.target)
        stats.record(result)
        configs = dict(zip(CONFIG_FAMILIES, render_config(stats, None), strict=True))
        parts = zip(FAMILIES, render_target(stats, None), strict=True)
        return b"".join(configs.get(family, part) for family, part in parts).decode()


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[Prober]:
    clients = SharedClients()
    yield Prober(clients, tmp_path)
    await clients.close()


@pytest.fixture
def tasks_and_fds() -> Callable[[], tuple[int, int]]:
    """A function that counts this loop's other tasks and this process's open descriptors."""
    import os

    def count() -> tuple[int, int]:
        current = asyncio.current_task()
        tasks = sum(1 for t in asyncio.all_tasks() if t is not current and not t.done())
        return tasks, len(os.listdir("/proc/self/fd"))

    return count
