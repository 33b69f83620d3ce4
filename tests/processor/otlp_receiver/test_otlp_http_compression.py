"""Every Content-Encoding the collector's OTLP/HTTP server (confighttp) accepts, accepted here.

The collector's ``otlphttp`` exporter may send ``gzip``, ``zstd``, ``zlib``, ``deflate``
(zlib-wrapped, as Go's ``compress/zlib``), ``snappy`` (block format; the framed format too,
recognised by its stream header), ``x-snappy-framed`` and ``lz4`` (frame format); an answer of
415 is permanent for it and the data is dropped. Bodies here are compressed by zlib and
cramjam (the codecs' reference libraries) and sent over a real socket to a real receiver;
each decompressed body is bounded by ``max_request_body_size`` as gzip's is.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

import cramjam
import pytest

from tests._consumers import Recorder
from tests.processor.otlp_receiver.test_otlp_http_receiver import (
    HTTP_TEST_SIGNALS,
    JSON,
    SMALL_LIMIT_BYTES,
    http_config,
    metrics_json,
    post,
    serving,
)

Compress = Callable[[bytes], bytes]

# Content-Encoding as the collector's exporter writes it → how it compresses the body.
ENCODINGS: dict[str, Compress] = {
    "gzip": gzip.compress,
    "zstd": lambda data: bytes(cramjam.zstd.compress(data)),
    "zlib": zlib.compress,
    "deflate": zlib.compress,
    "snappy": lambda data: bytes(cramjam.snappy.compress_raw(data)),
    "x-snappy-framed": lambda data: bytes(cramjam.snappy.compress(data)),
    "lz4": lambda data: bytes(cramjam.lz4.compress(data)),
}
# Before v0.125 the collector sent the framed format as "snappy"; it still reads both.
FRAMED_SNAPPY = ("snappy", lambda data: bytes(cramjam.snappy.compress(data)))
CASES = [*ENCODINGS.items(), FRAMED_SNAPPY]
CASE_IDS = [*ENCODINGS, "snappy-framed"]


@pytest.mark.parametrize(("encoding", "compress"), CASES, ids=CASE_IDS)
def test_collector_encodings_are_accepted(encoding: str, compress: Compress) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    body = compress(json.dumps(metrics_json(f"zipped.{encoding}", 11)).encode())
    with serving(recorder) as receiver:
        status, _, answer = post(receiver, "/v1/metrics", body,
                                 {"Content-Type": JSON, "Content-Encoding": encoding})

    assert status == 200, answer
    [[resource_metrics]] = recorder.metrics
    metric = resource_metrics.scope_metrics[0].metrics[0]
    assert (metric.name, metric.sum.data_points[0].as_int) == (f"zipped.{encoding}", 11)


@pytest.mark.parametrize(("encoding", "compress"), CASES, ids=CASE_IDS)
def test_bomb_is_413_by_its_decompressed_size(encoding: str, compress: Compress) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    # Ten times the limit: snappy, the weakest codec here, still fits it in under the limit.
    bomb = compress(b" " * (10 * SMALL_LIMIT_BYTES))
    assert len(bomb) < SMALL_LIMIT_BYTES
    with serving(recorder, http_config(max_request_body_size=SMALL_LIMIT_BYTES)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", bomb,
                               {"Content-Type": JSON, "Content-Encoding": encoding})
        stats = receiver.stats()

    assert status == 413, body
    assert "decompressed body exceeds max_request_body_size" in json.loads(body)["message"]
    assert recorder.metrics == []
    assert stats.rejected_requests == 1


@pytest.mark.parametrize(("encoding", "compress"), CASES, ids=CASE_IDS)
def test_body_at_the_limit_is_accepted(encoding: str, compress: Compress) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    at_limit = json.dumps(metrics_json("full", 2)).encode().ljust(SMALL_LIMIT_BYTES)
    with serving(recorder, http_config(max_request_body_size=SMALL_LIMIT_BYTES)) as receiver:
        status, _, body = post(receiver, "/v1/metrics", compress(at_limit),
                               {"Content-Type": JSON, "Content-Encoding": encoding})

    assert status == 200, body
    assert len(recorder.metrics) == 1


@pytest.mark.parametrize(("encoding", "compress"), CASES, ids=CASE_IDS)
def test_corrupt_body_is_400_naming_the_encoding(encoding: str, compress: Compress) -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    good = compress(json.dumps(metrics_json()).encode())
    corrupt = good[: len(good) // 2] + bytes(b ^ 0x5A for b in good[len(good) // 2:])
    with serving(recorder) as receiver:
        status, _, body = post(receiver, "/v1/metrics", corrupt,
                               {"Content-Type": JSON, "Content-Encoding": encoding})

    assert status == 400, body
    assert "cannot decompress the body" in json.loads(body)["message"]
    assert recorder.metrics == []


def test_encoding_names_are_case_insensitive() -> None:
    recorder = Recorder(HTTP_TEST_SIGNALS)
    with serving(recorder) as receiver:
        status, _, _ = post(receiver, "/v1/metrics",
                            bytes(cramjam.zstd.compress(json.dumps(metrics_json()).encode())),
                            {"Content-Type": JSON, "Content-Encoding": "ZSTD"})

    assert status == 200
    assert len(recorder.metrics) == 1
