"""A data point's attributes as bytes: a cheap cache key for what is derived from them.

Reading an OTLP point's attributes field by field builds a Python object per key and value
(about 0.9 us per attribute with protobuf's upb backend), yet the same few attribute sets
repeat in every request. The point's serialization is one C call, and its attributes are one
contiguous run of fields in it (the first ones of an exponential histogram point), so those
bytes name the attributes exactly: equal bytes, equal attributes. Consumers keep what they
derive from a point's attributes (labels, a stream's identity) in a dict keyed by these
bytes and read the attributes only on a miss.
"""

from __future__ import annotations

from typing import Any

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_FIXED32 = 0, 1, 2, 5
_attribute_tags: dict[type, int] = {}


def _attribute_tag(kind: type) -> int:
    tag = _attribute_tags.get(kind)
    if tag is None:
        number = kind.DESCRIPTOR.fields_by_name["attributes"].number
        tag = _attribute_tags[kind] = number << 3 | _WIRE_LENGTH
    return tag


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint starting at ``at`` and the position after it (IndexError past the end)."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def attribute_bytes(point: Any) -> bytes | None:
    """The wire bytes of ``point``'s attributes (any OTLP data point), or None when they are
    not one contiguous run in its serialization (then read ``point.attributes`` instead)."""
    tag = _attribute_tag(type(point))
    data = point.SerializeToString()
    size = len(data)
    start = end = -1
    found = 0
    at = 0
    try:
        while at < size:
            field_start = at
            field = data[at]  # tags and lengths below 128 take one byte: read inline
            at += 1
            if field >= 0x80:
                field, at = _varint(data, at - 1)
            if field == tag:
                if end >= 0 and end != field_start:
                    return None  # a second run of attributes
                length = data[at]
                at += 1
                if length >= 0x80:
                    length, at = _varint(data, at - 1)
                at += length
                if start < 0:
                    start = field_start
                end = at
                found += 1
                continue
            if end >= 0:
                break  # the run of attributes is over
            wire = field & 7
            if wire == _WIRE_VARINT:
                _, at = _varint(data, at)
            elif wire == _WIRE_FIXED64:
                at += 8
            elif wire == _WIRE_LENGTH:
                length, at = _varint(data, at)
                at += length
            elif wire == _WIRE_FIXED32:
                at += 4
            else:
                return None
    except IndexError:
        return None
    if at > size or found != len(point.attributes):
        return None
    return data[start:end] if found else b""


# A point's attribute bytes and how many attributes they hold.
AttributeKey = tuple[bytes, int]


def has_attribute_key(point: Any, key: AttributeKey) -> bool:
    """Whether ``point``'s attributes are exactly ``key``, checked without walking its bytes
    (about half the cost of ``attribute_bytes``).

    Exact: a serialization starting with the bytes of ``count`` attribute fields has those
    as its first attributes, and a point with just ``count`` attributes has no others. Only
    keys of points whose attributes are serialized first (exponential histograms) can match;
    for other points the check fails and the caller finds the key anew."""
    attributes, count = key
    return len(point.attributes) == count and point.SerializeToString().startswith(attributes)


def attribute_key(point: Any, guess: AttributeKey | None = None) -> AttributeKey | None:
    """``point``'s attribute bytes and count, tried first as ``guess`` (the key of the point
    at the same place in the last request: clients send the same sets in the same order);
    None when the bytes cannot be read (see ``attribute_bytes``)."""
    if guess is not None and has_attribute_key(point, guess):
        return guess
    found = attribute_bytes(point)
    return None if found is None else (found, len(point.attributes))
