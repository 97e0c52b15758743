"""The exporter's event loop (``exporter/event_loop.py``): numeric hosts answered without
uvloop's resolver threads, names resolved as before."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from exporter.event_loop import NumericHostsLoop

# Connects to a loopback aiohttp server with aiohttp on the loop named by argv[1], and prints
# the threads of the process afterwards: libuv starts its pool's workers at first use.
_CONNECT = textwrap.dedent(
    """
    import asyncio, json, os, socket, sys
    import aiohttp, uvloop
    from aiohttp import web
    from exporter.event_loop import NumericHostsLoop

    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        app = web.Application()
        app.router.add_get("/", lambda request: web.Response(text="ok"))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, listener).start()
        url = "http://127.0.0.1:%d/" % listener.getsockname()[1]
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(url) as response:
                    text = await response.text()
        await runner.cleanup()
        return text

    loop = NumericHostsLoop() if sys.argv[1] == "numeric" else uvloop.new_event_loop()
    text = loop.run_until_complete(main())
    print(json.dumps({"text": text, "threads": len(os.listdir("/proc/self/task"))}))
    """
)


def connected(loop: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CONNECT, loop], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_connections_to_numeric_hosts_start_no_resolver_threads() -> None:
    # uvloop alone resolves the address aiohttp connects to in libuv's thread pool.
    plain = connected("uvloop")
    assert plain["text"] == "ok"
    assert isinstance(plain["threads"], int)
    assert plain["threads"] > 1
    assert connected("numeric") == {"text": "ok", "threads": 1}


@pytest.mark.parametrize(
    ("host", "family", "address"),
    [
        ("127.0.0.1", socket.AF_INET, ("127.0.0.1", 8080)),
        ("::1", socket.AF_INET6, ("::1", 8080, 0, 0)),
    ],
)
def test_a_numeric_host_gets_the_c_librarys_answer(
    host: str, family: socket.AddressFamily, address: tuple[object, ...]
) -> None:
    loop = NumericHostsLoop()
    try:
        answer = loop.run_until_complete(
            loop.getaddrinfo(host, 8080, family=family, type=socket.SOCK_STREAM)
        )
    finally:
        loop.close()
    assert answer == socket.getaddrinfo(host, 8080, family, socket.SOCK_STREAM)
    assert [entry[4] for entry in answer] == [address]


def test_a_name_is_resolved_by_uvloop() -> None:
    loop = NumericHostsLoop()
    try:
        answer = loop.run_until_complete(
            loop.getaddrinfo("localhost", 8080, family=socket.AF_INET, type=socket.SOCK_STREAM)
        )
    finally:
        loop.close()
    assert [entry[4] for entry in answer] == [("127.0.0.1", 8080)]
