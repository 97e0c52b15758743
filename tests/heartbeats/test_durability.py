"""Every acknowledged ping survives the exporter being killed with SIGKILL during a ping flood."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
HEARTBEATS = [f"flood-{n}" for n in range(50)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_exporter(config: Path, storage: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "exporter",
        "run",
        "--config",
        str(config),
        "--storage.path",
        str(storage),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(
    session: aiohttp.ClientSession, port: int, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            async with session.get(f"http://127.0.0.1:{port}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the exporter did not become ready within 20 s")


async def flood(port: int, worker: int, acknowledged: Counter[str], stop: asyncio.Event) -> None:
    """Ping over one keep-alive connection until the server dies; count the 200 answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = worker
    try:
        while not stop.is_set():
            name = HEARTBEATS[n % len(HEARTBEATS)]
            n += 7
            writer.write(
                f"POST /ping/{name} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200 "):
                acknowledged[name] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def test_every_acknowledged_ping_survives_sigkill(tmp_path: Path) -> None:
    config = tmp_path / "lookout.yml"
    config.write_text(
        "heartbeats:\n" + "".join(f"  - {{name: {n}, period: 1m, grace: 1m}}\n" for n in HEARTBEATS)
    )
    storage = tmp_path / "data"
    port = free_port()
    acknowledged: Counter[str] = Counter()
    async with aiohttp.ClientSession() as session:
        first = start_exporter(config, storage, port)
        try:
            await wait_ready(session, port, first)
            stop = asyncio.Event()
            workers = [asyncio.create_task(flood(port, w, acknowledged, stop)) for w in range(32)]
            await asyncio.sleep(1.0)
            assert sum(acknowledged.values()) > 100, "the flood did not get going"
            os.kill(first.pid, signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*workers), 10)
            stop.set()
        finally:
            first.kill()
            first.wait()
            if first.stderr:
                first.stderr.close()
        assert first.returncode == -signal.SIGKILL

        second = start_exporter(config, storage, port)
        try:
            await wait_ready(session, port, second)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        finally:
            second.terminate()
            second.wait(10)
            if second.stderr:
                second.stderr.close()
    stored = {
        sample.labels["heartbeat"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "lookout_heartbeat_pings_total" and sample.labels["signal"] == "success"
    }
    lost = {
        name: (count, stored.get(name, 0))
        for name, count in acknowledged.items()
        if stored.get(name, 0) < count
    }
    assert lost == {}, f"acknowledged pings missing after restart (acked, stored): {lost}"
    assert sum(stored.values()) >= sum(acknowledged.values())
