"""What every push exporter shares: the checks of the sending keys (client TLS settings are
``driftline.processor.component.tls.TlsConfig``), and
the component base that feeds each request through the sending chain (``_sending.Sender``):
``set_host`` (for a ``file_storage`` queue), ``start``, ``shutdown``, ``stats``."""

from __future__ import annotations

from typing import Any

from driftline.exporters.sending.queue import Item, Sender, SendingConfig, storage_directory
from driftline.processor.component import Host


def sending_of(config: Any) -> SendingConfig:
    """The sending keys (``timeout``, ``retry_on_failure``, ``sending_queue``) of an
    exporter's config, which writes them at its own top level as the collector does."""
    return SendingConfig(config.timeout, config.retry_on_failure, config.sending_queue)


def client_problems(config: Any) -> list[str]:
    """Problems of the keys every push exporter has: ``headers``, ``tls`` and sending."""
    problems = []
    if not isinstance(config.headers, dict):
        problems.append("headers: a mapping of header names to values")
    problems += [f"tls::{p}" for p in config.tls.client_problems()]
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
