"""What the status page, the API and ``lookout-exporter probe`` show of the newer kinds' own
facts: an icmp target pinging 127.0.0.1 and a grpc target asking a real grpcio server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from exporter import config
from exporter.app import create_app
from exporter.probes.icmp import open_icmp_socket
from exporter.reasons import ProbeFailure
from exporter.runtime import Options
from tests.exporter_process import exporter_command
from tests.status_support import wait_probed
from tests.tools import unavailable


@pytest.fixture
def icmp() -> None:
    try:
        open_icmp_socket(socket.AF_INET).close()
    except ProbeFailure as failure:
        unavailable(f"no unprivileged ICMP socket: {failure.message}")


@pytest.fixture
async def grpc_port() -> AsyncIterator[int]:
    server = aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health.set("orders.v1.Orders", health_pb2.HealthCheckResponse.NOT_SERVING)
    yield port
    await server.stop(None)


def write(tmp_path: Path, grpc_port: int) -> Path:
    path = tmp_path / "lookout.yml"
    path.write_text(
        f"""
targets:
  - name: gateway
    kind: icmp
    host: 127.0.0.1
    interval: 1s
    timeout: 900ms
    icmp: {{count: 2, interval: 10ms}}
  - name: orders-grpc
    kind: grpc
    address: 127.0.0.1:{grpc_port}
    interval: 1s
    timeout: 900ms
    grpc: {{service: orders.v1.Orders}}
""",
        encoding="utf-8",
    )
    return path


async def test_the_target_pages_and_the_api_show_the_kinds_facts(
    aiohttp_client: Any, tmp_path: Path, icmp: None, grpc_port: int
) -> None:
    path = write(tmp_path, grpc_port)
    app = create_app(Options(config_path=str(path)), config.load(str(path)))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    await wait_probed(app)
    gateway = await (await client.get("/targets/gateway")).text()
    assert "Observed: address 127.0.0.1 · sent 2 · received 2 · packet loss ratio 0" in gateway
    assert "rtt seconds min=" in gateway
    orders = await (await client.get("/targets/orders-grpc")).text()
    assert "Observed: grpc status OK · serving status NOT_SERVING" in orders
    assert "&#x27;orders.v1.Orders&#x27; is NOT_SERVING, expected SERVING" in orders
    api = await (await client.get("/api/v1/targets/gateway")).json()
    facts = api["latest"]["facts"]
    assert (facts["sent"], facts["received"], facts["packet_loss_ratio"]) == (2, 2, 0.0)
    assert set(facts["rtt_seconds"]) == {"min", "avg", "max", "jitter"}


async def test_the_probe_command_shows_the_kinds_facts_and_metrics(
    tmp_path: Path, icmp: None, grpc_port: int
) -> None:
    path = write(tmp_path, grpc_port)
    code, out, err = await exporter_command("probe", "--config", str(path), "gateway")
    assert code == 0, err
    assert "Response  2/2 replies from 127.0.0.1, 0% loss, rtt min/avg/max " in out
    assert 'lookout_icmp_packet_loss_ratio{target="gateway",kind="icmp"} 0' in out
    assert 'lookout_icmp_rtt_seconds{target="gateway",kind="icmp",stat="avg"}' in out
    code, out, err = await exporter_command("probe", "--config", str(path), "orders-grpc")
    assert code == 1, err
    assert "Response  gRPC OK, NOT_SERVING" in out
    assert "reason grpc_status: 'orders.v1.Orders' is NOT_SERVING, expected SERVING" in out
    assert (
        'lookout_grpc_health_status{target="orders-grpc",kind="grpc",status="NOT_SERVING"} 1' in out
    )
