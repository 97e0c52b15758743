"""The ping routes over real loopback HTTP: signals, tokens, unknown names, instances, bodies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.heartbeats.routes import (
    HEARTBEATS,
    KEEP_BODY_BYTES,
    MAX_BODY_BYTES,
    REFUSAL_LOG_SECONDS,
    add_routes,
)
from exporter.heartbeats.service import Heartbeats
from exporter.heartbeats.state import Facts, Signal, Status
from exporter.heartbeats.store import Store
from tests.heartbeats.conftest import FakeClock, MakeHeartbeats, every

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

SPECS = [every(60, 30), every(60, 30, "secret", token="t0k"), every(60, 30, "pool", instances=3)]


@pytest.fixture
async def heartbeats(make_heartbeats: MakeHeartbeats) -> Heartbeats:
    return await make_heartbeats(SPECS)


def store(heartbeats: Heartbeats) -> Store:
    assert heartbeats.store is not None
    return heartbeats.store


def facts(heartbeats: Heartbeats) -> Mapping[str, Facts]:
    return store(heartbeats).facts


@pytest.fixture
async def client(aiohttp_client: MakeClient, heartbeats: Heartbeats) -> Client:
    app = web.Application()
    app[HEARTBEATS] = heartbeats
    add_routes(app)
    return await aiohttp_client(app)


async def test_a_get_ping_is_a_success(client: Client, heartbeats: Heartbeats) -> None:
    response = await client.get("/ping/job")
    assert response.status == 200
    assert await response.text() == "OK\n"
    view = heartbeats.view(heartbeats.specs["job"])
    assert view.status is Status.UP
    assert view.facts.counts == {Signal.SUCCESS: 1}


async def test_head_and_post_count_too(client: Client, heartbeats: Heartbeats) -> None:
    assert (await client.head("/ping/job")).status == 200
    assert (await client.post("/ping/job", data=b"done")).status == 200
    assert facts(heartbeats)["job"].counts == {Signal.SUCCESS: 2}


async def test_start_then_exit_code_measures_the_run(
    client: Client, heartbeats: Heartbeats, clock: FakeClock
) -> None:
    assert (await client.get("/ping/job/start?rid=run-1")).status == 200
    assert heartbeats.view(heartbeats.specs["job"]).status is Status.RUNNING
    clock.advance(12.5)
    assert (await client.post("/ping/job/3?rid=run-1", data=b"boom")).status == 200
    job = facts(heartbeats)["job"]
    assert job.last_exit_code == 3
    assert job.last_duration == 12.5
    assert heartbeats.view(heartbeats.specs["job"]).status is Status.FAILED


async def test_exit_code_zero_is_a_success(client: Client, heartbeats: Heartbeats) -> None:
    assert (await client.get("/ping/job/0")).status == 200
    assert facts(heartbeats)["job"].counts == {Signal.SUCCESS: 1}


async def test_fail_is_a_failure(client: Client, heartbeats: Heartbeats) -> None:
    assert (await client.get("/ping/job/fail")).status == 200
    assert heartbeats.view(heartbeats.specs["job"]).status is Status.FAILED


async def test_the_job_may_report_its_own_duration(client: Client, heartbeats: Heartbeats) -> None:
    assert (await client.get("/ping/job/0?duration=3.5")).status == 200
    assert facts(heartbeats)["job"].last_duration == 3.5


async def test_an_unknown_heartbeat_is_404_and_creates_nothing(
    client: Client, heartbeats: Heartbeats
) -> None:
    response = await client.get("/ping/nope")
    assert response.status == 404
    assert "unknown heartbeat 'nope'" in await response.text()
    assert "nope" not in facts(heartbeats)
    assert await store(heartbeats).recent("nope") == []


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param("/ping/job/restart", 404, "unknown ping 'restart'", id="unknown-signal"),
        pytest.param("/ping/job/256", 400, "out of range 0-255", id="exit-code-range"),
        pytest.param("/ping/job/%C2%B2", 404, "unknown ping", id="unicode-digit"),
        pytest.param("/ping/job?rid=a%20b", 400, "rid must be", id="bad-rid"),
        pytest.param("/ping/job/0?duration=-1", 400, "duration must be", id="negative-duration"),
        pytest.param("/ping/job/0?duration=nan", 400, "duration must be", id="nan-duration"),
        pytest.param("/ping/job?instance=w1", 400, "does not declare instances", id="instance"),
        pytest.param("/ping/pool?instance=", 400, "instance must be", id="empty-instance"),
    ],
)
async def test_malformed_pings_are_refused_and_not_counted(
    client: Client, heartbeats: Heartbeats, path: str, status: int, message: str
) -> None:
    response = await client.get(path)
    assert response.status == status
    assert message in await response.text()
    assert facts(heartbeats) == {}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        pytest.param("/ping/secret", {}, 401, id="missing"),
        pytest.param("/ping/secret?token=wrong", {}, 401, id="wrong-query"),
        pytest.param("/ping/secret", {"Authorization": "Bearer wrong"}, 401, id="wrong-bearer"),
        pytest.param("/ping/secret", {"Authorization": "Basic dDBrOg=="}, 401, id="basic"),
        pytest.param("/ping/secret?token=t0k", {}, 200, id="query"),
        pytest.param("/ping/secret", {"Authorization": "Bearer t0k"}, 200, id="bearer"),
        pytest.param("/ping/secret/start", {"Authorization": "bearer t0k"}, 200, id="case"),
    ],
)
async def test_a_heartbeat_with_a_token_requires_it(
    client: Client, heartbeats: Heartbeats, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert facts(heartbeats) == {}
    else:
        assert facts(heartbeats)["secret"].seq == 1


async def test_instances_are_tracked_by_name(
    client: Client, heartbeats: Heartbeats, clock: FakeClock
) -> None:
    for worker in ("worker-1", "worker-2", "worker-3"):
        assert (await client.get(f"/ping/pool?instance={worker}")).status == 200
    clock.advance(100)
    assert (await client.get("/ping/pool?instance=worker-2")).status == 200
    assert heartbeats.view(heartbeats.specs["pool"]).instances_alive == 1


async def test_a_long_body_is_truncated_to_its_end_and_counts(
    client: Client, heartbeats: Heartbeats
) -> None:
    body = b"x" * (3 * KEEP_BODY_BYTES) + b"the error at the end"
    assert (await client.post("/ping/job/1", data=body)).status == 200
    kept = (await store(heartbeats).recent("job"))[0].body
    assert len(kept) == KEEP_BODY_BYTES
    assert kept.endswith(b"the error at the end")


async def test_a_body_over_the_hard_cap_is_refused_without_reading_it(
    client: Client, heartbeats: Heartbeats
) -> None:
    """Only the headers are sent: the 413 must come from the declared length alone."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /ping/job HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Length: {MAX_BODY_BYTES * 100}\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert facts(heartbeats) == {}


