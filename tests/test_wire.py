"""What leaves the app on the wire: the real OTLP/gRPC exporter sends to a real gRPC
endpoint, and the test decodes the protobuf that arrived."""

from __future__ import annotations

from concurrent import futures

import grpc
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from sklearn.ensemble import HistGradientBoostingClassifier

from driftline import exphist, semconv
from driftline.instrumentation.sklearn import SklearnInstrumentor

RNG = np.random.default_rng(99)


class _Capture(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    def Export(self, request, context):  # the gRPC method name
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture()
def endpoint():
    capture = _Capture()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(capture, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", capture
    finally:
        server.stop(grace=None)


def _points(capture: _Capture, name: str) -> list:
    return [point for request in capture.requests for rm in request.resource_metrics
            for sm in rm.scope_metrics for metric in sm.metrics if metric.name == name
            for point in getattr(metric, metric.WhichOneof("data")).data_points]


def test_negative_zero_nan_and_infinite_values_arrive_as_the_data_model_says(endpoint) -> None:
    address, capture = endpoint
    X = np.column_stack([RNG.uniform(-3, 3, 1000), RNG.normal(size=1000)])
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, (X[:, 0] > 0).astype(int))
    live = X.copy()
    live[:40, 0] = 0.0
    live[40:47, 0] = np.nan  # gradient boosting takes NaN and infinities
    infinite = X[:10].copy()
    infinite[:3, 0] = np.inf
    instrumentor = SklearnInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(),
                            metric_exporter=OTLPMetricExporter(endpoint=address, insecure=True))
    try:
        model.predict_proba(live)
        model.predict_proba(infinite)
        assert instrumentor.recorder.force_flush()
    finally:
        instrumentor.uninstrument()

    features = [p for p in _points(capture, semconv.ML_FEATURE_VALUE)
                if {kv.key: kv.value.string_value for kv in p.attributes}[
                    semconv.ML_FEATURE_NAME] == "f0"]
    finite = np.concatenate([live[:, 0], infinite[:, 0]])
    finite = finite[np.isfinite(finite)]
    expected = exphist.from_values(finite)
    [point] = features
    assert point.count == finite.size == 1000 + 10 - 7 - 3
    assert point.zero_count == 40 + int(np.sum(infinite[3:, 0] == 0))
    assert point.scale == expected.scale
    assert point.negative.offset == expected.negative.offset
    assert list(point.negative.bucket_counts) == list(expected.negative.counts)
    assert sum(point.negative.bucket_counts) == int(np.sum(finite < 0)) > 400
    assert list(point.positive.bucket_counts) == list(expected.positive.counts)
    assert point.min == pytest.approx(finite.min()) and point.min < -2.9
    missing = {(kv.value.string_value, p.as_int) for p in
               _points(capture, semconv.ML_FEATURE_MISSING) for kv in p.attributes
               if kv.key == semconv.ML_OPERATION}
    assert missing == {("predict_proba", 10)}
    rows = sum(p.as_int for p in _points(capture, semconv.ML_PREDICT_ROWS))
    assert rows == 1010
