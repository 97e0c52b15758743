"""The Dockerfile builds the image the chart expects: checked statically, since no engine runs here.

The checks read the Dockerfile's instructions: two stages from slim Python, nothing that compiles or
installs in the final stage, a numeric non-root user equal to the chart's, a read-only-root-safe
layout, a HEALTHCHECK on /-/healthy, and a build context (.dockerignore) holding exactly what the
build copies. The HEALTHCHECK command itself runs against a loopback server.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.cli import DEFAULT_LISTEN, build_parser

ROOT = Path(__file__).resolve().parent.parent
CHART_VALUES: dict[str, Any] = yaml.safe_load(
    (ROOT / "helm" / "lookout-exporter" / "values.yaml").read_text(encoding="utf-8")
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.all(instruction)
        assert found, f"no {instruction} in stage {self.name or self.base}"
        return found[-1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        name, _, args = whole.partition(" ")
        result.append((name.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages() -> list[Stage]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    arguments: dict[str, str] = {}
    found: list[Stage] = []
    for name, args in instructions(text):
        if name == "ARG" and not found and "=" in args:
            key, _, default = args.partition("=")
            arguments[key] = default
        elif name == "FROM":
            words = args.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], words[0])
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base, alias))
        elif found:
            found[-1].instructions.append((name, args))
    return found


def exec_form(args: str) -> list[str]:
    parsed: list[str] = json.loads(args)
    return parsed


def test_the_image_is_built_in_two_stages_from_slim_python() -> None:
    build, final = stages()
    for stage in (build, final):
        assert re.fullmatch(r"python:3\.1[1-9][.0-9]*-slim(-\w+)?", stage.base), stage.base
    assert build.name == "build"
    assert "--from=build /opt/lookout /opt/lookout" in final.all("COPY")
    assert any("pip install" in run for run in build.all("RUN"))


def test_the_final_stage_has_no_build_tools_and_no_installer() -> None:
    final = stages()[-1]
    runs = " ".join(final.all("RUN"))
    for tool in ("apt-get", "apk", "gcc", "make", "build-essential", "pip install", "curl"):
        assert tool not in runs
    assert "pip uninstall --yes pip" in runs
    assert all(copy.startswith("--from=build ") for copy in final.all("COPY"))


def test_the_image_runs_as_the_chart_non_root_user() -> None:
    final = stages()[-1]
    user, _, group = final.last("USER").partition(":")
    assert user.isdigit()
    assert group.isdigit()
    assert int(user) != 0
    assert int(user) == CHART_VALUES["podSecurityContext"]["runAsUser"]
    assert int(group) == CHART_VALUES["podSecurityContext"]["runAsGroup"]
    runs = " ".join(final.all("RUN"))
    assert f"useradd --system --uid {user} --gid {group}" in runs
    assert f"chown {user}:{group} /var/lib/lookout" in runs


def test_the_image_needs_no_writable_root_filesystem() -> None:
    """Only the heartbeat volume (the working directory) and /tmp are written."""
    build, final = stages()
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert any("compileall" in run for run in build.all("RUN"))
    assert exec_form(final.last("VOLUME")) == ["/var/lib/lookout"]
    assert final.last("WORKDIR") == "/var/lib/lookout"
    assert CHART_VALUES["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_entrypoint_is_the_exporter_and_the_default_command_parses() -> None:
    final = stages()[-1]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (entrypoint,) = exec_form(final.last("ENTRYPOINT"))
    assert entrypoint in pyproject["project"]["scripts"]
    command = exec_form(final.last("CMD"))
    parsed = build_parser().parse_args(command)
    assert parsed.command == "run"
    assert parsed.listen == (None, int(final.last("EXPOSE")))


def test_the_exposed_port_is_the_exporter_and_chart_port() -> None:
    final = stages()[-1]
    port = int(final.last("EXPOSE"))
    assert port == int(DEFAULT_LISTEN.rpartition(":")[2]) == CHART_VALUES["service"]["port"]


def healthcheck() -> list[str]:
    options, _, command = stages()[-1].last("HEALTHCHECK").partition(" CMD ")
    assert "--timeout=" in options
    assert "--interval=" in options
    return exec_form(command)


def test_the_healthcheck_asks_the_liveness_endpoint() -> None:
    command = healthcheck()
    port = stages()[-1].last("EXPOSE")
    assert command[:2] == ["python", "-c"]
    assert f"'http://127.0.0.1:{port}/-/healthy'" in command[2]


@pytest.mark.parametrize(
    ("status", "healthy"),
    [pytest.param(200, True, id="healthy"), pytest.param(503, False, id="unhealthy")],
)
async def test_the_healthcheck_command_reports_the_endpoint_status(
    status: int, healthy: bool
) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=status, text="healthy" if healthy else "unhealthy")

    app = web.Application()
    app.router.add_get("/-/healthy", health)
    port = stages()[-1].last("EXPOSE")
    async with TestServer(app, host="127.0.0.1") as server:
        script = healthcheck()[2].replace(f"127.0.0.1:{port}", f"127.0.0.1:{server.port}")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(30):
            code = await process.wait()
    assert (code == 0) is healthy


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_the_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    build = stages()[0]
    sources = [src for copy in build.all("COPY") for src in shlex.split(copy)[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    assert not ignored("exporter/config.schema.json", patterns)
    for path in (
        ".git/config",
        ".venv/bin/python",
        "tests/test_dockerfile.py",
        "helm/lookout-exporter/values.yaml",
        "exporter/__pycache__/cli.cpython-312.pyc",
        "exporter/probes/__pycache__/http.cpython-312.pyc",
        "data/heartbeats.sqlite",
    ):
        assert ignored(path, patterns), path
