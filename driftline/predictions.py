"""Prediction IDs and ground truth: how a label that arrives hours later finds its prediction.

Every observed model call gets one ID per row. The application chooses them
(``with driftline.prediction_ids(request_ids): model.predict(X)``) or reads the generated
ones back right after the call (``driftline.last_prediction_ids()``); either way the same
IDs travel on the ``ml.prediction`` records the instrumentation emits (when enabled, see
``instrumentation/_records.py``). Later, ``record_ground_truth(ids, labels)`` sends one
``ml.ground_truth`` log record per label; the processor's ``ml_performance`` joins the two
by ID. Generated IDs are ``<16 hex digits>-<row>``: one random draw per call, the strings
made only when read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, overload

from driftline import semconv
from driftline.labels import TASK_REGRESSION, class_label

_logger = logging.getLogger(__name__)

GROUND_TRUTH_SCOPE = "driftline.ground_truth"
# Log records emitted between two flushes of the logger provider (ground truth here,
# prediction records in the recorder): the SDK's default export batch, a quarter of its
# default log queue (2048), so a chunk never overflows the queue.
LOG_QUEUE_CHUNK = 512
GROUND_TRUTH_FLUSH_TIMEOUT_S = 60.0
ENV_BLRP_MAX_QUEUE_SIZE = "OTEL_BLRP_MAX_QUEUE_SIZE"
_RANDOM_BYTES = 8
_chosen: ContextVar[tuple[str, ...] | None] = ContextVar("driftline_prediction_ids",
                                                        default=None)
_last: ContextVar[Sequence[str]] = ContextVar("driftline_last_prediction_ids", default=())
_warned: set[str] = set()


class GeneratedIds(Sequence[str]):
    """The IDs of one call's rows, ``<base>-<row>``, made on demand."""

    __slots__ = ("_base", "_rows")

    def __init__(self, base: str, rows: int) -> None:
        self._base = base
        self._rows = rows

    def __len__(self) -> int:
        return self._rows

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._rows))]
        if not -self._rows <= index < self._rows:
            raise IndexError(f"prediction {index} of {self._rows}")
        return f"{self._base}-{index % self._rows}"

    def __repr__(self) -> str:
        return f"GeneratedIds({self._base!r}, rows={self._rows})"


@contextlib.contextmanager
def prediction_ids(ids: Iterable[Any]) -> Iterator[None]:
    """Use ``ids`` (one per row, turned into text) for the model calls made inside.

    A call whose row count differs from ``len(ids)`` gets generated IDs instead (logged once).
    """
    token = _chosen.set(tuple(str(i) for i in ids))
    try:
        yield
    finally:
        _chosen.reset(token)


def ids_for_call(rows: int) -> Sequence[str]:
    """The IDs of a call of ``rows`` rows (called by the instrumentation, in ``predict``)."""
    chosen = _chosen.get()
    if chosen is not None and len(chosen) == rows:
        ids: Sequence[str] = chosen
    else:
        if chosen is not None:
            _warn_once("length", "driftline: prediction_ids() gave %d IDs for a call of %d "
                       "rows; that call gets generated IDs", len(chosen), rows)
        ids = GeneratedIds(os.urandom(_RANDOM_BYTES).hex(), rows)
    _last.set(ids)
    return ids


def last_prediction_ids() -> Sequence[str]:
    """The IDs of the last observed model call in this thread or task (empty before any,
    and while ``ml.prediction`` records are off: nothing would carry them)."""
    return _last.get()


class GroundTruthNotDelivered(RuntimeError):
    """``record_ground_truth`` could not hand every label to the exporter; ``delivered`` says
    how many of the first labels were (the rest may be sent again: duplicates count once)."""

    def __init__(self, message: str, delivered: int) -> None:
        super().__init__(message)
        self.delivered = delivered


