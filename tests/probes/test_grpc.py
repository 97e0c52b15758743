"""The grpc prober against a real grpcio server on loopback with the standard health service,
flipping between SERVING and NOT_SERVING, in plaintext and over TLS with trustme."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from exporter.config import ConfigError
from exporter.probes.grpc import CONNECT_LIMIT_MS, GrpcObservation
from exporter.reasons import Reason
from tests.probes.conftest import Pki, Prober
from tests.probes.support import never_speaks
from tests.processes import free_port
from tests.servers import Servers

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _TokenCheck(aio.ServerInterceptor):
    """Refuses calls without the metadata ``x-token: secret`` (PERMISSION_DENIED)."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        if dict(details.invocation_metadata or ()).get("x-token", "secret") != "secret":

            async def deny(_request: Any, context: aio.ServicerContext[Any, Any]) -> None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad token")

            return grpc.unary_unary_rpc_method_handler(deny)
        return await continuation(details)


@dataclass
class GrpcServer:
    port: int
    health: health_aio.HealthServicer

    def target(self, service: str = "", **settings: Any) -> dict[str, Any]:
        expect = settings.pop("expect", None)
        target: dict[str, Any] = {
            "kind": "grpc",
            "address": f"127.0.0.1:{self.port}",
            "grpc": {"service": service, **settings},
        }
        if expect is not None:
            target["expect"] = expect
        return target

    async def set(self, service: str, status: Any) -> None:
        await self.health.set(service, status)


async def _start(credentials: grpc.ServerCredentials | None) -> tuple[aio.Server, GrpcServer]:
    server = aio.server(interceptors=[_TokenCheck()])
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    await health.set("", SERVING)
    await health.set("orders.v1.Orders", SERVING)
    return server, GrpcServer(port, health)


@pytest.fixture
async def grpc_server() -> AsyncIterator[GrpcServer]:
    server, state = await _start(None)
    yield state
    await server.stop(None)


def _credentials(cert: Any) -> grpc.ServerCredentials:
    key = cert.private_key_pem.bytes()
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return grpc.ssl_server_credentials([(key, chain)])


@pytest.fixture
async def grpc_tls_server(pki: Pki) -> AsyncIterator[GrpcServer]:
    server, state = await _start(_credentials(pki.valid))
    yield state
    await server.stop(None)


async def test_serving_service_passes_and_exports_its_status(
    probe: Prober, grpc_server: GrpcServer
) -> None:
    result = await probe(grpc_server.target("orders.v1.Orders"))
    assert result.success, result.message
    assert result.observation == GrpcObservation("OK", 0, "SERVING")
    assert [name for name, _ in result.phases] == ["connect", "rpc"]
    text = probe.metrics(result)
    assert 'lookout_grpc_status_code{target="dependency",kind="grpc"} 0' in text
    assert 'lookout_grpc_health_status{target="dependency",kind="grpc",status="SERVING"} 1' in text


async def test_health_flipping_to_not_serving_and_back(
    probe: Prober, grpc_server: GrpcServer
) -> None:
    target = grpc_server.target("orders.v1.Orders")
    await grpc_server.set("orders.v1.Orders", NOT_SERVING)
    down = await probe(target)
    assert down.reason is Reason.GRPC_STATUS
    assert down.message == "'orders.v1.Orders' is NOT_SERVING, expected SERVING"
    assert (
        'lookout_grpc_health_status{target="dependency",kind="grpc",status="NOT_SERVING"} 1'
        in probe.metrics(down)
    )
    await grpc_server.set("orders.v1.Orders", SERVING)
    up = await probe(target)
    assert up.success, up.message


async def test_expected_not_serving_passes(probe: Prober, grpc_server: GrpcServer) -> None:
    await grpc_server.set("drained", NOT_SERVING)
    result = await probe(grpc_server.target("drained", expect={"status": "NOT_SERVING"}))
    assert result.success, result.message


async def test_the_whole_server_is_the_empty_service_name(
    probe: Prober, grpc_server: GrpcServer
) -> None:
    result = await probe({"kind": "grpc", "address": f"127.0.0.1:{grpc_server.port}"})
    assert result.success, result.message


async def test_unknown_service_fails_as_service_unknown(
    probe: Prober, grpc_server: GrpcServer
) -> None:
    result = await probe(grpc_server.target("nope.v1.Nope"))
    assert result.reason is Reason.GRPC_STATUS
    assert result.message == "'nope.v1.Nope' is SERVICE_UNKNOWN, expected SERVING"
    assert result.observation == GrpcObservation("NOT_FOUND", 5, "SERVICE_UNKNOWN")


