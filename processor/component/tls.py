"""TLS settings, as the collector's ``configtls``: one ``TlsConfig`` for a receiver's
``tls`` (the collector's ``ServerConfig``) and an exporter's (its ``ClientConfig``), each
side checking the keys it takes (``server_problems``, ``client_problems``).

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


# Keys only one side takes: the other side refuses them, naming the side's keys.
SERVER_KEYS = ("cert_file", "key_file", "client_ca_file")
CLIENT_KEYS = ("insecure", "ca_file", "cert_file", "key_file", "insecure_skip_verify")


@dataclass(slots=True)
class TlsConfig:
    """``tls``: a receiver's certificate and key (``client_ca_file`` for mutual TLS), or an
    exporter's CA to verify its server with and optional client certificate."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""  # server: clients must present a certificate signed by it
    ca_file: str = ""  # client: verify the server with it (the system roots by default)
    insecure: bool = False  # client, gRPC: plaintext (an http:// endpoint is plaintext anyway)
    insecure_skip_verify: bool = False  # client: do not verify the server

    def _foreign(self, keys: tuple[str, ...], side: str) -> list[str]:
        """Problems for keys set that ``side`` (``a receiver``) does not take."""
        defaults = TlsConfig()
        return [f"{key}: not {side} setting; {side}'s tls takes {', '.join(keys)}"
                for key in self.__slots__
                if key not in keys and getattr(self, key) != getattr(defaults, key)]

    def server_problems(self) -> list[str]:
        """Problems of a receiver's ``tls``: cert and key required, files readable."""
        problems = self._foreign(SERVER_KEYS, "a receiver")
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

    def client_problems(self) -> list[str]:
        """Problems of an exporter's ``tls``: files that exist, a certificate with its key."""
        problems = self._foreign(CLIENT_KEYS, "an exporter")
        problems += [f"{key}: file {value} does not exist"
                     for key, value in (("ca_file", self.ca_file), ("cert_file", self.cert_file),
                                        ("key_file", self.key_file))
                     if value and not Path(value).is_file()]
        if bool(self.cert_file) != bool(self.key_file):
            problems.append("cert_file: a client certificate needs both cert_file and key_file")
        return problems

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca_file``."""
        return bool(self.client_ca_file)

    def ssl_context(self) -> ssl.SSLContext:
        """A client ``ssl`` context: verify the server, present a certificate if set."""
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


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
