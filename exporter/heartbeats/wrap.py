"""The job side: ``lookout-exporter ping NAME --url URL -- cmd args...`` wraps a command.

It sends ``/start``, runs the command with its output passed through unchanged, then sends the
exit code with the run's duration and the tail of its output, and exits with the command's own
status. A ping that cannot be delivered is reported on stderr and never changes that status: the
job's result matters more than its monitoring. Without a command it sends one success ping.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import IO, TextIO

__all__ = ["TAIL_BYTES", "add_arguments", "command", "run", "split_job"]

# Output kept for the finish ping; the server keeps at most this much too.
TAIL_BYTES = 10 * 1024
ATTEMPTS = 3
# How long output may still come after the job exited: a process it left running in the
# background can hold the pipes open, and the finish ping must not wait for that process.
OUTPUT_GRACE_SECONDS = 2.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the heartbeat's name, as declared in the config")
    parser.add_argument("--url", required=True, help="Lookout's base URL, e.g. http://host:9471")
    parser.add_argument(
        "--token", help="the heartbeat's token (default: the LOOKOUT_TOKEN environment variable)"
    )
    parser.add_argument("--instance", help="this worker's name, for heartbeats with instances")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per ping attempt (default 10)"
    )
    parser.epilog = "Put the job's command after --: ping NAME --url URL -- CMD ARGS..."


def split_job(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``ping`` arguments before ``--``, and the job's command after it."""
    if argv and argv[0] == "ping" and "--" in argv:
        cut = list(argv).index("--")
        return list(argv[:cut]), list(argv[cut + 1 :])
    return list(argv), []


def command(
    args: argparse.Namespace, job: Sequence[str], environ: Mapping[str, str] = os.environ
) -> int:
    """Run the ``ping`` subcommand parsed by ``add_arguments``; returns the exit status."""
    pinger = Pinger(
        args.url, args.name, args.token or environ.get("LOOKOUT_TOKEN"), args.instance, args.timeout
    )
    if not job:
        return 0 if pinger.send("") else 1
    return run(pinger, job)


class Pinger:
    """Sends pings for one heartbeat; failures are written to stderr and reported as False."""

    def __init__(
        self, url: str, name: str, token: str | None, instance: str | None, timeout: float
    ) -> None:
        self.base = f"{url.rstrip('/')}/ping/{urllib.parse.quote(name, safe='')}"
        self.token = token
        self.instance = instance
        self.timeout = timeout

    def send(
        self, signal_path: str, body: bytes = b"", attempts: int = ATTEMPTS, **params: str
    ) -> bool:
        if self.instance:
            params["instance"] = self.instance
        url = self.base + (f"/{signal_path}" if signal_path else "")
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.5 * attempt)
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return True
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}: {exc.read(200).decode(errors='replace').strip()}"
                if exc.code < 500:
                    break
            except (OSError, ValueError) as exc:
                problem = str(getattr(exc, "reason", exc))
        print(f"lookout: ping {url.split('?')[0]} failed: {problem}", file=sys.stderr)
        return False


def run(pinger: Pinger, job: Sequence[str]) -> int:
    """Run ``job`` between a start and a finish ping; returns the job's exit status."""
    rid = uuid.uuid4().hex
    # One attempt only: the job must not wait for Lookout, and the finish carries the duration.
    pinger.send("start", attempts=1, rid=rid)
    started = time.monotonic()
    tail = _Tail()
    try:
        process = subprocess.Popen(job, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"lookout: cannot run {job[0]!r}: {exc.strerror}\n"
        sys.stderr.write(message)
        tail.add(message.encode())
    else:
        status = _wait(process, tail)
    duration = f"{time.monotonic() - started:.3f}"
    pinger.send(str(status), tail.value(), rid=rid, duration=duration)
    return status


def _wait(process: subprocess.Popen[bytes], tail: _Tail) -> int:
    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED}
    pumps = [
        threading.Thread(target=_pump, args=(pipe, sink, tail), daemon=True)
        for pipe, sink in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))
    ]
    try:
        for pump in pumps:
            pump.start()
        code = process.wait()
        until = time.monotonic() + OUTPUT_GRACE_SECONDS
        for pump in pumps:
            pump.join(max(0.0, until - time.monotonic()))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # Like a shell: a job killed by signal N exits with 128 + N.
    return 128 - code if code < 0 else code


def _pump(pipe: IO[bytes] | None, sink: TextIO, tail: _Tail) -> None:
    """Copy the job's output to ours as it comes, keeping its tail."""
    assert pipe is not None
    sink.flush()
    while chunk := os.read(pipe.fileno(), 65536):
        tail.add(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(sink.fileno(), view) :]


class _Tail:
    """The last ``TAIL_BYTES`` of the job's output, stdout and stderr interleaved."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            if len(self._data) > TAIL_BYTES:
                del self._data[: len(self._data) - TAIL_BYTES]

    def value(self) -> bytes:
        with self._lock:
            return bytes(self._data)
