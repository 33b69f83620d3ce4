"""PyTorch instrumentation: a span and distribution metrics for each top-level module call.

``torch.nn.Module.__call__`` is wrapped once, on the base class. Only the outermost module
call is observed: the layers a model calls inside its ``forward`` are not (one span per
model call, never one per sub-layer). Only modules in eval mode (``module.training`` is
False) are observed, since serving runs ``model.eval()`` while a training loop calls the
model thousands of times in train mode; a module in eval mode called from inside a
training-mode module (a frozen backbone) is not observed either. Usage::

    TorchInstrumentor().instrument(tracer_provider=..., metric_exporter=...)

How calls are read (in the recorder thread, never in ``forward``):

* Inputs: the first positional tensor (else the first tensor keyword argument), flattened
  per row to ``[N, F]``. Up to ``max_features`` values per row they are the columns
  ``f0..f{F-1}``; wider inputs (images, embeddings, sequences) are monitored through a
  seeded random projection (``driftline.projection``) as ``proj0..proj{k-1}`` and ``l2_norm``.
* Outputs (the first tensor of a tuple, or ``logits`` of a mapping) are read from their
  shape: a floating ``[N, C]`` with ``C >= 2`` is a classifier's scores (probabilities when
  every row is a distribution, else logits, softmaxed), integer outputs are labels,
  ``[N]`` and ``[N, 1]`` are regression values. ``task="classification"|"regression"``
  or ``DRIFTLINE_TORCH_TASK`` overrides this; a forced classifier with one output column
  reads it as a binary probability or logit. Classes are the column indexes ``0..C-1``.

On the span, ``ml.batch.size`` is the input's first dimension and ``ml.feature.count`` its
values per row (768 for a 3x16x16 image), not the monitored columns; a call without a tensor
batch reports 0 for both and feeds only the row count and duration metrics. Traces and
compilations (``torch.jit.trace``, ``torch.compile``, ``torch.export``) are not observed.
Cost in ``forward``: a span and a hand-off per observed call, about 2 us per sub-layer call.

``capture_profile`` records a reference profile read exactly the same way.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import (
    is_instrumentation_enabled,
    suppress_instrumentation,
)

from driftline import profile, projection, semconv
from driftline.columns import table_columns
from driftline.identity import identity_of
from driftline.instrumentation import _env
from driftline.instrumentation._aggregation import ModelTraits
from driftline.instrumentation._observe import (
    OBSERVING,
    CallSite,
    CallSites,
    SpanGate,
    observe,
    unwrap_model_method,
    wrap_model_method,
)
from driftline.instrumentation.recorder import Recorder
from driftline.labels import TASK_CLASSIFICATION, TASK_REGRESSION, TASKS
from driftline.projection import DEFAULT_COMPONENTS, DEFAULT_MAX_FEATURES, DEFAULT_SEED

if TYPE_CHECKING:
    import torch

_logger = logging.getLogger(__name__)

SCOPE = semconv.SCOPE_PREFIX + semconv.FRAMEWORK_TORCH
# Rows whose scores all lie in [0, 1] and sum to 1 within this are probabilities, not logits.
PROBABILITY_SUM_TOLERANCE = 1e-4
DEFAULT_PROFILE_BATCH_ROWS = 1024
# The keyword a Hugging Face style output mapping holds its scores under.
LOGITS_KEY = "logits"
_CALL = "__call__"
# torch.compile's wrapper class and where it keeps the compiled module.
COMPILED_MODULE_CLASS = "OptimizedModule"
COMPILED_ORIGINAL_ATTRIBUTE = "_orig_mod"

# True while a module call runs, so the modules it calls inside are not observed; shared
# with every instrumentor and the explicit API (one report per call).
_observing = OBSERVING


class TorchInstrumentor(BaseInstrumentor):
    """Instruments calls of ``torch.nn.Module`` in eval mode, outermost module only.

    kwargs of ``instrument()``: ``tracer_provider``; ``metric_exporter`` or ``recorder``;
    ``max_features`` (default 64), ``projection_seed`` (42) and ``projection_components``
    (16) for wide inputs; ``task`` (``classification``/``regression``, else read from the
    output shape or ``DRIFTLINE_TORCH_TASK``).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("torch >= 2.1",)

    def _instrument(self, **kwargs: Any) -> None:
        import torch

        self._inputs = InputReader(
            kwargs.get("max_features", DEFAULT_MAX_FEATURES),
            kwargs.get("projection_seed", DEFAULT_SEED),
            kwargs.get("projection_components", DEFAULT_COMPONENTS))
        self._task = task_setting(kwargs.get("task"))
        self._tensor_type = torch.Tensor
        self._is_compiling = torch.compiler.is_compiling
        self._is_tracing = torch.jit.is_tracing
        self._spans = SpanGate(trace.get_tracer(SCOPE,
                                                tracer_provider=kwargs.get("tracer_provider")))
        self._sites = CallSites(semconv.FRAMEWORK_TORCH)
        self._recorder, self._owns_recorder = _env.recorder_from_kwargs(kwargs)
        wrap_model_method(torch.nn.Module, _CALL, self._observe)

    def _uninstrument(self, **kwargs: Any) -> None:
        import torch

        unwrap_model_method(torch.nn.Module, _CALL)
        _env.release_recorder(self._recorder, self._owns_recorder)

    @property
    def recorder(self) -> Recorder:
        return self._recorder

    def _observe(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        # Sub-layer calls never get here (wrap_model_method tests OBSERVING first).
        if instance is None or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        token = _observing.set(False)
        try:
            # A trace or compilation (jit.trace, torch.compile, torch.export) runs the model on
            # example or fake tensors: not traffic, and a wrapper inside would change the trace.
            if getattr(instance, "training", False) or self._is_compiling() \
                    or self._is_tracing():
                return wrapped(*args, **kwargs)
            return self._observed_call(wrapped, instance, args, kwargs)
        finally:
            _observing.reset(token)

    def _observed_call(self, wrapped: Callable[..., Any], instance: Any,
                       args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        inputs = _input_tensor(args, kwargs, self._tensor_type)
        rows, feature_count = _shape(inputs)
        site = self._sites.get(instance, semconv.OPERATION_FORWARD, None,
                               named=_unwrapped(instance))
        # Detached views (no copy) so the recorder does not keep an autograd graph alive.
        if inputs is not None and inputs.requires_grad:
            inputs = inputs.detach()
        ids, time_ns = self._recorder.call_ids(rows)
        return observe(self._spans, site, rows, feature_count, wrapped, args, kwargs,
                       self._submit, instance, inputs, ids, time_ns)

    def _submit(self, site: CallSite, model: Any, inputs: Any, outputs: Any, rows: int,
                duration_s: float, error_type: str | None, ids: Any, time_ns: int) -> None:
        output = _output_tensor(outputs, self._tensor_type) if outputs is not None else None
        if output is not None and output.requires_grad:
            output = output.detach()
        # The traits depend on the output's shape, so the output travels with them.
        self._recorder.submit((SCOPE, model, partial(self._traits, output), site.attributes,
                               inputs, output, rows, duration_s, error_type, ids, time_ns))

    def _traits(self, output: torch.Tensor | None, module: Any) -> ModelTraits:
        return output_traits(output, self._task, self._inputs)


# --- reading inputs -------------------------------------------------------------------------


class InputReader:
    """Turns an input tensor into named numeric columns, projecting wide inputs through the
    shared ``projection.Projections`` (the matrices of the last few input widths kept)."""

    def __init__(self, max_features: int = DEFAULT_MAX_FEATURES, seed: int = DEFAULT_SEED,
                 components: int = DEFAULT_COMPONENTS) -> None:
        try:
            self._projections = projection.Projections(max_features, seed, components)
        except projection.ProjectionError as exc:
            raise ValueError(f"torch instrumentation {exc}") from exc
        self.max_features, self.seed, self.components = max_features, seed, components

    def projection_for(self, input_features: int) -> projection.Projection | None:
        return self._projections.for_input(input_features)

    def __call__(self, tensor: Any) -> list[tuple[str, np.ndarray]]:
        array = tensor_to_numpy(tensor)
        if array.ndim == 0:
            return []
        rows = array.reshape(array.shape[0], -1)
        found = self.projection_for(rows.shape[1])
        return list(table_columns(rows)) if found is None else found.apply(rows)


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A CPU NumPy view or copy of ``tensor``; half precision becomes float32."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        return np.asarray(tensor)
    value = tensor.detach()
    if value.layout is not torch.strided:  # sparse
        value = value.to_dense()
    if value.device.type != "cpu":
        value = value.cpu()
    if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
        value = value.float()  # bfloat16 has no NumPy dtype
    return value.numpy()


# --- reading outputs ------------------------------------------------------------------------


def task_setting(task: str | None) -> str | None:
    """The task from ``task`` (an error when invalid) or ``DRIFTLINE_TORCH_TASK`` (a warning
    when invalid: an environment typo must not stop the service); None: read the shape."""
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"torch instrumentation task: must be one of {', '.join(TASKS)}, "
                             f"got {task!r}")
        return task
    raw = os.environ.get(semconv.ENV_TORCH_TASK, "").strip().lower()
    if raw and raw not in TASKS:
        _logger.warning("driftline: %s=%r is not one of %s; reading outputs from their shape",
                        semconv.ENV_TORCH_TASK, raw, ", ".join(TASKS))
        return None
    return raw or None


def output_traits(output: Any, task: str | None,
                  read_inputs: Callable[[Any], Iterable[tuple[str, np.ndarray]]] | None
                  ) -> ModelTraits:
    """How the recorder reads a module's output, decided from ``task`` or the output shape."""
    if output is None:
        return ModelTraits(False, read_inputs=read_inputs)
    shape = tuple(output.shape)
    floating = output.is_floating_point()
    task = task or _task_from_shape(shape, floating)
    if task == TASK_REGRESSION:
        return ModelTraits(False, None, None, read_inputs, _values)
    if task == TASK_CLASSIFICATION:
        if not floating:
            return ModelTraits(True, None, None, read_inputs, _labels)
        if len(shape) == 2 and shape[1] >= 2:
            return ModelTraits(True, tuple(range(shape[1])), None, read_inputs, _class_scores)
        if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
            return ModelTraits(True, (0, 1), None, read_inputs, _binary_scores)
    return ModelTraits(False, None, None, read_inputs, _nothing)


def _task_from_shape(shape: tuple[int, ...], floating: bool) -> str | None:
    if len(shape) not in (1, 2):
        return None  # sequences, maps, images: no prediction columns unless told
    if not floating:
        return TASK_CLASSIFICATION
    return TASK_CLASSIFICATION if len(shape) == 2 and shape[1] >= 2 else TASK_REGRESSION


def class_scores(outputs: Any) -> np.ndarray:
    """``[N, C]`` class probabilities: the outputs when every row is already a distribution,
    else their softmax (logits and log-probabilities alike)."""
    scores = np.asarray(outputs, dtype=np.float64)
    if _are_probabilities(scores):
        return scores
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _are_probabilities(scores: np.ndarray) -> bool:
    return bool(np.all((scores >= 0.0) & (scores <= 1.0))
                and np.all(np.abs(scores.sum(axis=1) - 1.0) <= PROBABILITY_SUM_TOLERANCE))


def _class_scores(output: Any) -> np.ndarray:
    return class_scores(tensor_to_numpy(output))


def _binary_scores(output: Any) -> np.ndarray:
    """One column read as P(class 1), or as its logit when outside [0, 1]."""
    values = tensor_to_numpy(output).astype(np.float64).ravel()
    if not np.all((values >= 0.0) & (values <= 1.0)):
        values = 1.0 / (1.0 + np.exp(-values))
    return np.column_stack([1.0 - values, values])


def _labels(output: Any) -> np.ndarray:
    return tensor_to_numpy(output).ravel()


def _values(output: Any) -> np.ndarray:
    return tensor_to_numpy(output).astype(np.float64).ravel()


def _nothing(output: Any) -> np.ndarray:
    return np.empty(0, dtype=np.float64)


# --- hot-path helpers: attribute reads and isinstance only ----------------------------------


def _input_tensor(args: tuple[Any, ...], kwargs: dict[str, Any], tensor_type: type) -> Any:
    """The first positional tensor, else the first tensor keyword argument (a batch: ndim>=1)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, tensor_type) and value.ndim >= 1:
            return value
    return None


def _output_tensor(outputs: Any, tensor_type: type) -> Any:
    """The tensor, the first element of a tuple or list, or ``logits`` (else the first
    tensor) of a mapping such as a Hugging Face ``ModelOutput``."""
    if isinstance(outputs, tensor_type):
        return outputs
    if isinstance(outputs, tuple | list):
        first = outputs[0] if outputs else None
        return first if isinstance(first, tensor_type) else None
    if isinstance(outputs, Mapping):
        logits = outputs.get(LOGITS_KEY)
        if isinstance(logits, tensor_type):
            return logits
        return next((v for v in outputs.values() if isinstance(v, tensor_type)), None)
    return None


def _unwrapped(module: Any) -> Any:
    """The module ``torch.compile`` wrapped, so a compiled model keeps its name."""
    if type(module).__name__ == COMPILED_MODULE_CLASS:
        return module._modules.get(COMPILED_ORIGINAL_ATTRIBUTE, module)
    return module


def _shape(tensor: Any) -> tuple[int, int]:
    """(rows, values per row) of a batch tensor; (0, 0) when the call had none."""
    if tensor is None:
        return 0, 0
    shape = tensor.shape
    return int(shape[0]), math.prod(shape[1:])


# --- reference profiles -----------------------------------------------------------------------


def reference_projection(input_features: int, *, max_features: int = DEFAULT_MAX_FEATURES,
                         seed: int = DEFAULT_SEED, components: int = DEFAULT_COMPONENTS
                         ) -> projection.Projection | None:
    """The projection the instrumentor (with the same settings) applies to inputs of
    ``input_features`` values per row; None when they are monitored column by column.
    Pass it to ``driftline.profile.capture(X, ..., projection=...)``."""
    return projection.for_input(input_features, max_features=max_features, seed=seed,
                                components=components)


def capture_profile(module: Any, inputs: Any, *, model: str | None = None,
                    version: str | None = None, task: str | None = None,
                    max_features: int = DEFAULT_MAX_FEATURES, seed: int = DEFAULT_SEED,
                    components: int = DEFAULT_COMPONENTS,
                    batch_rows: int = DEFAULT_PROFILE_BATCH_ROWS,
                    top_k: int = profile.DEFAULT_TOP_K) -> profile.Profile:
    """Reference profile of ``module`` on ``inputs`` (a tensor ``[N, ...]``), its columns
    read exactly as the instrumentor reads production: same names, same projection (stored
    in the profile), same class scores. Runs in eval mode under ``torch.no_grad()``, without
    telemetry; the module's mode is restored. Name and version default to its registration.
    """
    import torch

    identity = identity_of(module)
    chosen_task = task_setting(task)
    rows = int(inputs.shape[0])
    features = math.prod(inputs.shape[1:]) if inputs.ndim > 1 else 1
    builder = profile.ProfileBuilder(
        model or identity.name, identity.version if version is None else version,
        top_k=top_k, projection=reference_projection(
            features, max_features=max_features, seed=seed, components=components))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), suppress_instrumentation():
            for start in range(0, rows, batch_rows):
                batch = inputs[start:start + batch_rows]
                output = _output_tensor(module(batch), torch.Tensor)
                predictions, probabilities, output_task = _reference_outputs(output,
                                                                             chosen_task)
                profile.add_chunk(builder, tensor_to_numpy(batch).reshape(len(batch), -1),
                                  predictions, probabilities=probabilities, task=output_task)
    finally:
        module.train(was_training)
    return builder.build()


def _reference_outputs(output: Any, task: str | None
                       ) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(predictions, probabilities, task) for ``profile.add_chunk``, read as in production."""
    traits = output_traits(output, task, None)
    if output is None or traits.read_outputs is None or traits.read_outputs is _nothing:
        return None, None, None
    values = traits.read_outputs(output)
    if not traits.is_classifier:
        return values, None, TASK_REGRESSION
    if traits.classes is None:
        return values, None, TASK_CLASSIFICATION
    labels = np.asarray(traits.classes)[np.argmax(values, axis=1)]
    return labels, values, TASK_CLASSIFICATION
