"""The client TLS settings every kind with a TLS step shares (http, tcp, tls, smtp): the
dataclass, its builder from a ``client_tls`` config mapping, and how the status page lists it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config_source import ConfigProblem, KeyPath, Source, given

__all__ = ["NO_CLIENT_TLS", "ClientTLS", "build_client_tls", "tls_options"]


@dataclass(frozen=True, slots=True)
class ClientTLS:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: str | None = None


# Shared by every target without TLS settings.
NO_CLIENT_TLS = ClientTLS()


def build_client_tls(raw: Mapping[str, Any], at: KeyPath, source: Source) -> ClientTLS:
    if not raw:
        return NO_CLIENT_TLS
    files: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in raw:
            path = source.path(raw[key])
            if not path.is_file():
                raise ConfigProblem((*at, key), f"file {str(path)!r} does not exist")
            files[key] = str(path)
    return ClientTLS(**given(raw, "server_name", "insecure_skip_verify", "min_version"), **files)


def tls_options(tls: ClientTLS) -> dict[str, str]:
    """The settings as the status page lists them (only those that differ from the default)."""
    options = {}
    if tls.server_name:
        options["tls server name"] = tls.server_name
    if tls.min_version:
        options["tls min version"] = tls.min_version
    if tls.ca_file:
        options["tls ca file"] = tls.ca_file
    if tls.cert_file:
        options["tls client certificate"] = tls.cert_file
    if tls.insecure_skip_verify:
        options["tls verification"] = "skipped (insecure_skip_verify)"
    return options