async def test_metadata_is_sent_and_a_denied_call_names_its_code(
    probe: Prober, grpc_server: GrpcServer
) -> None:
    passed = await probe(grpc_server.target(metadata={"x-token": "secret"}))
    assert passed.success, passed.message
    denied = await probe(grpc_server.target(metadata={"x-token": "wrong"}))
    assert denied.reason is Reason.GRPC_STATUS
    assert denied.message == "health check failed with gRPC status PERMISSION_DENIED: bad token"
    assert denied.status_code == 7


async def test_a_server_without_the_health_service_fails_as_unimplemented(
    probe: Prober,
) -> None:
    server = aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        result = await probe({"kind": "grpc", "address": f"127.0.0.1:{port}"})
    finally:
        await server.stop(None)
    assert result.reason is Reason.GRPC_STATUS
    assert result.message.startswith("health check failed with gRPC status UNIMPLEMENTED")


async def test_refused_port_fails_as_refused(probe: Prober) -> None:
    result = await probe({"kind": "grpc", "address": f"127.0.0.1:{free_port()}"})
    assert result.reason is Reason.REFUSED


async def test_tls_verifies_the_server_and_exports_its_certificate(
    probe: Prober, grpc_tls_server: GrpcServer, pki: Pki
) -> None:
    target = grpc_tls_server.target("orders.v1.Orders", tls={"ca_file": str(pki.ca_file)})
    result = await probe(target)
    assert result.success, result.message
    assert [name for name, _ in result.phases] == ["connect", "tls", "rpc"]
    assert result.cert_expiry is not None
    assert "lookout_tls_cert_expiry_timestamp_seconds" in probe.metrics(result)
    await grpc_tls_server.set("orders.v1.Orders", NOT_SERVING)
    down = await probe(target)
    assert down.reason is Reason.GRPC_STATUS


async def test_tls_with_an_untrusted_certificate_fails_before_the_call(
    probe: Prober, grpc_tls_server: GrpcServer
) -> None:
    result = await probe(grpc_tls_server.target(tls=True))
    assert result.reason is Reason.CERT_INVALID
    assert "rpc" not in dict(result.phases)
    assert result.cert_expiry is not None


async def test_plaintext_against_a_tls_server_fails(
    probe: Prober, grpc_tls_server: GrpcServer
) -> None:
    result = await probe(grpc_tls_server.target())
    assert result.reason is Reason.GRPC_STATUS
    assert result.message.startswith("health check failed with gRPC status UNAVAILABLE")


def test_the_request_size_is_the_serialized_message() -> None:
    from exporter.probes.grpc import _request_size

    for service in ("", "a", "orders.v1.Orders", "x" * 127, "x" * 128, "é" * 100):
        message = health_pb2.HealthCheckRequest(service=service)
        assert _request_size(service) == len(message.SerializeToString()), service


async def test_insecure_skip_verify_is_a_config_error(probe: Prober) -> None:
    with pytest.raises(ConfigError, match=r"grpc\.tls\.insecure_skip_verify: gRPC's TLS"):
        await probe(
            {
                "kind": "grpc",
                "address": "127.0.0.1:1",
                "grpc": {"tls": {"insecure_skip_verify": True}},
            }
        )


async def test_without_the_grpc_extra_a_grpc_target_is_a_config_error(
    probe: Prober, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("exporter.probes.grpc.AVAILABLE", False)
    with pytest.raises(ConfigError, match=r"targets\[0\]\.kind: kind grpc needs grpcio"):
        await probe({"kind": "grpc", "address": "127.0.0.1:1"})


async def test_a_peer_that_never_speaks_http2_times_out_and_its_connections_end(
    probe: Prober, servers: Servers, tasks_and_fds: Callable[[], tuple[int, int]]
) -> None:
    """grpcio leaves a timed-out call's connection attempt running until CONNECT_LIMIT_MS, and
    its channel's descriptors to the garbage collector: both are gone after that."""
    port = await servers.start(never_speaks)
    target = {"kind": "grpc", "address": f"127.0.0.1:{port}", "timeout": "300ms"}
    first = await probe(target)
    assert first.reason is Reason.TIMEOUT
    assert first.message == "no result within 300ms during rpc"
    await asyncio.sleep(CONNECT_LIMIT_MS / 1000 + 0.3)
    gc.collect()
    before = tasks_and_fds()
    results = await asyncio.gather(*(probe(target) for _ in range(10)))
    assert {r.reason for r in results} == {Reason.TIMEOUT}
    assert max(r.duration for r in results) < 1.0
    await asyncio.sleep(CONNECT_LIMIT_MS / 1000 + 0.3)
    gc.collect()
    assert tasks_and_fds() == before
