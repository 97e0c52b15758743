"""The gRPC kind: the standard health-checking protocol, ``grpc.health.v1.Health/Check`` for one
service name (``""``: the server as a whole), plaintext or TLS, with metadata headers.

Before the call, the prober opens its own TCP connection (and TLS handshake) to the address:
gRPC's channel hides its connection, so this is where the phases ``resolve``, ``connect`` and
``tls``, the exact connection and certificate failure reasons and the certificate metrics come
from, as for every other kind. The call itself then goes over a
fresh gRPC channel (its own connection, no subchannel shared with other probes, no retries):
phase ``rpc``. That channel's connection attempt is bounded by ``CONNECT_LIMIT_MS``: it outlives
a probe cut by its timeout by at most that long (grpcio does not cancel it with the call). The
answer's serving status must be ``expect.status`` (default ``SERVING``);
``NOT_SERVING``, ``UNKNOWN``, ``SERVICE_UNKNOWN`` (also the server's ``NOT_FOUND`` for a name it
does not know) and a failed call (its gRPC status code in the message) fail as ``grpc_status``.

grpcio and grpcio-health-checking are the optional extra ``grpc``: without them this module
still loads, and a config with a grpc target fails to load with an error that says so.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.addresses import build_address, format_address
from exporter.config_source import ConfigProblem, KeyPath, Source
from exporter.exposition import label_pairs
from exporter.families import Family
from exporter.probes.client_tls import ClientTLS, build_client_tls, tls_options
from exporter.probes.connection import abort, open_stream, start_tls
from exporter.probes.context import ProbeContext
from exporter.probes.kind import Kind, always
from exporter.probes.tlsinfo import observe_handshakes
from exporter.reasons import ProbeFailure, Reason
from exporter.redaction import secret_header
from exporter.results import Sample

__all__ = ["CHECK_METHOD", "KIND", "GrpcObservation", "GrpcSpec", "GrpcTLS"]

CHECK_METHOD = "/grpc.health.v1.Health/Check"
# Whether the optional extra "grpc" is installed.
AVAILABLE = all(importlib.util.find_spec(name) for name in ("grpc", "grpc_health"))
SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
# How long the gRPC channel's own connection attempt may take, in milliseconds.
CONNECT_LIMIT_MS = 2000
# Replies beyond this are not health answers.
_MAX_REPLY = 64 * 1024

STATUS_CODE = Family(
    "lookout_grpc_status_code",
    "gauge",
    "gRPC status code of the latest scheduled health check call (0 OK, 5 NOT_FOUND, 12 "
    "UNIMPLEMENTED, 14 UNAVAILABLE, ...).",
)
HEALTH_STATUS = Family(
    "lookout_grpc_health_status",
    "gauge",
    "1 for the serving status the latest scheduled health check answered (SERVING, NOT_SERVING, "
    "UNKNOWN, SERVICE_UNKNOWN).",
)


@dataclass(frozen=True, slots=True)
class GrpcTLS:
    """TLS settings with the files the gRPC channel needs read when the config is loaded."""

    settings: ClientTLS
    root_certificates: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class GrpcSpec:
    host: str
    port: int
    service: str = ""
    tls: GrpcTLS | None = None
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    status: str = "SERVING"


@dataclass(frozen=True, slots=True)
class GrpcObservation:
    """The call's gRPC status code and, when the server answered, the serving status."""

    code: str  # the gRPC status code's name: OK, NOT_FOUND, UNAVAILABLE, ...
    number: int
    serving: str | None = None

    @property
    def status_code(self) -> int:
        return self.number

    def samples(self) -> Iterator[Sample]:
        yield STATUS_CODE, self.status_code, ""
        if self.serving is not None:
            yield HEALTH_STATUS, 1, label_pairs([("status", self.serving)])

    def json(self) -> dict[str, Any]:
        return {"grpc_status": self.code, "serving_status": self.serving}

    def summary(self) -> list[str]:
        parts = [f"gRPC {self.code}"]
        if self.serving is not None:
            parts.append(self.serving)
        return parts


def _read(value: str | None) -> bytes | None:
    return Path(value).read_bytes() if value is not None else None


