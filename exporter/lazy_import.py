"""Modules imported when first used, so that commands which never probe start quickly.

``check-config`` of a large file spends a good part of its time importing: aiohttp, dnspython's
query machinery, cryptography, aiosmtplib and jsonschema are needed by the probers and by the
wording of schema errors, not by the builders of a valid config. A module that uses one of them
only inside functions binds it with ``lazy_module`` (the real import under ``TYPE_CHECKING``, for
mypy), and the import happens at the first attribute read, as ``importlib.util.LazyLoader`` does.
Whatever runs probes calls ``import_now`` first (``probes.runner`` does, when imported), so no
probe pays for an import within its timeout.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["import_now", "lazy_module"]

_LAZY: list[ModuleType] = []


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
    _LAZY.append(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def import_now() -> None:
    """Imports every module bound by ``lazy_module`` that is not imported yet."""
    for module in _LAZY:
        getattr(module, "__spec__", None)  # any attribute read executes a lazy module
