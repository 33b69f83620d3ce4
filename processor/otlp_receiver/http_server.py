"""The OTLP/HTTP server of the ``otlp`` receiver: ``POST /v1/metrics``, ``/v1/traces`` and
``/v1/logs`` with protobuf or JSON bodies, every Content-Encoding the collector's confighttp
server reads (gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4), size limits, optional
TLS and authentication, answered with the status codes of the OTLP specification.

Built on ``http.server`` with one thread per connection; ``HttpServer.stop`` closes idle
keep-alive connections at once and gives requests in flight a grace period.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

from driftline.processor.component import AuthenticationError, ServerAuthenticator
from driftline.processor.component.signals import SIGNAL_LOGS, SIGNAL_METRICS, SIGNAL_TRACES
from driftline.processor.otlp_receiver.grpc_server import (
    OTLP_SIGNALS,
    RETRY_AFTER_S,
    Refused,
    Signal,
)
from driftline.processor.otlp_receiver.http_body import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_PROTOBUF,
    DECODERS,
    HttpError,
    decode_body,
    encode_body,
    media_type_of,
)

_log = logging.getLogger(__name__)

# OTLP/HTTP, per the OTLP specification.
PATH_METRICS = "/v1/metrics"
PATH_TRACES = "/v1/traces"
PATH_LOGS = "/v1/logs"
_CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"
# A kept-alive connection idle this long is closed; a stalled read fails after this long.
HTTP_IDLE_TIMEOUT_S = 60.0
HTTP_READ_TIMEOUT_S = 30.0
# How often idle connections and the accept loop look whether the server is stopping.
HTTP_POLL_INTERVAL_S = 0.1
# An oversized body up to this size is read and dropped before answering 413, so the
# client reads the answer instead of a connection reset (as Go's net/http does).
HTTP_DISCARD_LIMIT_BYTES = 256 * 1024
_READ_CHUNK_BYTES = 64 * 1024
# Pending connections the kernel queues for accept (``listen``); http.server's default of 5
# made a burst of 300 simultaneous connects wait a second and more.
HTTP_LISTEN_BACKLOG = max(socket.SOMAXCONN, 128)
# After a 413 on a declared length the server still reads (and drops) what the client
# sends, up to this much or this long, before closing: a client that writes its whole body
# before reading (the SDK's) then reads the 413 instead of a broken pipe.
HTTP_LINGER_BYTES = 64 * 1024 * 1024
HTTP_LINGER_S = 5.0
# A TLS client must finish its handshake within this long (per connection thread).
TLS_HANDSHAKE_TIMEOUT_S = 10.0



_ROUTES = {PATH_METRICS: OTLP_SIGNALS[SIGNAL_METRICS], PATH_TRACES: OTLP_SIGNALS[SIGNAL_TRACES],
           PATH_LOGS: OTLP_SIGNALS[SIGNAL_LOGS]}
_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
                grpc.StatusCode.UNAUTHENTICATED: 401}


class Receiving(Protocol):
    """What the OTLP/HTTP server needs of its receiver."""

    @property
    def signals(self) -> tuple[str, ...]: ...

    def export(self, signal: Signal, request: Message) -> Message: ...

    def count_rejected(self) -> None: ...

    def count_unauthenticated(self) -> None: ...


class HttpServer(ThreadingHTTPServer):
    """Serves OTLP/HTTP for one receiver; ``stop`` closes idle keep-alive connections and
    joins the connection threads with a deadline (ThreadingMixIn's own join has none)."""

    block_on_close = False
    request_queue_size = HTTP_LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], receiver: Receiving,
                 max_body_bytes: int, ssl_context: ssl.SSLContext | None = None,
                 authenticator: ServerAuthenticator | None = None) -> None:
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.stopping = threading.Event()
        self._threads_lock = threading.Lock()
        self._connection_threads: set[threading.Thread] = set()
        super().__init__(address, _OtlpHttpHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse-DNS lookup of the host; not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is routine; log it instead of printing to stderr.
        _log.warning("OTLP/HTTP receiver: serving %s failed", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Also while stopping: a connection accepted then may carry a request sent before
        # the signal; its handler serves it only if its bytes have arrived, else closes
        # (``_wait_for_request``), so a flooding client gets nothing more.
        thread = threading.Thread(target=self._serve_connection,
                                  args=(request, client_address),
                                  name="driftline-otlp-http-conn", daemon=True)
        with self._threads_lock:
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            if self.ssl_context is not None:
                request = self._handshake(request, client_address)
                if request is None:
                    return
            self.process_request_thread(request, client_address)
        finally:
            with self._threads_lock:
                self._connection_threads.discard(threading.current_thread())

    def _handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """The TLS side of ``request``, or None (connection closed) when the handshake fails,
        e.g. a client without a certificate under mutual TLS. Done in the connection's
        thread so a slow client cannot hold up accepting others."""
        assert self.ssl_context is not None
        request.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            secure = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            self.receiver.count_rejected()
            _log.info("OTLP/HTTP receiver: TLS handshake with %s failed: %s", client_address,
                      exc)
            self.shutdown_request(request)
            return None
        secure.settimeout(None)
        return secure

    def stop(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish within ``grace_s``, close."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace_s
        with self._threads_lock:
            threads = list(self._connection_threads)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if alive := sum(t.is_alive() for t in threads):
            _log.warning("OTLP/HTTP receiver: %d connection(s) still busy after %.1fs; "
                         "leaving them to finish in the background", alive, grace_s)


class _HttpServer6(HttpServer):
    address_family = socket.AF_INET6


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    """One connection: OTLP/HTTP requests, answered as the OTLP specification says."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK exporters' sessions expect
    server_version = "driftline-otlp"
    timeout = HTTP_READ_TIMEOUT_S
    server: HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("OTLP/HTTP %s: " + format, self.address_string(), *args)

    def handle_one_request(self) -> None:
        if not self._wait_for_request():
            self.close_connection = True
            return
        super().handle_one_request()
        if self.server.stopping.is_set():
            self.close_connection = True

    def _wait_for_request(self) -> bool:
        """Wait until the next request's bytes arrive; False when stopping or idle too long.

        Polling the socket (not blocking in ``readline``) lets ``stop`` close idle
        keep-alive connections at once. HTTP clients here do not pipeline, so nothing
        waits in the read buffer unseen.
        """
        if self.server.stopping.is_set():
            # Draining: only a request whose bytes have already arrived is served (it may
            # have been sent before the signal), then the connection closes (``_send``);
            # a kept-alive connection of a flooding client takes no more.
            return self._buffered() or bool(select.select([self.connection], [], [], 0)[0])
        idle_deadline = time.monotonic() + HTTP_IDLE_TIMEOUT_S
        pending = getattr(self.connection, "pending", None)
        if pending is not None and pending():
            return True  # already decrypted by the TLS layer, invisible to select()
        if self._buffered():
            return True  # a pipelined request read along with the last one
        while True:
            readable, _, _ = select.select([self.connection], [], [], HTTP_POLL_INTERVAL_S)
            if readable:
                return True
            if self.server.stopping.is_set() or time.monotonic() >= idle_deadline:
                return False

    def _buffered(self) -> bool:
        """Whether the next request's bytes already wait in ``rfile``'s buffer (a client
        that pipelines: select() does not see them), looked at without blocking."""
        sock = self.connection
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return bool(self.rfile.peek(1))
        except (OSError, ValueError):  # would block (ssl.SSLWantReadError included)
            return False
        finally:
            sock.settimeout(timeout)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: a declared body over the limit gets its 413 instead of
        the go-ahead, so the client never sends it."""
        try:
            length = self._content_length()
        except HttpError:
            return super().handle_expect_100()  # do_POST answers the bad length
        limit = self.server.max_body_bytes
        if length <= limit:
            return super().handle_expect_100()
        self.server.receiver.count_rejected()
        self.close_connection = True
        self._send_status(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"the body ({length} bytes) exceeds max_request_body_size ({limit} "
                          "bytes)", media_type_of(self.headers.get("Content-Type")))
        return False

    def finish(self) -> None:
        """Send what is buffered; then, when the body was refused unread, read and drop what
        the client still sends (bounded) so it gets to read the answer."""
        super().finish()
        if getattr(self, "_linger_bytes", 0):
            self._linger(self._linger_bytes)

    def _linger(self, length: int) -> None:
        sock = self.connection
        try:
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + HTTP_LINGER_S
            remaining = min(length, HTTP_LINGER_BYTES)
            while remaining > 0 and time.monotonic() < deadline:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(min(remaining, _READ_CHUNK_BYTES))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass  # the client went away: nothing left to protect

    # --- methods -----------------------------------------------------------------------------

    def do_POST(self) -> None:
        route = self._route()
        if route is None or not self._authenticated():
            return
        media_type = media_type_of(self.headers.get("Content-Type"))
        if media_type not in (CONTENT_TYPE_PROTOBUF, CONTENT_TYPE_JSON):
            self.server.receiver.count_rejected()
            self._discard_body()
            self._send_text(415, f"unsupported media type {media_type or 'none'!r}; send "
                                 f"{CONTENT_TYPE_PROTOBUF} or {CONTENT_TYPE_JSON}")
            return
        try:
            body = self._read_body()
            request = decode_body(body, media_type, route.request_type)
        except HttpError as err:
            self.server.receiver.count_rejected()
            _log.debug("OTLP/HTTP %s: %d %s", self.path, err.status, err.message)
            self._send_status(err.status, err.code, err.message, media_type)
            return
        try:
            response = self.server.receiver.export(route, request)
        except Refused as refused:
            status = _HTTP_STATUS.get(refused.code, 503)
            headers = [("Retry-After", str(RETRY_AFTER_S))] if status == 429 else []
            self._send_status(status, refused.code, refused.message, media_type, headers)
            return
        self._send(200, encode_body(response, media_type), media_type)

    def _authenticated(self) -> bool:
        """True when no authenticator is set or it accepts the headers; else answer 401."""
        authenticator = self.server.authenticator
        if authenticator is None:
            return True
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            authenticator.authenticate(headers)
        except AuthenticationError as exc:
            self.server.receiver.count_unauthenticated()
            self._discard_body()
            self._send_text(401, f"unauthenticated: {exc}",
                            [("WWW-Authenticate", 'Bearer realm="driftline"')])
            return False
        return True

    def _not_post(self) -> None:
        if self._route() is None:
            return
        self._discard_body()
        self._send_text(405, f"method {self.command} not allowed; OTLP/HTTP accepts POST",
                        [("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_post

    # --- helpers -----------------------------------------------------------------------------

    def _route(self) -> Signal | None:
        """The route of this path, or None after answering 404."""
        path = urlsplit(self.path).path
        route = _ROUTES.get(path)
        if route is not None and (route.name == SIGNAL_LOGS
                                  or route.name in self.server.receiver.signals):
            return route
        self._discard_body()
        if route is None:
            message = (f"{path} not found; OTLP/HTTP serves {PATH_METRICS}, {PATH_TRACES} "
                       f"and {PATH_LOGS}")
        else:
            message = f"{path} not found: no pipeline of this processor takes {route.name}"
        self._send_text(404, message)
        return None

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            return 0  # HTTP/1.1: a request without length or chunking has no body
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             f"invalid Content-Length {text!r}")
        return length

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = self._read_chunked(limit)
        else:
            length = self._content_length()
            if length > limit:
                self._discard(length)
                raise HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"the body ({length} bytes) exceeds max_request_body_size "
                                 f"({limit} bytes)")
            raw = self.rfile.read(length)
            if len(raw) < length:
                self.close_connection = True
                raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"the body ended after {len(raw)} of {length} bytes")
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return raw
        decoder = DECODERS.get(encoding)
        if decoder is None:
            raise HttpError(415, grpc.StatusCode.INVALID_ARGUMENT,
                             f"unsupported Content-Encoding {encoding!r}; send one of "
                             f"{', '.join(DECODERS)} or no encoding")
        return decoder(raw, limit)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(_READ_CHUNK_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                self.close_connection = True
                raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"invalid chunk size line {line[:40]!r}") from exc
            if size == 0:
                while self.rfile.readline(_READ_CHUNK_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, ignored
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"the chunked body exceeds max_request_body_size ({limit} "
                                 "bytes)")
            chunk = self.rfile.read(size)
            self.rfile.readline(_READ_CHUNK_BYTES)  # the CRLF closing the chunk
            if len(chunk) < size:
                self.close_connection = True
                raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 "the chunked body ended early")
            body += chunk

    def _discard(self, length: int) -> None:
        """Drop a small unread body so the connection stays usable; close it otherwise."""
        if length > HTTP_DISCARD_LIMIT_BYTES:
            self.close_connection = True
            self._linger_bytes = length  # read after the answer is sent (``finish``)
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK_BYTES))
            if not chunk:
                break
            remaining -= len(chunk)

    def _discard_body(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return
        try:
            self._discard(self._content_length())
        except HttpError:
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.server.stopping.is_set():
            self.close_connection = True  # draining: no further request on this connection
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_text(self, status: int, message: str,
                   headers: Sequence[tuple[str, str]] = ()) -> None:
        self._send(status, message.encode("utf-8"), _CONTENT_TYPE_TEXT, headers)

    def _send_status(self, status: int, code: grpc.StatusCode, message: str,
                     media_type: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """A google.rpc.Status body in the request's encoding, as OTLP/HTTP errors are."""
        body = status_pb2.Status(code=code.value[0], message=message)
        self._send(status, encode_body(body, media_type), media_type, headers)


def make_server(endpoint: str, receiver: Receiving, max_body_bytes: int,
                ssl_context: ssl.SSLContext | None = None,
                authenticator: ServerAuthenticator | None = None) -> HttpServer:
    """A bound (not yet serving) server on ``host:port``; ``OSError`` when it cannot bind."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    server_class = _HttpServer6 if ":" in host else HttpServer
    return server_class((host, int(port)), receiver, max_body_bytes, ssl_context,
                        authenticator)