def build(raw: Mapping[str, Any], at: KeyPath, source: Source) -> GrpcSpec:
    if not AVAILABLE:
        raise ConfigProblem(
            (*at, "kind"),
            "kind grpc needs grpcio and grpcio-health-checking: install lookout-exporter[grpc]",
        )
    host, port = build_address(raw, at)
    settings = raw.get("grpc", {})
    gat: KeyPath = (*at, "grpc")
    tls = None
    if settings.get("tls", False) is not False:
        tls_raw = {} if settings["tls"] is True else settings["tls"]
        client = build_client_tls(tls_raw, (*gat, "tls"), source)
        if client.insecure_skip_verify:
            raise ConfigProblem(
                (*gat, "tls", "insecure_skip_verify"),
                "gRPC's TLS always verifies the server; give its CA as ca_file instead",
            )
        try:
            tls = GrpcTLS(
                client,
                _read(client.ca_file),
                _read(client.key_file),
                _read(client.cert_file),
            )
        except OSError as exc:
            raise ConfigProblem((*gat, "tls"), f"cannot read a TLS file: {exc}") from None
    metadata = dict(settings.get("metadata", {}))
    for name, path in settings.get("metadata_files", {}).items():
        metadata[name] = source.read_text(path, (*gat, "metadata_files", name))
    return GrpcSpec(
        host=host,
        port=port,
        service=settings.get("service", ""),
        tls=tls,
        metadata=tuple(metadata.items()),
        status=raw.get("expect", {}).get("status", "SERVING"),
    )


def endpoint(spec: GrpcSpec) -> str:
    service = spec.service or "(server)"
    return f"{format_address(spec.host, spec.port)} {service}"


def options(spec: GrpcSpec) -> dict[str, str]:
    settings = {"expected status": spec.status, "tls": "yes" if spec.tls else "no (plaintext)"}
    if spec.metadata:
        settings["metadata"] = ", ".join(name for name, _ in spec.metadata)
    return settings | (tls_options(spec.tls.settings) if spec.tls else {})


def request(spec: GrpcSpec) -> dict[str, Any]:
    return {
        "method": CHECK_METHOD,
        "headers": [
            {"name": name, "value": "<redacted>" if secret_header(name) else value}
            for name, value in spec.metadata
        ],
        "body_bytes": _request_size(spec.service),
    }


def _request_size(service: str) -> int:
    """The serialized HealthCheckRequest: field 1 (tag, varint length, bytes) unless empty."""
    size = len(service.encode())
    if not size:
        return 0
    return 1 + (size.bit_length() + 6) // 7 + size


async def probe(spec: GrpcSpec, ctx: ProbeContext) -> None:
    trace = ctx.trace
    with observe_handshakes(ctx.clock) as handshake:
        _reader, writer = await open_stream(spec.host, spec.port, "any", trace)
        try:
            if spec.tls is not None:
                await start_tls(writer, spec.tls.settings, spec.host, trace, handshake)
        finally:
            abort(writer)
    with trace.phase("rpc"):
        code, number, serving, details = await _check(spec)
    trace.observation = GrpcObservation(code, number, serving)
    if serving is None:
        detail = f"{code}: {details}" if details else code
        trace.check("status", False, f"the call failed with {detail}")
        raise ProbeFailure(Reason.GRPC_STATUS, f"health check failed with gRPC status {detail}")
    name = repr(spec.service) if spec.service else "the server"
    detail = f"{name} is {serving}, expected {spec.status}"
    if not trace.check("status", serving == spec.status, detail):
        raise ProbeFailure(Reason.GRPC_STATUS, detail)


async def _check(spec: GrpcSpec) -> tuple[str, int, str | None, str]:
    """(gRPC status code name and number, serving status or None when the call failed, error
    details)."""
    import grpc  # the optional extra, checked by build()
    from grpc import aio
    from grpc_health.v1 import health_pb2

    target = format_address(spec.host, spec.port)
    channel_options: list[tuple[str, Any]] = [
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own, as every probe
        ("grpc.enable_retries", 0),
        # Bounds the channel's own connection attempt (also its HTTP/2 handshake): a probe cut
        # by its timeout leaves that attempt behind, and it must end soon after.
        ("grpc.min_reconnect_backoff_ms", CONNECT_LIMIT_MS),
        ("grpc.max_receive_message_length", _MAX_REPLY),
    ]
    if spec.tls is None:
        channel = aio.insecure_channel(target, options=channel_options)
    else:
        tls = spec.tls
        if tls.settings.server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls.settings.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root_certificates,
            private_key=tls.private_key,
            certificate_chain=tls.certificate_chain,
        )
        channel = aio.secure_channel(target, credentials, options=channel_options)
    try:
        call = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            response = await call(
                health_pb2.HealthCheckRequest(service=spec.service),
                metadata=spec.metadata or None,
                wait_for_ready=False,
            )
        except aio.AioRpcError as exc:
            code = exc.code()
            number: int = code.value[0]
            details = exc.details() or ""
            if code is grpc.StatusCode.NOT_FOUND:  # the protocol's answer for an unknown name
                return code.name, number, "SERVICE_UNKNOWN", details
            return code.name, number, None, details
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return "OK", 0, status, ""
    finally:
        await channel.close(grace=None)


KIND = Kind(
    name="grpc",
    imports=always("cryptography.x509"),
    build=build,
    probe=probe,
    endpoint=endpoint,
    options=options,
    families=(STATUS_CODE, HEALTH_STATUS),
    request=request,
)
