"""The import structure of ``exporter``: no cycles, also counting imports made only for type
checking, and no module importing a later layer (docs/architecture.md, "Import layers")."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "exporter"

# First to last; a module may import its own layer and earlier ones. Patterns are matched whole
# against dotted module names, first match wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            r"exporter",
            r"exporter\.(clock|units|reasons|config_source|addresses|redaction|families|lazy_import)",
            r"exporter\.(histogram|exposition|results|logs|recent|web_limits|history|malloc_trim"
            r"|gc_pause)",
            r"exporter\.protobuf(\.\w+)?",
        ),
    ),
    ("probe kinds", (r"exporter\.probes(\.(?!runner$)\w+)?",)),
    (
        "config",
        (
            r"exporter\.(targets|config|config_yaml|config_schema|config_checks|config_process"
            r"|config_versions)",
            r"exporter\.(maintenance|status_settings)",
            r"exporter\.heartbeats\.(spec|schedule)",
            r"exporter\.host\.settings",
        ),
    ),
    (
        "state",
        (
            r"exporter\.probes\.runner",
            r"exporter\.(stats|connectivity)",
            r"exporter\.heartbeats(\.\w+)?",
            r"exporter\.host(\.\w+)?",
        ),
    ),
    ("scheduling", (r"exporter\.scheduler",)),
    ("rendering", (r"exporter\.collectors(\.\w+)?",)),
    (
        "serving",
        (
            r"exporter\.(runtime|app|probe_command|cli|__main__|gzip_stream|event_loop)",
            r"exporter\.status(\.\w+)?",
            r"exporter\.report(\.\w+)?",
        ),
    ),
)
# Serving modules that live in a package of an earlier layer.
SERVING = {"exporter.heartbeats.routes", "exporter.heartbeats.wrap"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every exporter module ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in known else node.module for n in names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def layer(module: str) -> int:
    if module in SERVING:
        return len(LAYERS) - 1
    for index, (_name, patterns) in enumerate(LAYERS):
        if any(re.fullmatch(pattern, module) for pattern in patterns):
            return index
    raise AssertionError(f"{module} is in no layer: place it in LAYERS and docs/architecture.md")


def test_every_module_has_a_layer() -> None:
    for module in graph():
        layer(module)


def test_no_module_imports_a_later_layer() -> None:
    wrong = [
        f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert not wrong


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles


# What each third-party import name is installed as (its distribution in pyproject.toml).
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "jsonpath": "python-jsonpath",
    "dns": "dnspython",
    "jsonschema_rs": "jsonschema-rs",
    "jsonschema_specifications": "jsonschema-specifications",
    "google": "protobuf",
    "prometheus_client": "prometheus-client",
    "jinja2": "Jinja2",
    "markupsafe": "MarkupSafe",
    "psycopg_pool": "psycopg-pool",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
}


def third_party_imports() -> dict[str, set[str]]:
    """Every module outside the standard library and the package that ``exporter`` imports,
    by the file that imports it."""
    found: dict[str, set[str]] = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            for module in names:
                top = module.partition(".")[0]
                if top != "exporter" and top not in sys.stdlib_module_names:
                    found.setdefault(module, set()).add(name)
    return found


def test_every_third_party_import_is_declared() -> None:
    declared = (PACKAGE.parent / "pyproject.toml").read_text().lower()
    for module, users in third_party_imports().items():
        top = module.partition(".")[0]
        distribution = DISTRIBUTIONS.get(top, top).lower()
        assert f'"{distribution}' in declared, f"{module} (in {sorted(users)}) is not declared"


def test_only_public_aiohttp_modules_are_imported() -> None:
    aiohttp_modules = {m for m in third_party_imports() if m.partition(".")[0] == "aiohttp"}
    assert aiohttp_modules <= {"aiohttp", "aiohttp.web"}, aiohttp_modules


# Modules that checking a config of HTTP targets has no use for: other kinds and their libraries,
# the event loop, the server's limits and the ping command.
NOT_FOR_HTTP_CHECK = (
    "asyncio",
    "dns.name",
    "exporter.probes.dns",
    "exporter.probes.grpc",
    "exporter.probes.flow",
    "exporter.probes.websocket",
    "exporter.web_limits",
    "exporter.heartbeats.wrap",
    "aiohttp",
)


def checked_imports(path: Path) -> set[str]:
    """The modules ``check-config`` of ``path`` executes (lazily bound ones left out)."""
    code = (
        "import sys\n"
        "from exporter import cli\n"
        "assert cli.main(['check-config', sys.argv[1]]) == 0\n"
        "print(' '.join(n for n, m in sys.modules.items() if type(m).__name__ != '_LazyModule'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_check_config_of_http_targets_imports_only_what_builds_them(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text("targets:\n  - {name: api, kind: http, url: 'http://127.0.0.1:8080/'}\n")
    imported = checked_imports(path)
    assert "exporter.probes.http" in imported
    assert [name for name in NOT_FOR_HTTP_CHECK if name in imported] == []


def test_check_config_of_tcp_and_tls_targets_imports_no_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "lookout.yml"
    path.write_text(
        "targets:\n"
        "  - {name: redis, kind: tcp, address: '127.0.0.1:6379'}\n"
        "  - {name: mail, kind: tls, address: '127.0.0.1:587', tls: {starttls: smtp}}\n"
    )
    imported = checked_imports(path)
    assert {"exporter.probes.tcp", "exporter.probes.tls", "exporter.probes.starttls"} <= imported
    assert "asyncio" not in imported
