"""The OTLP/JSON encoding of export requests, one request per line.

``google.protobuf.json_format`` gives the proto3 JSON mapping (lowerCamelCase names), but
the OTLP specification departs from it in two places: enums are integers, and trace and
span ids are hex strings rather than base64. This module applies both, in both directions.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

# Every OTLP field holding a trace or span id (spans, links, exemplars, log records).
ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})

_M = TypeVar("_M", bound=Message)


class OtlpJsonError(ValueError):
    """A line that is not the OTLP/JSON encoding of the expected request."""


def encode(request: Message) -> str:
    """``request`` as one line of OTLP/JSON (no newline), ids as lowercase hex."""
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    return json.dumps(_map_ids(data, _base64_to_hex), separators=(",", ":"))


def decode(line: str, message_type: type[_M]) -> _M:
    """The request of ``message_type`` encoded on ``line``, ids in hex as ``encode`` writes them."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise OtlpJsonError(f"not JSON: {err}") from err
    return decode_dict(data, message_type)


def decode_dict(data: Any, message_type: type[_M], *, ignore_unknown_fields: bool = False
                ) -> _M:
    """Like ``decode`` for an already parsed JSON object.

    ``ignore_unknown_fields`` is for receivers: the OTLP/JSON spec tells them to skip fields
    a newer sender may add.
    """
    try:
        return json_format.ParseDict(_map_ids(data, _hex_to_base64), message_type(),
                                     ignore_unknown_fields=ignore_unknown_fields)
    except (json_format.ParseError, binascii.Error) as err:
        raise OtlpJsonError(f"not an OTLP/JSON {message_type.__name__}: {err}") from err


def _map_ids(node: Any, convert: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: convert(value) if key in ID_FIELDS and isinstance(value, str)
            else _map_ids(value, convert)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_map_ids(item, convert) for item in node]
    return node


def _base64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_to_base64(value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError as err:
        raise binascii.Error(f"id {value!r} is not hex") from err
    return base64.b64encode(raw).decode("ascii")
