"""`lookout-exporter ping`: a wrapped job keeps its output and exit status; the run is reported."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from exporter import config
from exporter.app import create_app
from exporter.heartbeats.routes import HEARTBEATS
from exporter.heartbeats.state import Signal, Status
from exporter.heartbeats.store import StoredPing
from exporter.heartbeats.wrap import TAIL_BYTES
from exporter.runtime import Options
from tests.exporter_process import exporter_command
from tests.processes import free_port

CONFIG = """
heartbeats:
  - {name: backup, period: 1d, grace: 1h}
  - {name: secret, period: 1d, grace: 1h, token: s3cret}
  - {name: pool, period: 1m, grace: 1m, instances: 2}
"""


async def lookout(aiohttp_server: AiohttpServer, tmp_path: Path) -> TestServer:
    loaded = config.load_text(CONFIG, config.Source("t", tmp_path), {})
    app = create_app(Options(storage_path=tmp_path / "data"), loaded)
    return await aiohttp_server(app)


async def ping(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await exporter_command("ping", *args, env=env)


async def pings(server: TestServer, name: str) -> list[StoredPing]:
    store = server.app[HEARTBEATS].store
    assert store is not None
    return await store.recent(name)


def url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_a_failing_job_keeps_its_status_and_output_and_is_reported(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    job = "import sys; print('copied 12 files'); print('disk full', file=sys.stderr); sys.exit(3)"
    code, out, err = await ping("backup", "--url", url(server), "--", sys.executable, "-c", job)
    assert code == 3
    assert out == "copied 12 files\n"
    assert err == "disk full\n"
    finish, start = await pings(server, "backup")
    assert start.signal is Signal.START
    assert finish.signal is Signal.FAIL
    assert finish.exit_code == 3
    assert finish.rid == start.rid is not None
    assert finish.duration is not None
    assert 0 <= finish.duration < 30
    assert b"copied 12 files" in finish.body
    assert b"disk full" in finish.body
    heartbeats = server.app[HEARTBEATS]
    assert heartbeats.view(heartbeats.specs["backup"]).status is Status.FAILED


async def test_a_successful_job_sends_exit_code_zero(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    code, _, _ = await ping("backup", "--url", url(server), "--", sys.executable, "-c", "pass")
    assert code == 0
    heartbeats = server.app[HEARTBEATS]
    view = heartbeats.view(heartbeats.specs["backup"])
    assert view.status is Status.UP
    assert view.facts.last_exit_code == 0


async def test_only_the_tail_of_a_long_output_is_sent(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    job = "print('x' * 100000); print('the last line')"
    code, out, _ = await ping("backup", "--url", url(server), "--", sys.executable, "-c", job)
    assert code == 0
    assert len(out) == 100000 + len("\nthe last line\n")
    body = (await pings(server, "backup"))[0].body
    assert len(body) == TAIL_BYTES
    assert body.endswith(b"the last line\n")


async def test_an_unreachable_lookout_never_changes_the_jobs_status(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    runs = await asyncio.gather(
        *(
            ping("backup", "--url", dead, "--", sys.executable, "-c", f"raise SystemExit({n})")
            for n in (0, 5)
        )
    )
    assert [code for code, _, _ in runs] == [0, 5]
    for _, _, err in runs:
        assert f"lookout: ping {dead}/ping/backup/start failed" in err


async def test_a_missing_command_exits_127_and_is_reported_as_a_failure(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    code, _, err = await ping("backup", "--url", url(server), "--", "/nonexistent/job")
    assert code == 127
    assert "cannot run '/nonexistent/job'" in err
    assert (await pings(server, "backup"))[0].exit_code == 127


async def test_without_a_command_it_sends_one_success(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    assert (await ping("backup", "--url", url(server)))[0] == 0
    assert [p.signal for p in await pings(server, "backup")] == [Signal.SUCCESS]
    code, _, err = await ping("no-such-heartbeat", "--url", url(server))
    assert code == 1
    assert "HTTP 404" in err


async def test_the_token_comes_from_the_option_or_the_environment(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    assert (await ping("secret", "--url", url(server)))[0] == 1
    assert (await ping("secret", "--url", url(server), "--token", "s3cret"))[0] == 0
    assert (await ping("secret", "--url", url(server), env={"LOOKOUT_TOKEN": "s3cret"}))[0] == 0
    assert len(await pings(server, "secret")) == 2


async def test_an_instance_name_is_sent_with_every_ping(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    server = await lookout(aiohttp_server, tmp_path)
    args = ("pool", "--url", url(server), "--instance", "worker-1")
    assert (await ping(*args, "--", sys.executable, "-c", "pass"))[0] == 0
    assert {p.instance for p in await pings(server, "pool")} == {"worker-1"}
    heartbeats = server.app[HEARTBEATS]
    assert heartbeats.view(heartbeats.specs["pool"]).instances_alive == 1


async def test_a_process_left_in_the_background_does_not_delay_the_finish(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """The background sleep keeps the job's output pipes open long after the job exited."""
    server = await lookout(aiohttp_server, tmp_path)
    pid_file = tmp_path / "background.pid"
    job = f"sleep 60 & echo $! > {pid_file}; echo ok"
    started = time.monotonic()
    try:
        code, _, _ = await ping("backup", "--url", url(server), "--", "sh", "-c", job)
        elapsed = time.monotonic() - started
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert code == 0
    assert elapsed < 30
    finish = (await pings(server, "backup"))[0]
    assert finish.exit_code == 0
    assert finish.body == b"ok\n"
