"""Prometheus remote write 1.0 messages (``prometheus.WriteRequest``), built from their schema
at runtime: four small messages, so no generated code and no extra package."""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_FILE = "driftline/prometheus_remote_write.proto"
_PACKAGE = "prometheus"
_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA = {
    "Label": (("name", 1, _F.TYPE_STRING, None), ("value", 2, _F.TYPE_STRING, None)),
    "Sample": (("value", 1, _F.TYPE_DOUBLE, None), ("timestamp", 2, _F.TYPE_INT64, None)),
    "TimeSeries": (("labels", 1, _F.TYPE_MESSAGE, "Label"),
                   ("samples", 2, _F.TYPE_MESSAGE, "Sample")),
    "WriteRequest": (("timeseries", 1, _F.TYPE_MESSAGE, "TimeSeries"),),
}


@cache
def write_request_class() -> Any:
    """The ``WriteRequest`` message class (in a private descriptor pool)."""
    proto = descriptor_pb2.FileDescriptorProto(name=_FILE, package=_PACKAGE, syntax="proto3")
    for name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind, type_name in fields:
            label = _F.LABEL_REPEATED if type_name else _F.LABEL_OPTIONAL
            field = message.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{_PACKAGE}.WriteRequest"))
