"""What every push exporter shares: client TLS settings, the checks of the sending keys, and
the component base that feeds each request through the sending chain (``_sending.Sender``):
``set_host`` (for a ``file_storage`` queue), ``start``, ``shutdown``, ``stats``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftline.exporters.sending.queue import Item, Sender, SendingConfig, storage_directory
from driftline.processor.component import Host


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


def sending_of(config: Any) -> SendingConfig:
    """The sending keys (``timeout``, ``retry_on_failure``, ``sending_queue``) of an
    exporter's config, which writes them at its own top level as the collector does."""
    return SendingConfig(config.timeout, config.retry_on_failure, config.sending_queue)


def client_problems(config: Any) -> list[str]:
    """Problems of the keys every push exporter has: ``headers``, ``tls`` and sending."""
    problems = []
    if not isinstance(config.headers, dict):
        problems.append("headers: a mapping of header names to values")
    problems += [f"tls::{p}" for p in config.tls.validate()]
    return problems + sending_of(config).validate()


class PushExporter:
    """Hands each request to the sending chain; a subclass encodes requests, submits them
    with ``_submit_item`` and sends one in ``_send_item``."""

    def __init__(self, name: str, config: Any) -> None:
        self._name = name
        self._sending = sending_of(config)
        self._sender: Sender | None = None
        self._host = Host()

    def set_host(self, host: Host) -> None:
        self._host = host

    def start(self) -> None:
        directory = storage_directory(self._host, self._sending.sending_queue.storage,
                                      self._name,
                                      f"exporters::{self._name}::sending_queue::storage")
        self._sender = Sender(self._name, self._send_item, self._sending, directory)
        self._sender.start()

    def shutdown(self) -> None:
        if self._sender is not None:
            self._sender.shutdown()

    def stats(self) -> Any:
        return self._sender.stats() if self._sender is not None else None

    def _submit_item(self, item: Item) -> None:
        if self._sender is None:
            raise RuntimeError(f"{self._name} is not started")
        self._sender.submit(item)

    def _send_item(self, item: Item, timeout_s: float) -> None:
        raise NotImplementedError
