"""Modules imported when first used, so that commands which never probe start quickly.

``check-config`` of a large file spends a good part of its time importing: aiohttp, dnspython's
query machinery, cryptography, aiosmtplib and jsonschema are needed by the probers and by the
wording of schema errors, not by the builders of a valid config. A module that uses one of them
only inside functions binds it with ``lazy_module`` (the real import under ``TYPE_CHECKING``, for
mypy), and the import happens at the first attribute read, as ``importlib.util.LazyLoader`` does.
Each probe kind names the lazily bound modules its probes use (``Kind.imports``), and the probe
runner's ``prepare`` imports those of a target's kind before the target's first probe, so no
probe pays for an import within its timeout, and an exporter imports only what its configured
kinds need (cryptography's X.509 parser alone is about 9 MiB resident, dnspython's query
machinery, aiosmtplib and jsonschema a few more).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from types import ModuleType

__all__ = ["import_now", "lazy_module"]

# Modules bound by ``lazy_module`` and not executed by ``import_now`` yet, by name.
_LAZY: dict[str, ModuleType] = {}


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, executed when one of its attributes is first read (at once when
    it is already imported). A dotted name's parent packages are imported now."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    _LAZY[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def import_now(names: Iterable[str]) -> None:
    """Imports the modules ``names`` (those bound by ``lazy_module`` included) that are not
    imported yet; cheap for those that are."""
    for name in names:
        module = _LAZY.pop(name, None)
        if module is not None:
            getattr(module, "__spec__", None)  # any attribute read executes a lazy module
        elif name not in sys.modules:
            importlib.import_module(name)