async def test_a_chunked_body_over_the_hard_cap_is_refused(
    client: Client, heartbeats: Heartbeats
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"y" * 65536

    response = await client.post("/ping/job", data=chunks())
    assert response.status == 413
    assert facts(heartbeats) == {}


async def test_an_exit_code_of_5000_digits_is_a_clear_400(
    client: Client, heartbeats: Heartbeats, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/ping/job/" + "7" * 5000)
    assert response.status == 400
    assert "is out of range 0-255" in await response.text()
    assert len(await response.text()) < 200
    assert (await client.get("/ping/job/" + "0" * 5000)).status == 200, "leading zeros are 0"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_refused_pings_are_logged_at_info_at_most_once_per_interval(
    client: Client, heartbeats: Heartbeats, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.heartbeats.routes")
    for _ in range(50):
        await client.get("/ping/nope")
        await client.get("/ping/secret?token=wrong")
    clock.advance(REFUSAL_LOG_SECONDS)
    await client.get("/ping/job/999")
    refused = [r for r in caplog.records if r.getMessage() == "ping refused"]
    assert [r.levelno for r in refused] == [logging.INFO, logging.INFO]
    assert refused[0].status == 404  # type: ignore[attr-defined]
    assert refused[1].left_out == 99  # type: ignore[attr-defined]
    assert refused[1].status == 400  # type: ignore[attr-defined]


async def test_instance_names_cannot_be_sent_without_the_token() -> None:
    """Covered by the token check coming first: a heartbeat with a token and instances."""
    spec = every(60, 30, "guarded", token="t0k", instances=2)
    app = web.Application()
    heartbeats = Heartbeats([spec], FakeClock(), Path("unused"))
    app[HEARTBEATS] = heartbeats
    add_routes(app)
    async with TestClient(TestServer(app)) as guarded:
        response = await guarded.get("/ping/guarded?instance=intruder")
        assert response.status == 401


async def test_instances_are_bounded_and_a_flood_of_new_names_is_refused_with_429(
    client: Client, heartbeats: Heartbeats
) -> None:
    for n in range(12):  # pool: instances 3, so 12 names at most
        assert (await client.get(f"/ping/pool?instance=w{n}")).status == 200
    flood = [await client.get(f"/ping/pool?instance=fake{n}") for n in range(20)]
    assert {r.status for r in flood} == {429}
    assert "already tracks 12 instances" in await flood[0].text()
    assert (await client.get("/ping/pool?instance=w3")).status == 200
    assert heartbeats.view(heartbeats.specs["pool"]).instances_alive == 12
