"""Loading the config in a process of its own, so that a reload never stalls the exporter.

Reading, checking and building a config of 10,000 targets is about a second of Python work; in
a thread of the exporter it would hold the interpreter lock that the event loop needs, and
scrapes and heartbeat pings would wait. ``ConfigLoader`` runs ``config.load`` in one worker
process instead (started with the first reload, kept for the next ones), which sends back either
the problems or the ``Config`` pickled in batches of ``BATCH`` targets. The exporter unpickles one
batch at a time and lets other tasks run between batches, so no step holds the event loop long.

Start-up loads the config the same way (``load_at_start``), in a worker that ends once it has
answered: parsing and checking 10,000 targets leaves some 15 MiB of garbage in partly used
allocator arenas, which in the exporter's own heap would stay resident for good; unpickled
targets are only the built config.

What the worker logs (an internal error's traceback) is logged again by the exporter, with the
same message and keys. A worker that dies (out of memory, killed) is a problem of that reload;
the next reload starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import os
import pickle
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from exporter.config import DEFAULT_CONFIG, Config, load
from exporter.config_source import ConfigError, ConfigProblem
from exporter.gc_pause import paused_gc

__all__ = ["BATCH", "ConfigLoader", "load_at_start", "load_pickled"]

log = logging.getLogger(__name__)

BATCH = 100  # targets per pickled batch: a few milliseconds to unpickle

# The attributes every log record has; the others are the keys given with ``extra``.
_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _Collect(logging.Handler):
    """Keeps what the worker logs, to be logged again by the exporter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, str, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_KEYS}
        self.records.append((record.name, record.levelno, record.getMessage(), extra))


def load_pickled(path: str | None, environ: Mapping[str, str], cwd: str) -> bytes:
    """Runs in the worker: ``config.load`` of ``path`` (relative to ``cwd``), pickled as
    ``("config", config without targets, [pickled target batches], log records)`` or
    ``("problems", [(at, message, file, line)], log records)``."""
    os.chdir(cwd)
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    try:
        try:
            config = load(path, environ)
        except ConfigError as exc:
            problems = [(p.at, p.message, p.file, p.line) for p in exc.problems]
            return pickle.dumps(("problems", problems, collect.records))
        targets = config.targets
        batches = [
            pickle.dumps(targets[start : start + BATCH], pickle.HIGHEST_PROTOCOL)
            for start in range(0, len(targets), BATCH)
        ]
        header = dataclasses.replace(config, targets=())
        return pickle.dumps(("config", header, batches, collect.records), pickle.HIGHEST_PROTOCOL)
    finally:
        root.removeHandler(collect)


class ConfigLoader:
    """Loads configs in one worker process; ``close`` ends it."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def load(
        self,
        path: str | None,
        environ: Mapping[str, str],
        pause: Callable[[], Awaitable[None]],
    ) -> Config:
        """The config at ``path`` (the embedded one when None), or ``ConfigError``;
        ``pause`` is awaited between two batches of targets unpickled, for other tasks to run.

        A worker that died since the last load (killed while idle) is replaced and the load
        tried once more; one that dies during the load fails it."""
        payload = None
        for _attempt in range(2):
            if self._pool is None:
                # spawn: a fork would copy the exporter's threads, sockets and event loop.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            try:
                payload = await asyncio.get_running_loop().run_in_executor(
                    self._pool, load_pickled, path, dict(environ), os.getcwd()
                )
                break
            except BrokenProcessPool:
                self.close()
        header, batches = _unpack(payload, path)
        targets: list[Any] = []
        # The cyclic garbage collector is paused while the targets are unpickled, and what
        # they are made of is then frozen (out of its collections, as ``settle_heap`` does at
        # the end of a reload): each collection the million new objects would set off scanned
        # all of them made so far, holding the event loop for 10-30 ms at 10,000 targets, and
        # the rest of the reload would set off more of those.
        with paused_gc():
            for batch in batches:
                await pause()
                targets.extend(pickle.loads(batch))
            gc.freeze()
        config: Config = dataclasses.replace(header, targets=tuple(targets))
        return config

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def load_at_start(path: str | None, environ: Mapping[str, str]) -> Config:
    """The config at ``path`` (the embedded one when None), or ``ConfigError``, loaded in a
    worker process of its own that ends before this returns. Where no process can be started
    (no shared memory for its locks, say), it is loaded in this process, with a warning."""
    context = multiprocessing.get_context("spawn")
    payload = None
    try:
        with (
            ProcessPoolExecutor(max_workers=1, mp_context=context) as pool,
            contextlib.suppress(BrokenProcessPool),
        ):
            payload = pool.submit(load_pickled, path, dict(environ), os.getcwd()).result()
    except (OSError, ImportError) as exc:
        log.warning("cannot start the config loader process, loading here", extra={"error": exc})
        return load(path, environ)
    header, batches = _unpack(payload, path)
    targets = tuple(target for batch in batches for target in pickle.loads(batch))
    config: Config = dataclasses.replace(header, targets=targets)
    return config


def _unpack(payload: bytes | None, path: str | None) -> tuple[Config, list[bytes]]:
    """The config without targets and the pickled batches of its targets from a worker's
    ``payload`` (None: the worker died), after logging what the worker logged; raises
    ``ConfigError`` with the worker's problems."""
    if payload is None:
        name = path if path is not None else f"(embedded {DEFAULT_CONFIG})"
        message = "the config loader process ended before it answered (out of memory?)"
        raise ConfigError([ConfigProblem(None, message, file=name)])
    outcome, *rest = pickle.loads(payload)
    for name, level, message, extra in rest[-1]:
        logging.getLogger(name).log(level, message, extra=extra)
    if outcome == "problems":
        raise ConfigError(
            ConfigProblem(at, message, file=file, line=line) for at, message, file, line in rest[0]
        )
    return rest[0], rest[1]
