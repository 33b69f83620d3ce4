"""OTLP/HTTP under attack (issue 14, findings 5 and 7): many gzip members, JSON nested deep,
a connect burst, a too-large declared body, pipelined requests. A real receiver on a socket,
a recording consumer."""

from __future__ import annotations

import gzip
import json
import socket
import zlib

import pytest

from driftline.processor.otlp_receiver import http_body as _otlp_http_body
from driftline.processor.otlp_receiver import http_server as _otlp_http
from tests._consumers import Recorder
from tests.processor.otlp_receiver.test_otlp_http_receiver import (
    HTTP_TEST_SIGNALS,
    HTTP_TIMEOUT_S,
    LOOPBACK,
    http_config,
    metrics_proto,
    serving,
)

# Empty gzip members in the many-members body (20 bytes each: 2 MiB is about 100 000).
EMPTY_MEMBERS = 100_000
# JSON nested this deep: a recursive decoder runs out of stack long before.
JSON_DEPTH = 100_000


_DECOMPRESSOBJ = zlib.decompressobj


class _CountingDecompressor:
    """A ``zlib.decompressobj`` that adds the input bytes it is handed to ``fed``."""

    fed = 0

    def __init__(self, wbits: int) -> None:
        self._inner = _DECOMPRESSOBJ(wbits)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        _CountingDecompressor.fed += len(data)
        return self._inner.decompress(data, max_length)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_many_gzip_members_cost_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each member once copied the rest of the body (``unused_data``): 2 MiB of empty
    members took 8.6 s of CPU. The bytes handed to zlib must stay linear in the body."""
    payload = metrics_proto("after-many-members")
    raw = gzip.compress(b"") * EMPTY_MEMBERS + gzip.compress(payload)
    monkeypatch.setattr(_otlp_http_body.zlib, "decompressobj", _CountingDecompressor)
    _CountingDecompressor.fed = 0
    out = _otlp_http_body.inflate(raw, 16 + zlib.MAX_WBITS, 1 << 20)
    assert out == payload
    assert _CountingDecompressor.fed <= 4 * len(raw)


def test_multi_member_gzip_still_decodes_and_trailing_garbage_is_refused() -> None:
    parts = [metrics_proto("a")[:5], metrics_proto("a")[5:]]
    raw = b"".join(gzip.compress(p) for p in parts)
    assert _otlp_http_body.inflate(raw, 16 + zlib.MAX_WBITS, 1 << 20) == metrics_proto("a")
    with pytest.raises(_otlp_http_body.HttpError) as err:
        _otlp_http_body.inflate(raw + b"garbage", 16 + zlib.MAX_WBITS, 1 << 20)
    assert err.value.status == 400
    with pytest.raises(_otlp_http_body.HttpError) as err:
        _otlp_http_body.inflate(gzip.compress(b"x" * 5000) * 3, 16 + zlib.MAX_WBITS, 12_000)
    assert err.value.status == 413


def _raw_request(port: int, data: bytes, read_until_close: bool = False) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=HTTP_TIMEOUT_S) as sock:
        sock.sendall(data)
        if not read_until_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _post(body: bytes, content_type: str = "application/x-protobuf",
          extra: str = "") -> bytes:
    return (f"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_json_nested_deep_is_answered_400_not_a_dropped_connection() -> None:
    body = ("[" * JSON_DEPTH + "]" * JSON_DEPTH).encode()
    body = b'{"resourceMetrics": ' + body + b"}"
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        answer = _raw_request(receiver.http_port, _post(body, "application/json",
                                                        "Connection: close\r\n"))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert receiver.stats().rejected_requests == 1
        # Still serving: a valid JSON request after it is taken.
        valid = json.dumps({"resourceMetrics": []}).encode()
        answer = _raw_request(receiver.http_port, _post(valid, "application/json",
                                                        "Connection: close\r\n"))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_listen_backlog_takes_a_burst_of_connections() -> None:
    with serving(Recorder(HTTP_TEST_SIGNALS)) as receiver:
        assert receiver._http.request_queue_size >= _otlp_http.HTTP_LISTEN_BACKLOG >= 128


def test_declared_too_large_body_gets_413_and_the_uploading_client_reads_it() -> None:
    """A client that sends its whole 21 MiB body before reading (as the SDK's ``requests``
    does) once met a closed socket mid-upload (a broken pipe, retryable) instead of the 413
    sent on the headers: the server now drains what the client still sends, then closes."""
    limit = 64 * 1024
    body = b"\0" * (21 << 20)
    with serving(Recorder(HTTP_TEST_SIGNALS), http_config(max_request_body_size=limit)) \
            as receiver:
        with socket.create_connection((LOOPBACK, receiver.http_port),
                                      timeout=HTTP_TIMEOUT_S) as sock:
            sock.sendall(_post(body))  # raised BrokenPipeError/ConnectionResetError before
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"Connection: close" in answer


def test_expect_100_continue_with_a_too_large_body_gets_413_instead_of_continue() -> None:
    limit = 64 * 1024
    with serving(Recorder(HTTP_TEST_SIGNALS), http_config(max_request_body_size=limit)) \
            as receiver:
        head = (f"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: "
                f"application/x-protobuf\r\nContent-Length: {21 << 20}\r\n"
                f"Expect: 100-continue\r\n\r\n").encode()
        with socket.create_connection((LOOPBACK, receiver.http_port),
                                      timeout=HTTP_TIMEOUT_S) as sock:
            sock.sendall(head)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_pipelined_posts_on_one_connection_are_all_answered() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        requests = b"".join(_post(metrics_proto(name)) for name in ("one", "two", "three"))
        answer = _raw_request(receiver.http_port, requests + _post(
            metrics_proto("four"), extra="Connection: close\r\n"), read_until_close=True)
    assert answer.count(b"HTTP/1.1 200 ") == 4, answer[:400]
    names = [m.name for r in recorder.metrics for rm in r for sm in rm.scope_metrics
             for m in sm.metrics]
    assert names == ["one", "two", "three", "four"]
