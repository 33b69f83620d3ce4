"""The span contract around one observed model call, shared by every instrumentor.

Span ``"{operation} {model}"``, kind INTERNAL, the model attributes, ``ml.batch.size`` and
``ml.feature.count``; on failure status ERROR, ``error.type`` and the exception recorded,
then re-raised unchanged. Either way the call is handed to ``submit`` with its outputs (None
on failure), duration and error type.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from driftline import semconv
from driftline.identity import ModelIdentity
from driftline.instrumentation.recorder import Attributes

Submit = Callable[[Any, float, "str | None"], None]


def model_attributes(identity: ModelIdentity, framework: str, operation: str) -> Attributes:
    return (
        (semconv.ML_MODEL_NAME, identity.name),
        (semconv.ML_MODEL_VERSION, identity.version),
        (semconv.ML_MODEL_FRAMEWORK, framework),
        (semconv.ML_OPERATION, operation),
    )


def observe(tracer: Tracer, attributes: Attributes, rows: int, feature_count: int,
            call: Callable[[], Any], submit: Submit) -> Any:
    """Run ``call`` inside the model span and hand the outcome to ``submit``."""
    values = dict(attributes)
    name = f"{values[semconv.ML_OPERATION]} {values[semconv.ML_MODEL_NAME]}"
    with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, record_exception=False,
                                      set_status_on_exception=False) as span:
        if span.is_recording():
            span.set_attributes(values)
            span.set_attribute(semconv.ML_BATCH_SIZE, rows)
            span.set_attribute(semconv.ML_FEATURE_COUNT, feature_count)
        start = time.perf_counter()
        try:
            outputs = call()
        except BaseException as exc:
            duration_s = time.perf_counter() - start
            error_type = type(exc).__qualname__
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute(semconv.ERROR_TYPE, error_type)
            submit(None, duration_s, error_type)
            raise
        submit(outputs, time.perf_counter() - start, None)
        return outputs