def record_ground_truth(ids: Iterable[Any], labels: Iterable[Any], *, model: str = "",
                        version: str = "", task: str | None = None,
                        logger_provider: Any = None,
                        flush_timeout_s: float = GROUND_TRUTH_FLUSH_TIMEOUT_S) -> int:
    """Send one ``ml.ground_truth`` log record per (ID, label) and return once all are
    exported; returns how many.

    A batch job's call, not the hot path: records are emitted in chunks smaller than the
    SDK's log queue and each chunk is flushed before the next, so none is dropped by a full
    queue (the SDK drops silently past 2048 by default). Raises ``GroundTruthNotDelivered``
    (with ``delivered``) when a flush does not finish, or when no SDK logger provider is set.

    Labels are class labels (sent in the canonical text of ``driftline.labels``, as
    predictions' labels are) unless they are floats or ``task="regression"``, then values.
    ``model``/``version`` help the processor when one ID space serves several models.
    Records go through ``logger_provider`` (default: the global one, which
    ``import driftline.auto`` sets up from ``OTEL_LOGS_EXPORTER``).
    """
    from opentelemetry import _logs

    provider = logger_provider or _logs.get_logger_provider()
    flush = getattr(provider, "force_flush", None)
    if not callable(flush):
        raise GroundTruthNotDelivered(
            "record_ground_truth: no OpenTelemetry SDK logger provider is set, so the labels "
            "would go nowhere; set OTEL_LOGS_EXPORTER=otlp before `import driftline.auto`, or "
            "pass logger_provider=", 0)
    logger = provider.get_logger(GROUND_TRUTH_SCOPE)
    model_attributes = {key: value for key, value in ((semconv.ML_MODEL_NAME, model),
                                                      (semconv.ML_MODEL_VERSION, version))
                        if value}
    chunk = log_queue_chunk()
    now_ns = time.time_ns()
    delivered = pending = 0
    for prediction_id, label in zip(ids, labels, strict=True):
        attributes = {**model_attributes, semconv.ML_PREDICTION_ID: str(prediction_id)}
        if task == TASK_REGRESSION or (task is None and isinstance(_plain(label), float)):
            attributes[semconv.ML_GROUND_TRUTH_VALUE] = float(label)
        else:
            attributes[semconv.ML_GROUND_TRUTH_LABEL] = class_label(label) or str(label)
        logger.emit(timestamp=now_ns, observed_timestamp=now_ns, attributes=attributes,
                    event_name=semconv.EVENT_GROUND_TRUTH)
        pending += 1
        if pending >= chunk:
            delivered = _flush(flush, delivered, pending, flush_timeout_s)
            pending = 0
    if pending:
        delivered = _flush(flush, delivered, pending, flush_timeout_s)
    return delivered


def log_queue_chunk(environ: Mapping[str, str] | None = None) -> int:
    """Log records to emit between two flushes: the SDK's default export batch, and never
    more than the log queue ``OTEL_BLRP_MAX_QUEUE_SIZE`` holds."""
    environ = os.environ if environ is None else environ
    try:
        queue = int(environ.get(ENV_BLRP_MAX_QUEUE_SIZE, "") or LOG_QUEUE_CHUNK)
    except ValueError:
        queue = LOG_QUEUE_CHUNK  # the SDK falls back to its default too (and logs it)
    return max(1, min(LOG_QUEUE_CHUNK, queue))


def _flush(flush: Any, delivered: int, pending: int, timeout_s: float) -> int:
    if not flush(round(timeout_s * 1000)):
        raise GroundTruthNotDelivered(
            f"record_ground_truth: {delivered} label(s) delivered; the flush of the next "
            f"{pending} did not finish within {timeout_s:g} s (the exporter is slow or the "
            "provider was shut down); send the labels from number "
            f"{delivered} again", delivered)
    return delivered + pending


def _plain(value: Any) -> Any:
    """NumPy scalars as Python ones, so ``np.int64(1)`` is the label ``"1"``."""
    return value.item() if hasattr(value, "item") and callable(value.item) else value


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        _logger.warning(message, *args)
