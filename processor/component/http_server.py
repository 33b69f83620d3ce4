"""The small HTTP servers components run (the ``prometheus`` exporter's ``/metrics``, the
``ml_dashboard`` page): threaded, IPv4 or IPv6 by the host, no reverse-DNS lookup on bind,
and a client hanging up mid-response logged rather than printed to stderr."""

from __future__ import annotations

import logging
import socket
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    component = "http server"  # named in the log line of a failed request

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.warning("%s: serving %s failed", self.component, client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def http_server(host: str, port: int, handler: type[BaseHTTPRequestHandler],
                component: str) -> ThreadingHTTPServer:
    """A bound, not yet serving server on ``host:port`` (``[v6]`` brackets stripped);
    ``OSError`` when the address is taken. ``component`` names it in log lines."""
    host = host.strip("[]")
    server = (_Server6 if ":" in host else _Server)((host, port), handler)
    server.component = component
    return server
