"""The ``lookout-exporter`` command: run the exporter, check a config, probe one target once
(``probe_command``), ping a heartbeat or wrap a job (``heartbeats.wrap``), print the version.

``run`` is the default subcommand, so ``lookout-exporter --config lookout.yml`` works, and
without ``--config`` it runs the embedded default config.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import exporter
from exporter import config
from exporter.config import ConfigError
from exporter.gc_pause import collect_young_less_often
from exporter.lazy_import import lazy_module
from exporter.logs import setup_logging
from exporter.units import parse_duration

if TYPE_CHECKING:
    import asyncio

    from exporter import web_limits
    from exporter.heartbeats import wrap
    from exporter.scheduler import Shard
else:  # the server's and ``ping``'s modules: ``check-config`` needs none of them
    asyncio = lazy_module("asyncio")
    web_limits = lazy_module("exporter.web_limits")
    wrap = lazy_module("exporter.heartbeats.wrap")

# The server's modules (aiohttp, the probes, the app) are imported by the commands that use
# them, so that ``check-config`` of a large file starts at once.

__all__ = ["main"]

log = logging.getLogger("exporter")

DEFAULT_LISTEN = ":9471"
SUBCOMMANDS = ("run", "check-config", "probe", "ping", "report", "version")
CHECK_CONFIG_HELP = "validate a config file (exit 0 valid, 1 not)"
# Seconds a thread may hold the interpreter lock while another waits for it (Python's default
# is 0.005). The heartbeat store's writer thread takes the lock several times per commit, and
# while the event loop works through a scrape or a reload each of those waits lasted up to the
# whole interval: the longest ping answer during a 10,000-target reload was 206-278 ms, and is
# 49-63 ms with 1 ms (benchmarks/config_load.py --scrape-every 1).
SWITCH_INTERVAL = 0.001


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid listen address {text!r}, use HOST:PORT")
    host = host.strip("[]")
    return (host or None), int(port)


def _shard(text: str) -> Shard:
    from exporter.scheduler import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookout-exporter",
        description="Prometheus exporter: probes endpoints, receives heartbeats, reports the host.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the exporter (the default)")
    run.add_argument("--config", help="YAML config file (default: the embedded default config)")
    run.add_argument(
        "--web.listen-address",
        dest="listen",
        type=parse_listen_address,
        default=parse_listen_address(DEFAULT_LISTEN),
        help=f"address to serve on (default {DEFAULT_LISTEN})",
    )
    run.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive,
        default=web_limits.ServerLimits().max_connections,
        help="client connections served at once, at most a quarter of the open-files limit "
        f"(default {web_limits.ServerLimits().max_connections})",
    )
    run.add_argument(
        "--web.read-timeout",
        dest="read_timeout",
        type=_duration,
        default=web_limits.ServerLimits().read_timeout,
        help="a request head must arrive within this of connecting or of the previous "
        "response, its body within this of the head (default 30s)",
    )
    run.add_argument("--location", help="location label for every probe series")
    run.add_argument("--shard", type=_shard, help="probe only share I of N of the targets (I/N)")
    run.add_argument(
        "--storage.path",
        dest="storage_path",
        type=Path,
        default=Path("data"),
        help="directory of the heartbeat store (default: data, in the working directory)",
    )
    run.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=["debug", "info", "warning", "error"],
    )
    run.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    check = commands.add_parser("check-config", help=CHECK_CONFIG_HELP)
    check.add_argument("file")
    from exporter import probe_command

    probe_command.add_parser(commands)
    ping = commands.add_parser(
        "ping", help="send a heartbeat, or wrap a job: ping NAME --url URL -- CMD ARGS..."
    )
    wrap.add_arguments(ping)
    from exporter.report import command as report_command

    report_command.add_parser(commands)
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*SUBCOMMANDS, "-h", "--help"):
        args_list.insert(0, "run")
    if args_list[0] == "check-config":
        check = argparse.ArgumentParser(prog="lookout-exporter check-config")
        check.description = CHECK_CONFIG_HELP
        check.add_argument("file")
        return check_config(check.parse_args(args_list[1:]).file)
    args_list, job = wrap.split_job(args_list)
    args = build_parser().parse_args(args_list)
    if args.command == "version":
        print(f"lookout-exporter {exporter.__version__}")
        return 0
    if args.command == "probe":
        from exporter import probe_command

        return probe_command.run(args)
    if args.command == "ping":
        return wrap.command(args, job)
    if args.command == "report":
        from exporter.report import command as report_command

        return report_command.run(args)
    return run(args)


def check_config(path: str) -> int:
    setup_logging("warning", "logfmt")  # an internal error is logged with its traceback
    try:
        loaded = config.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{path}: valid, {len(loaded.targets)} targets")
    return 0


def _self_address(host: str | None, port: int) -> str:
    if host in (None, "", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    host, port = args.listen
    environ = dict(os.environ)
    if args.config is None:
        # Only the embedded config refers to the exporter's own address.
        environ.setdefault("LOOKOUT_SELF_ADDRESS", _self_address(host, port))
    from exporter.config_process import load_at_start

    try:
        loaded = load_at_start(args.config, environ)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("invalid config", extra={"problem": problem})
        return 1
    from aiohttp import web

    from exporter.app import create_app
    from exporter.heartbeats.store import StoreError
    from exporter.runtime import RUNTIME, Options, ReloadOutcome

    soft, _hard = web_limits.raise_open_files_limit()
    limits = web_limits.ServerLimits(
        max_connections=args.max_connections, read_timeout=args.read_timeout
    )
    options = Options(
        config_path=args.config,
        location=args.location,
        shard=args.shard,
        storage_path=args.storage_path,
        server=limits,
    )
    app = create_app(options, loaded)

    async def on_startup(app: web.Application) -> None:
        runtime = app[RUNTIME]
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[ReloadOutcome]] = set()  # the loop keeps only weak references

        def reload_on_signal() -> None:
            task = loop.create_task(runtime.reload(), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload_on_signal)
        log.info(
            "listening",
            extra={
                "address": f"{host or '*'}:{port}",
                "config": loaded.source,
                "version": exporter.__version__,
                "open_files_limit": soft,
                "max_connections": runtime.server.limit,
            },
        )

    app.on_startup.append(on_startup)
    sys.setswitchinterval(SWITCH_INTERVAL)
    collect_young_less_often()
    try:
        web_limits.serve(app, host, port, limits, app[RUNTIME].server, _new_loop())
    except StoreError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 1
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (cheaper sockets and TLS), else the standard event loop."""
    try:
        from exporter.event_loop import NumericHostsLoop
    except ModuleNotFoundError as exc:
        if exc.name != "uvloop":
            raise
        return asyncio.new_event_loop()
    return NumericHostsLoop()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration above 0")
    return value
