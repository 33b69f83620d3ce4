"""The ``otlp`` receiver: OTLP over gRPC (``grpc_server``) and HTTP (``http_server``) into
the pipelines; its config in ``config``, factory and component in ``receiver``."""

from __future__ import annotations
