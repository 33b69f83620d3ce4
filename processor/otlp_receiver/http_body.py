"""OTLP/HTTP bodies: decompressed with every Content-Encoding the collector's confighttp
server reads, within a size limit (a gzip bomb is refused, not inflated), then decoded from
protobuf or JSON; answers encoded in the request's media type."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import cramjam
import grpc
from google.protobuf.message import DecodeError, Message

from driftline.processor.component import otlp_json as _otlp_json

CONTENT_TYPE_PROTOBUF = "application/x-protobuf"
CONTENT_TYPE_JSON = "application/json"
# Compressed input is handed to zlib in pieces from this size up to the largest (``_inflate``).
_INFLATE_FIRST_PIECE_BYTES = 32  # an empty gzip member is 20 bytes
_INFLATE_MAX_PIECE_BYTES = 256 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# The first bytes of a framed snappy stream (its stream identifier chunk, "sNaPpY").
_SNAPPY_FRAMED_HEADER = b"\xff\x06\x00\x00sNaPpY"


class HttpError(Exception):
    """An OTLP/HTTP request answered with ``status`` and a google.rpc.Status ``message``."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def media_type_of(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    """``raw`` decompressed, refusing (413) to produce more than ``limit`` bytes.

    Gzip bodies may hold several members. Input is fed in pieces that start small and grow
    within a member, so what zlib copies back past a member's end (``unused_data``) is at
    most about the member's own size: the work stays linear in the body however many
    members it holds (handing zlib the whole rest of the body per member was quadratic).
    """
    out = bytearray()
    view = memoryview(raw)
    position = 0
    while position < len(raw):
        decompressor = zlib.decompressobj(wbits)
        piece = _INFLATE_FIRST_PIECE_BYTES
        while not decompressor.eof and position < len(raw):
            data = view[position:position + piece]
            try:
                out += decompressor.decompress(data, limit + 1 - len(out))
            except zlib.error as exc:
                raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                                 f"cannot decompress the body: {exc}") from exc
            if len(out) > limit:
                raise HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 f"the decompressed body exceeds max_request_body_size "
                                 f"({limit} bytes)")
            position += len(data) - len(decompressor.unused_data)
            piece = min(piece * 2, _INFLATE_MAX_PIECE_BYTES)
        if not decompressor.eof:
            raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             "cannot decompress the body: it is truncated")
        if position < len(raw) and wbits != _GZIP_WBITS:
            raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                             "cannot decompress the body: data after the end of the stream")
    return bytes(out)


def _too_large(limit: int) -> HttpError:
    return HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"the decompressed body exceeds max_request_body_size ({limit} bytes)")


def _corrupt(encoding: str, exc: Exception) -> HttpError:
    return HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                      f"cannot decompress the body as {encoding}: {exc}")


def _bounded(encoding: str, decompress_into: Callable[[bytes, bytearray], int]
             ) -> Callable[[bytes, int], bytes]:
    """A decoder writing into a buffer of ``limit + 1`` bytes, so a bomb stops there.

    cramjam's streaming decoders fail with "failed to write whole buffer" (Rust's
    ``WriteZero``) once the output is full: that is the body exceeding the limit (413),
    any other failure a corrupt body (400).
    """
    def decode(raw: bytes, limit: int) -> bytes:
        out = bytearray(limit + 1)
        try:
            size = decompress_into(raw, out)
        except cramjam.DecompressionError as exc:
            if "failed to write whole buffer" in str(exc):
                raise _too_large(limit) from exc
            raise _corrupt(encoding, exc) from exc
        if size > limit:
            raise _too_large(limit)
        return bytes(out[:size])
    return decode


def _snappy_block(raw: bytes, limit: int) -> bytes:
    """Snappy's block format, whose header states the decompressed length: checked first."""
    try:
        size = cramjam.snappy.decompress_raw_len(raw)
    except cramjam.DecompressionError as exc:
        raise _corrupt("snappy", exc) from exc
    if size > limit:
        raise _too_large(limit)
    try:
        return bytes(cramjam.snappy.decompress_raw(raw))
    except cramjam.DecompressionError as exc:
        raise _corrupt("snappy", exc) from exc


_snappy_framed = _bounded("x-snappy-framed", cramjam.snappy.decompress_into)


def _snappy(raw: bytes, limit: int) -> bytes:
    """``snappy`` is the block format, or the framed one the collector sent under that name
    before v0.125, told apart by the framed stream's header (as confighttp does)."""
    if raw.startswith(_SNAPPY_FRAMED_HEADER):
        return _snappy_framed(raw, limit)
    return _snappy_block(raw, limit)


def _zlib(raw: bytes, limit: int) -> bytes:
    return inflate(raw, zlib.MAX_WBITS, limit)


def _gzip(raw: bytes, limit: int) -> bytes:
    return inflate(raw, _GZIP_WBITS, limit)


# Content-Encoding → decoder(raw, limit): the collector's confighttp set; ``deflate`` is the
# zlib format there (Go's compress/zlib), as the HTTP specification defines it.
DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "zlib": _zlib,
    "deflate": _zlib,
    "zstd": _bounded("zstd", cramjam.zstd.decompress_into),
    "snappy": _snappy,
    "x-snappy-framed": _snappy_framed,
    "lz4": _bounded("lz4", cramjam.lz4.decompress_into),
}


def decode_body(body: bytes, media_type: str, message_type: type[Message]) -> Message:
    try:
        if media_type == CONTENT_TYPE_PROTOBUF:
            return message_type.FromString(body)
        data = json.loads(body.decode("utf-8"))
        if not isinstance(data, dict):
            raise _otlp_json.OtlpJsonError(f"expected a JSON object, got {type(data).__name__}")
        return _otlp_json.decode_dict(data, message_type, ignore_unknown_fields=True)
    except (DecodeError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the decoders recurse (a few hundred levels).
        raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                         f"cannot decode the body as {media_type} "
                         f"{message_type.__name__}: {exc}") from exc


def encode_body(message: Message, media_type: str) -> bytes:
    if media_type == CONTENT_TYPE_JSON:
        return _otlp_json.encode(message).encode("utf-8")
    return message.SerializeToString()
