"""Network addresses as the config writes them and as messages show them: ``host:port`` with
IPv6 hosts in brackets, and the ``ip_family`` setting's socket families.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath

__all__ = ["IP_FAMILIES", "build_address", "format_address", "parse_address"]

# The ``ip_family`` setting of every kind that connects.
IP_FAMILIES = {"any": socket.AF_UNSPEC, "ip4": socket.AF_INET, "ip6": socket.AF_INET6}


def format_address(host: str, port: int) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (the schema checked the shape) -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def build_address(raw: Mapping[str, Any], at: KeyPath) -> tuple[str, int]:
    """A target's ``address`` key as (host, port), the port checked."""
    host, port = parse_address(raw["address"])
    if not 0 < port < 65536:
        raise ConfigProblem((*at, "address"), f"port {port} is out of range (1-65535)")
    return host, port
