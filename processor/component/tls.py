"""TLS settings, as the collector's ``configtls``: a server's (``TlsConfig``, the
collector's ``ServerConfig``) and a client's (``ClientTlsConfig``, its ``ClientConfig``).

A server's ``cert_file`` and ``key_file`` (PEM) turn TLS on; ``client_ca_file`` also requires
every client to present a certificate signed by that CA (mutual TLS). A client (an exporter)
verifies its server with ``ca_file`` (the system roots by default) and presents
``cert_file``/``key_file`` when both are set.

Files are checked at config time (they must exist and be readable) and read at start, so a
certificate renewed on disk is picked up by a restart.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from driftline.processor.component import ComponentError

# TLS 1.2 is the collector's default minimum too.
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2


def _file_problem(key: str, path: object) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return f"{key}: must be the path of a PEM file, got {path!r}"
    file = Path(path)
    if not file.is_file():
        return f"{key}: file {path!r} does not exist (or is not a file)"
    if not os.access(file, os.R_OK):
        return f"{key}: file {path!r} is not readable by this process"
    return None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``tls``: the server's certificate and key; ``client_ca_file`` for mutual TLS."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    def validate(self) -> list[str]:
        problems = []
        for key in ("cert_file", "key_file"):
            value = getattr(self, key)
            if value == "":
                problems.append(f"{key}: required when tls is set (a PEM file); remove tls "
                                "to serve without TLS")
            elif (problem := _file_problem(key, value)) is not None:
                problems.append(problem)
        if self.client_ca_file and (
                problem := _file_problem("client_ca_file", self.client_ca_file)) is not None:
            problems.append(problem)
        return problems

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca_file``."""
        return bool(self.client_ca_file)


def _read(path: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ComponentError(f"{where}: cannot read {path!r}: {exc.strerror or exc}") from exc


def grpc_server_credentials(config: TlsConfig, where: str) -> grpc.ServerCredentials:
    """gRPC credentials of ``config``; ``where`` (the YAML path of ``tls``) names errors."""
    key = _read(config.key_file, f"{where}::key_file")
    cert = _read(config.cert_file, f"{where}::cert_file")
    client_ca = (_read(config.client_ca_file, f"{where}::client_ca_file")
                 if config.mutual else None)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=config.mutual)


def server_ssl_context(config: TlsConfig, where: str) -> ssl.SSLContext:
    """An ``ssl`` server context of ``config``; ``ComponentError`` naming a bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ComponentError(f"{where}::cert_file/key_file: cannot load the certificate "
                             f"{config.cert_file!r} with key {config.key_file!r}: {exc}; "
                             "both must be PEM and belong together") from exc
    if config.mutual:
        try:
            context.load_verify_locations(cafile=config.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ComponentError(f"{where}::client_ca_file: cannot load CA certificates "
                                 f"from {config.client_ca_file!r}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(slots=True)
class ClientTlsConfig:
    """``tls`` of an exporter, as the collector's ``configtls`` client settings."""

    insecure: bool = False  # gRPC: plaintext (an http:// endpoint is plaintext anyway)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def validate(self) -> list[str]:
        problems = [f"{key}: file {value} does not exist"
                    for key, value in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                                       ("key_file", self.key_file))
                    if value and not Path(value).is_file()]
        if bool(self.cert_file) != bool(self.key_file):
            problems.append("cert_file: a client certificate needs both cert_file and key_file")
        return problems

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
