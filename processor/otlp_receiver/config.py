"""The ``otlp`` receiver's config: which protocols to serve, where, and with which server
options (the collector's ``receiver/otlpreceiver/config.go`` with configgrpc and confighttp)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftline.durations import non_negative_duration_problem, parse_duration
from driftline.processor.component import not_honoured
from driftline.processor.component.auth import AuthConfig
from driftline.processor.component.endpoints import endpoint_problem
from driftline.processor.component.tls import TlsConfig

DEFAULT_GRPC_ENDPOINT = "127.0.0.1:4317"
DEFAULT_HTTP_ENDPOINT = "127.0.0.1:4318"
DEFAULT_MAX_RECV_MSG_SIZE_MIB = 4
_MIB = 1 << 20
# The collector's confighttp default; applies to the decompressed body too (gzip bombs).
DEFAULT_MAX_REQUEST_BODY_SIZE = 20 * _MIB
_MS_PER_S = 1000
# 0: no limit of the server's own (gRPC's default), as in the collector.
DEFAULT_MAX_CONCURRENT_STREAMS = 0
_NO_METADATA = ("requests reach the pipelines without their client's metadata (no "
                "processor here reads it)")
_NO_CORS = ("OTLP/HTTP answers no CORS preflight here; put a proxy in front to serve "
            "browsers")


def _security_problems(tls: TlsConfig | None, auth: AuthConfig | None) -> list[str]:
    problems = []
    if tls is not None:
        problems.extend(f"tls::{p}" for p in tls.server_problems())
    if auth is not None:
        problems.extend(f"auth::{p}" for p in auth.validate())
    return problems


@dataclass(frozen=True, slots=True)
class ServerParametersConfig:
    """``keepalive::server_parameters`` (the collector's configgrpc keys): connection ages and
    the server's own pings. A duration of 0 (the default) leaves gRPC's own behaviour."""

    max_connection_idle: str | float = 0
    max_connection_age: str | float = 0
    max_connection_age_grace: str | float = 0
    time: str | float = 0
    timeout: str | float = 0

    def options(self) -> list[tuple[str, int]]:
        names = (("max_connection_idle", "grpc.max_connection_idle_ms"),
                 ("max_connection_age", "grpc.max_connection_age_ms"),
                 ("max_connection_age_grace", "grpc.max_connection_age_grace_ms"),
                 ("time", "grpc.keepalive_time_ms"),
                 ("timeout", "grpc.keepalive_timeout_ms"))
        return [(option, round(parse_duration(getattr(self, key)) * _MS_PER_S))
                for key, option in names if parse_duration(getattr(self, key)) > 0]

    def validate(self) -> list[str]:
        return [p for key in ("max_connection_idle", "max_connection_age",
                              "max_connection_age_grace", "time", "timeout")
                if (p := non_negative_duration_problem(key, getattr(self, key)))]


@dataclass(frozen=True, slots=True)
class EnforcementPolicyConfig:
    """``keepalive::enforcement_policy``: how often a client may ping."""

    min_time: str | float = 0
    permit_without_stream: bool = False

    def options(self) -> list[tuple[str, int]]:
        options = [("grpc.keepalive_permit_without_calls", int(self.permit_without_stream))]
        if (min_time_s := parse_duration(self.min_time)) > 0:
            options.append(("grpc.http2.min_ping_interval_without_data_ms",
                            round(min_time_s * _MS_PER_S)))
        return options

    def validate(self) -> list[str]:
        problem = non_negative_duration_problem("min_time", self.min_time)
        return [problem] if problem else []


@dataclass(frozen=True, slots=True)
class KeepaliveConfig:
    """``protocols::grpc::keepalive``, as the collector's configgrpc reads it; honoured as
    the gRPC server's keepalive and connection-age options."""

    server_parameters: ServerParametersConfig | None = None
    enforcement_policy: EnforcementPolicyConfig | None = None

    def options(self) -> list[tuple[str, int]]:
        return [*(self.server_parameters.options() if self.server_parameters else []),
                *(self.enforcement_policy.options() if self.enforcement_policy else [])]

    def validate(self) -> list[str]:
        return [*(f"server_parameters::{p}" for p in (
                    self.server_parameters.validate() if self.server_parameters else [])),
                *(f"enforcement_policy::{p}" for p in (
                    self.enforcement_policy.validate() if self.enforcement_policy else []))]


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    """``protocols::grpc``: where the gRPC server listens, how big a message may be, how many
    concurrent streams a connection may have, keepalive, TLS and authentication."""

    endpoint: str = DEFAULT_GRPC_ENDPOINT
    max_recv_msg_size_mib: int = DEFAULT_MAX_RECV_MSG_SIZE_MIB
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    keepalive: KeepaliveConfig | None = None
    include_metadata: bool = field(default=False, metadata=not_honoured(
        _NO_METADATA, honoured=(False,)))
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None

    def server_options(self) -> list[tuple[str, int]]:
        """The gRPC server options these settings stand for."""
        options = [("grpc.max_receive_message_length", self.max_recv_msg_size_mib * _MIB)]
        if self.max_concurrent_streams > 0:
            options.append(("grpc.max_concurrent_streams", self.max_concurrent_streams))
        return options + (self.keepalive.options() if self.keepalive else [])

    def validate(self) -> list[str]:
        problems = []
        streams = self.max_concurrent_streams
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 0:
            problems.append("max_concurrent_streams: must be 0 (no limit) or a positive "
                            f"number of streams, got {streams!r}")
        if self.keepalive is not None:
            problems.extend(f"keepalive::{p}" for p in self.keepalive.validate())
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        size = self.max_recv_msg_size_mib
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append("max_recv_msg_size_mib: must be a positive number of MiB, got "
                            f"{size!r}")
        return problems + _security_problems(self.tls, self.auth)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``protocols::http``: where the OTLP/HTTP server listens, how big a request may be."""

    endpoint: str = DEFAULT_HTTP_ENDPOINT
    # Bytes, compressed and decompressed alike (the collector's confighttp key).
    max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE
    include_metadata: bool = field(default=False, metadata=not_honoured(
        _NO_METADATA, honoured=(False,)))
    # allowed_origins, allowed_headers, max_age, as the collector's confighttp reads them.
    cors: dict[str, Any] | None = field(default=None, metadata=not_honoured(_NO_CORS))
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None

    def validate(self) -> list[str]:
        problems = []
        if (problem := endpoint_problem("endpoint", self.endpoint)) is not None:
            problems.append(problem)
        size = self.max_request_body_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            problems.append("max_request_body_size: must be a positive number of bytes, got "
                            f"{size!r}")
        return problems + _security_problems(self.tls, self.auth)


@dataclass(frozen=True, slots=True)
class ProtocolsConfig:
    """``protocols``: each protocol written is served, with its defaults where it is silent.

    In YAML a protocol left out of a written ``protocols`` mapping is off; ``grpc:`` alone
    turns gRPC on with its defaults (as in the collector).
    """

    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None


def _default_protocols() -> ProtocolsConfig:
    return ProtocolsConfig(grpc=GrpcConfig())


@dataclass(frozen=True, slots=True)
class OtlpReceiverConfig:
    """The receiver's YAML node, e.g. ``protocols: {grpc: {endpoint: "127.0.0.1:4317"},
    http: {endpoint: "127.0.0.1:4318"}}``; without ``protocols``, gRPC on its default."""

    protocols: ProtocolsConfig = field(default_factory=_default_protocols)

    def validate(self) -> list[str]:
        grpc_config, http_config = self.protocols.grpc, self.protocols.http
        if grpc_config is None and http_config is None:
            return ["protocols: must enable at least one protocol: grpc (e.g. grpc: "
                    f"{{endpoint: {DEFAULT_GRPC_ENDPOINT}}}) or http (e.g. http: "
                    f"{{endpoint: {DEFAULT_HTTP_ENDPOINT}}})"]
        problems = []
        if grpc_config is not None:
            problems.extend(f"protocols::grpc::{p}" for p in grpc_config.validate())
        if http_config is not None:
            problems.extend(f"protocols::http::{p}" for p in http_config.validate())
        if (grpc_config is not None and http_config is not None
                and grpc_config.endpoint == http_config.endpoint
                and not grpc_config.endpoint.endswith(":0")):
            problems.append(f"protocols::http::endpoint: {http_config.endpoint!r} is also "
                            "protocols::grpc::endpoint; give each protocol its own port "
                            "(by convention 4317 for gRPC, 4318 for HTTP)")
        return problems
