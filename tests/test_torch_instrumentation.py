"""PyTorch instrumentation: spans and metrics, asserted exactly, with the real SDK and torch.

Skips without torch (an optional dependency), except under ``CI=true`` where a missing torch
is a broken CI image and the module fails instead.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import driftline
from driftline import exphist, profile, semconv
from driftline.identity import ModelIdentity, identity_of
from driftline.projection import DEFAULT_SEED, Projection
from tests._otel import InMemoryMetricExporter
from tests.conftest import require_torch

torch = require_torch()
nn = torch.nn

from driftline.instrumentation.torch import (  # noqa: E402  (after the torch check)
    TorchInstrumentor,
    capture_profile,
    reference_projection,
)

PROJECTED = [f"proj{i}" for i in range(16)] + ["l2_norm"]


class ShapeMismatch(RuntimeError):
    """Raised by a test layer; its identity proves the exception passes through unchanged."""


@contextmanager
def _instrumented(**kwargs: Any) -> Iterator[tuple[TorchInstrumentor, InMemorySpanExporter,
                                                    InMemoryMetricExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricExporter()
    instrumentor = TorchInstrumentor()
    instrumentor.instrument(tracer_provider=provider, metric_exporter=metrics, **kwargs)
    try:
        yield instrumentor, spans, metrics
    finally:
        instrumentor.uninstrument()


@pytest.fixture()
def telemetry():
    with _instrumented() as instruments:
        yield instruments


def _flush(instrumentor: TorchInstrumentor) -> None:
    assert instrumentor.recorder.force_flush()
    assert instrumentor.recorder.failed_aggregations == 0


def _mlp(outputs: int = 3, *head: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, outputs), *head).eval()


def _vision(classes: int = 5) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, classes)).eval()


def _tabular(rows: int, seed: int = 0) -> torch.Tensor:
    X = torch.randn(rows, 6, generator=torch.Generator().manual_seed(seed))
    X[:, 2] -= 3.0  # a feature that lives below zero
    return X


def _images(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _by(metrics: InMemoryMetricExporter, name: str, key: str) -> dict[str, Any]:
    return {p.attributes[key]: p for p in metrics.points(name)}


def _assert_same_histogram(point: Any, expected: exphist.ExpHistogram) -> None:
    """Bucket for bucket once the profile's finer histogram (1280 buckets per sign, the
    SDK's 160 for the app) is downscaled to the app's scale, as the processor compares."""
    assert expected.scale >= point.scale
    expected = exphist.downscale(expected, point.scale)
    assert (point.scale, point.count, point.zero_count) == (
        expected.scale, expected.count, expected.zero_count)
    assert point.positive.offset == expected.positive.offset
    assert list(point.positive.bucket_counts) == list(expected.positive.counts)
    assert point.negative.offset == expected.negative.offset
    assert list(point.negative.bucket_counts) == list(expected.negative.counts)
    assert (point.min, point.max) == (expected.min, expected.max)


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).numpy()


# --- spans ----------------------------------------------------------------------------------


def test_mlp_call_gives_one_span_for_the_outermost_module(telemetry) -> None:
    _, spans, _ = telemetry
    model = driftline.register(_mlp(), name="churn-net", version="2")
    model(_tabular(25))
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["forward churn-net"]  # none for the 3 layers
    span = finished[0]
    assert span.kind is SpanKind.INTERNAL
    assert dict(span.attributes) == {
        semconv.ML_MODEL_NAME: "churn-net", semconv.ML_MODEL_VERSION: "2",
        semconv.ML_MODEL_FRAMEWORK: "torch", semconv.ML_OPERATION: "forward",
        semconv.ML_BATCH_SIZE: 25, semconv.ML_FEATURE_COUNT: 6,
    }
    assert span.instrumentation_scope.name == "driftline.instrumentation.torch"
    assert span.status.status_code is StatusCode.UNSET


def test_every_outer_call_is_one_span_and_unregistered_models_take_their_class_name(
        telemetry) -> None:
    _, spans, _ = telemetry
    model = _mlp()
    for rows in (1, 7, 3):
        model(_tabular(rows))
    assert [s.name for s in spans.get_finished_spans()] == ["forward Sequential"] * 3
    assert [s.attributes[semconv.ML_BATCH_SIZE] for s in spans.get_finished_spans()] == [1, 7, 3]


# --- metrics --------------------------------------------------------------------------------


def test_metrics_carry_exact_feature_distributions_classes_confidence_and_margin(
        telemetry) -> None:
    instrumentor, _, metrics = telemetry
    model = driftline.register(_mlp(), name="churn-net")
    first, second = _tabular(120, seed=1), _tabular(80, seed=2)
    with torch.no_grad():
        logits = torch.cat([model(first), model(second)])
    _flush(instrumentor)

    assert [p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)] == [200]
    assert [p.count for p in metrics.points(semconv.ML_PREDICT_DURATION)] == [2]
    features = _by(metrics, semconv.ML_FEATURE_VALUE, semconv.ML_FEATURE_NAME)
    assert list(features) == [f"f{i}" for i in range(6)]
    for i in range(6):
        # Two calls merge into the same histogram as one pass over all the rows.
        expected = exphist.merge([
            exphist.from_values(first[:, i].numpy().astype(np.float64)),
            exphist.from_values(second[:, i].numpy().astype(np.float64))])
        _assert_same_histogram(features[f"f{i}"], expected)
        assert features[f"f{i}"].attributes[semconv.ML_OPERATION] == "forward"
    assert sum(features["f2"].negative.bucket_counts) == int((first[:, 2] < 0).sum()
                                                             + (second[:, 2] < 0).sum()) > 0

    probabilities = _softmax(logits)
    labels = probabilities.argmax(axis=1)
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == {str(c): int((labels == c).sum()) for c in np.unique(labels)}
    ordered = np.sort(probabilities, axis=1)
    confidence = next(iter(metrics.points(semconv.ML_PREDICTION_CONFIDENCE)))
    assert confidence.count == 200
    assert confidence.sum == pytest.approx(ordered[:, -1].sum(), rel=1e-6)
    assert (confidence.min, confidence.max) == pytest.approx(
        (ordered[:, -1].min(), ordered[:, -1].max()), rel=1e-6)
    margin = next(iter(metrics.points(semconv.ML_PREDICTION_MARGIN)))
    assert margin.count == 200
    assert margin.sum == pytest.approx((ordered[:, -1] - ordered[:, -2]).sum(), rel=1e-6)
    assert list(metrics.points(semconv.ML_PREDICTION_VALUE)) == []


def test_logits_probabilities_and_log_probabilities_read_the_same(telemetry) -> None:
    instrumentor, _, metrics = telemetry
    models = {"logits": _mlp(), "probabilities": _mlp(3, nn.Softmax(dim=1)),
              "log-probabilities": _mlp(3, nn.LogSoftmax(dim=1))}
    X = _tabular(300)
    for name, model in models.items():
        driftline.register(model, name=name)(X)
    _flush(instrumentor)
    confidence = _by(metrics, semconv.ML_PREDICTION_CONFIDENCE, semconv.ML_MODEL_NAME)
    expected = np.sort(_softmax(models["logits"](X).detach()), axis=1)[:, -1]
    for name in models:
        assert confidence[name].count == 300
        assert confidence[name].sum == pytest.approx(expected.sum(), rel=1e-5), name
    classes: dict[str, dict[str, int]] = {}
    for point in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC):
        classes.setdefault(point.attributes[semconv.ML_MODEL_NAME], {})[
            point.attributes[semconv.ML_PREDICTION_CLASS]] = point.value
    assert classes["probabilities"] == classes["logits"] == classes["log-probabilities"]


class _Squeeze(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(1)


@pytest.mark.parametrize("head", [(), (_Squeeze(),)], ids=["N-by-1", "N"])
def test_regression_module_gives_prediction_values_not_classes(telemetry, head) -> None:
    instrumentor, _, metrics = telemetry
    model = _mlp(1, *head)
    X = _tabular(150)
    with torch.no_grad():
        predictions = model(X).double().numpy().ravel()
    _flush(instrumentor)
    assert list(metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
    assert list(metrics.points(semconv.ML_PREDICTION_CONFIDENCE)) == []
    values = next(iter(metrics.points(semconv.ML_PREDICTION_VALUE)))
    _assert_same_histogram(values, exphist.from_values(predictions))
    assert values.sum == pytest.approx(predictions.sum(), rel=1e-9)


def test_task_from_the_environment_and_from_kwargs(monkeypatch) -> None:
    X = _tabular(100)
    monkeypatch.setenv(semconv.ENV_TORCH_TASK, "regression")
    with _instrumented() as (instrumentor, _, metrics):
        _mlp(3)(X)
        _flush(instrumentor)
        assert list(metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []
        assert next(iter(metrics.points(semconv.ML_PREDICTION_VALUE))).count == 300
    monkeypatch.delenv(semconv.ENV_TORCH_TASK)
    # One logit column, declared a classifier: read as a binary logit (sigmoid).
    with _instrumented(task="classification") as (instrumentor, _, metrics):
        logit = _mlp(1)(X).detach().double().numpy().ravel()
        _flush(instrumentor)
        positive = int((1 / (1 + np.exp(-logit)) > 0.5).sum())
        classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
                   for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
        assert classes == {k: v for k, v in {"0": 100 - positive, "1": positive}.items() if v}
        assert next(iter(metrics.points(semconv.ML_PREDICTION_CONFIDENCE))).count == 100
    with pytest.raises(ValueError, match="task: must be one of classification, regression"):
        TorchInstrumentor().instrument(task="ranking", tracer_provider=TracerProvider(),
                                       metric_exporter=InMemoryMetricExporter())
    assert not TorchInstrumentor().is_instrumented_by_opentelemetry


def test_a_bad_task_in_the_environment_warns_and_reads_the_shape(monkeypatch, caplog) -> None:
    monkeypatch.setenv(semconv.ENV_TORCH_TASK, "ranking")
    with _instrumented() as (instrumentor, _, metrics):
        _mlp(3)(_tabular(10))
        _flush(instrumentor)
        assert sum(p.value for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == 10
    assert "DRIFTLINE_TORCH_TASK='ranking' is not one of classification, regression" in \
        caplog.text


class _KeywordModel(nn.Module):
    """Takes its batch as a keyword and returns a mapping, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _mlp(4)

    def forward(self, *, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.body(features)
        return {"hidden": features, "logits": logits}


def test_keyword_inputs_and_mapping_outputs(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    model = _KeywordModel().eval()
    X = _tabular(40)
    with torch.no_grad():
        logits = model(features=X)["logits"]
    assert [(s.name, s.attributes[semconv.ML_BATCH_SIZE]) for s in
            spans.get_finished_spans()] == [("forward _KeywordModel", 40)]
    _flush(instrumentor)
    labels = logits.argmax(dim=1).numpy()
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert classes == {str(c): int((labels == c).sum()) for c in np.unique(labels)}


# --- wide inputs ----------------------------------------------------------------------------


def test_image_input_is_monitored_through_the_seeded_projection(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    images = _images(64)
    _vision()(images)
    assert spans.get_finished_spans()[0].attributes[semconv.ML_FEATURE_COUNT] == 768
    _flush(instrumentor)
    features = _by(metrics, semconv.ML_FEATURE_VALUE, semconv.ML_FEATURE_NAME)
    assert list(features) == PROJECTED
    expected = Projection(DEFAULT_SEED, 768, 16).apply(images.numpy().reshape(64, -1))
    for name, values in expected:
        _assert_same_histogram(features[name], exphist.from_values(values))
    norms = features["l2_norm"]
    assert norms.sum == pytest.approx(float(images.flatten(1).double().norm(dim=1).sum()),
                                      rel=1e-9)


def test_projection_limit_seed_and_components_are_configurable() -> None:
    X = _tabular(50)
    with _instrumented(max_features=4, projection_seed=9, projection_components=3) as (
            instrumentor, _, metrics):
        _mlp()(X)
        _flush(instrumentor)
        features = _by(metrics, semconv.ML_FEATURE_VALUE, semconv.ML_FEATURE_NAME)
    assert list(features) == ["proj0", "proj1", "proj2", "l2_norm"]
    for name, values in Projection(9, 6, 3).apply(X.numpy()):
        _assert_same_histogram(features[name], exphist.from_values(values))
    with pytest.raises(ValueError, match="max_features: must be an integer >= 0"):
        TorchInstrumentor().instrument(max_features=-1, tracer_provider=TracerProvider(),
                                       metric_exporter=InMemoryMetricExporter())


@pytest.mark.parametrize(("make_model", "make_inputs", "projected"), [
    (_mlp, _tabular, False),
    (_vision, _images, True),
], ids=["tabular", "images"])
def test_reference_profile_matches_what_production_exported_bucket_for_bucket(
        telemetry, tmp_path, make_model: Callable[[], nn.Module],
        make_inputs: Callable[[int], torch.Tensor], projected: bool) -> None:
    instrumentor, _, metrics = telemetry
    model = driftline.register(make_model(), name="served", version="4")
    inputs = make_inputs(300)
    with torch.no_grad():
        model(inputs)  # production sees the training rows
    _flush(instrumentor)
    exports_before = len(metrics.exported)

    reference = capture_profile(model, inputs)
    assert (reference.model_name, reference.model_version, reference.row_count) == (
        "served", "4", 300)
    assert not model.training
    features = inputs.shape[1] if inputs.ndim == 2 else 768
    assert reference.projection == (Projection(DEFAULT_SEED, 768) if projected else None)
    assert reference_projection(features) == reference.projection

    exported = _by(metrics, semconv.ML_FEATURE_VALUE, semconv.ML_FEATURE_NAME)
    assert [c.name for c in reference.features()] == list(exported)
    for name, point in exported.items():
        _assert_same_histogram(point, reference.columns[name].histogram)
        assert point.sum == reference.columns[name].histogram.sum
    classes = {p.attributes[semconv.ML_PREDICTION_CLASS]: p.value
               for p in metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)}
    assert dict(reference.columns[semconv.PROFILE_COLUMN_PREDICTION_CLASS].frequencies) == \
        classes
    _assert_same_histogram(next(iter(metrics.points(semconv.ML_PREDICTION_CONFIDENCE))),
                           reference.columns[semconv.PROFILE_COLUMN_PREDICTION_CONFIDENCE]
                           .histogram)
    # The reference run emitted no telemetry of its own.
    _flush(instrumentor)
    assert len(metrics.exported) == exports_before

    # The plain profile API with the same projection gives the same feature columns.
    flat = inputs.numpy().reshape(300, -1)
    plain = profile.capture(flat, model="served", version="4",
                            projection=reference_projection(flat.shape[1]))
    for column in reference.features():
        assert plain.columns[column.name].to_dict() == column.to_dict()
    profile.save(reference, tmp_path / "served.json")
    assert profile.load(tmp_path / "served.json").projection == reference.projection


def test_capture_profile_of_a_regressor_restores_training_mode() -> None:
    model = _mlp(1).train()
    X = _tabular(50)
    reference = capture_profile(model, X, model="price")
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(X).double().numpy().ravel()
    values = reference.columns[semconv.ML_PREDICTION_VALUE]
    assert values.histogram.to_dict() == exphist.from_values(
        expected, profile.DEFAULT_MAX_BUCKETS).to_dict()
    assert semconv.PROFILE_COLUMN_PREDICTION_CLASS not in reference.columns


# --- failure, uninstrument, suppression, training ---------------------------------------------


class _Broken(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def test_failure_sets_error_status_and_reraises_the_same_exception(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    error = ShapeMismatch("expected 6 features")
    model = driftline.register(nn.Sequential(nn.Linear(6, 6), _Broken(error)).eval(),
                               name="broken")
    with pytest.raises(ShapeMismatch) as raised:
        model(_tabular(4))
    assert raised.value is error
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["forward broken"]
    span = finished[0]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "expected 6 features"
    assert span.attributes[semconv.ERROR_TYPE] == "ShapeMismatch"
    event = span.events[0]
    assert event.name == "exception"
    assert event.attributes["exception.type"].endswith("ShapeMismatch")
    assert event.attributes["exception.message"] == "expected 6 features"
    _flush(instrumentor)
    failed = [p for p in metrics.points(semconv.ML_PREDICT_DURATION)
              if p.attributes.get(semconv.ERROR_TYPE) == "ShapeMismatch"]
    assert len(failed) == 1 and failed[0].count == 1
    assert [p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)] == [4]
    assert list(metrics.points(semconv.ML_PREDICTION_CLASS_METRIC)) == []


def test_uninstrument_restores_module_call_exactly_and_emits_nothing_after() -> None:
    original = vars(nn.Module)["__call__"]
    model, X = _mlp(), _tabular(5)
    with _instrumented() as (instrumentor, spans, _):
        assert vars(nn.Module)["__call__"] is not original
        assert vars(nn.Module)["__call__"].__wrapped__ is original
        model(X)
        assert len(spans.get_finished_spans()) == 1
        instrumentor.uninstrument()
        assert vars(nn.Module)["__call__"] is original
        assert all("__call__" not in vars(cls) for cls in (nn.Linear, nn.Sequential, nn.ReLU))
        model(X)
        assert len(spans.get_finished_spans()) == 1


def test_suppressed_calls_give_no_spans_or_metrics(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    model = _mlp()
    with suppress_instrumentation():
        model(_tabular(8))
    assert spans.get_finished_spans() == ()
    _flush(instrumentor)
    assert list(metrics.points(semconv.ML_PREDICT_ROWS)) == []


class _FineTuned(nn.Module):
    """A training-mode model around a frozen backbone kept in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _mlp(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_modules_in_training_mode_are_not_observed(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    model = _mlp().train()
    X = _tabular(16)
    model(X).sum().backward()
    tuned = _FineTuned().train()
    tuned.backbone.eval()
    tuned(X)
    assert spans.get_finished_spans() == ()
    model.eval()
    model(X)
    assert [s.name for s in spans.get_finished_spans()] == ["forward Sequential"]
    _flush(instrumentor)
    assert [p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)] == [16]


# --- the model's behaviour is untouched --------------------------------------------------------


def test_outputs_bit_identical_gradients_equal_and_inputs_untouched() -> None:
    model = _vision()
    images = _images(32)
    plain = model(images).detach()
    probe = images.clone().requires_grad_(True)
    model(probe).sum().backward()
    plain_grad = probe.grad.clone()
    with _instrumented() as (instrumentor, spans, _):
        snapshot = images.clone()
        instrumented = model(images)
        with torch.no_grad():
            instrumented_no_grad = model(images)
        probe = images.clone().requires_grad_(True)
        model(probe).sum().backward()  # autograd through an observed call
        _flush(instrumentor)
        assert len(spans.get_finished_spans()) == 3
    assert instrumented.requires_grad and instrumented.grad_fn is not None
    for output in (instrumented.detach(), instrumented_no_grad):
        assert output.dtype == plain.dtype
        assert output.numpy().tobytes() == plain.numpy().tobytes()
    assert probe.grad.numpy().tobytes() == plain_grad.numpy().tobytes()
    assert torch.equal(images, snapshot)  # after the recorder read them


def test_registered_identity_survives_torch_save_and_load(telemetry) -> None:
    _, spans, _ = telemetry
    model = driftline.register(_mlp(), name="churn-net", version="7")
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert identity_of(loaded) == ModelIdentity("churn-net", "7")
    assert "_driftline_identity" not in loaded.state_dict()
    loaded.eval()(_tabular(3))
    assert [s.name for s in spans.get_finished_spans()] == ["forward churn-net"]


def test_eight_threads_give_exact_row_counts_and_one_span_per_call(telemetry) -> None:
    instrumentor, spans, metrics = telemetry
    model = _mlp()
    batch_sizes = [1, 3, 7, 20]
    X = _tabular(20)

    def serve() -> None:
        with torch.no_grad():
            for i in range(25):
                model(X[: batch_sizes[i % 4]])

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _flush(instrumentor)
    expected_rows = 8 * sum(batch_sizes[i % 4] for i in range(25))
    assert len(spans.get_finished_spans()) == 8 * 25
    assert sum(p.value for p in metrics.points(semconv.ML_PREDICT_ROWS)) == expected_rows
    assert sum(p.count for p in metrics.points(semconv.ML_FEATURE_VALUE)) == 6 * expected_rows


def test_compiled_modules_keep_their_name_and_one_span_per_call(telemetry) -> None:
    _, spans, _ = telemetry
    model = _mlp()
    X = _tabular(5)
    with torch.no_grad():
        plain = model(X)
        spans.clear()
        compiled = torch.compile(model, backend="eager")
        outputs = [compiled(X) for _ in range(2)]
    assert [s.name for s in spans.get_finished_spans()] == ["forward Sequential"] * 2
    assert all(torch.equal(output, plain) for output in outputs)


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_jit_trace_of_an_instrumented_module_succeeds_and_the_trace_is_observed(
        telemetry) -> None:
    _, spans, _ = telemetry
    model = _mlp()
    X = _tabular(5)
    # check_trace reruns the module and compares graphs: a wrapper inside would differ.
    traced = torch.jit.trace(model, X, check_trace=True)
    spans.clear()
    scripted = driftline.register(torch.jit.script(model), name="scripted")
    assert torch.equal(traced(X), model(X)) and torch.equal(scripted(X), model(X))
    assert [s.name for s in spans.get_finished_spans()] == [
        "forward TopLevelTracedModule", "forward Sequential", "forward scripted",
        "forward Sequential"]


# --- wiring ---------------------------------------------------------------------------------


def test_torch_instrumentor_is_registered_for_opentelemetry_instrument() -> None:
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert found["torch"].load() is TorchInstrumentor


@pytest.mark.parametrize("torch_first", [False, True], ids=["auto-first", "torch-first"])
def test_auto_instruments_torch_once_the_app_imports_it(torch_first: bool) -> None:
    code = ("import sys\n"
            + ("import torch\n" if torch_first else "")
            + "import driftline.auto\n"
            "loaded_by_auto = 'torch' in sys.modules\n"
            "import torch\n"
            "call = vars(torch.nn.Module)['__call__']\n"
            "print(loaded_by_auto, hasattr(call, '__wrapped__'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=180, env={"OTEL_TRACES_EXPORTER": "none",
                                              "OTEL_METRICS_EXPORTER": "none",
                                              "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{torch_first} True"
