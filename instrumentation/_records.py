"""``ml.prediction`` log records: one per sampled row, for joining with labels and audits.

Off unless ``DRIFTLINE_PREDICTION_RECORDS_RATIO`` (or ``RecordSettings.ratio``) is above 0:
records carry the inputs, which may be personal data, so sending them is a choice. Built in
the recorder thread, never in ``predict``: each row of a call is kept with probability
``ratio``, and at most ``per_second`` records leave per second (a token bucket, so a burst
takes what a quiet second left). A record holds the model's attributes, the row's
``ml.prediction.id``, its output (label with class scores and classes, or a value) and, as
the body, up to ``max_inputs`` of its inputs with text cut at ``max_text_chars``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import semconv
from driftline.columns import table_columns
from driftline.labels import class_label, is_label_dtype
from driftline.predictions import log_queue_chunk

_logger = logging.getLogger(__name__)

ENV_RATIO = "DRIFTLINE_PREDICTION_RECORDS_RATIO"
ENV_PER_SECOND = "DRIFTLINE_PREDICTION_RECORDS_PER_SECOND"
DEFAULT_RATIO = 0.0
DEFAULT_PER_SECOND = 100.0
DEFAULT_MAX_INPUTS = 64
DEFAULT_MAX_TEXT_CHARS = 256
RECORDS_SCOPE = "driftline.instrumentation.records"
# How long the recorder thread waits for the log exporter when the queue needs room.
FLUSH_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class RecordSettings:
    ratio: float = DEFAULT_RATIO
    per_second: float = DEFAULT_PER_SECOND
    max_inputs: int = DEFAULT_MAX_INPUTS
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RecordSettings:
        environ = os.environ if environ is None else environ
        return cls(ratio=_number(environ, ENV_RATIO, DEFAULT_RATIO, 0.0, 1.0),
                   per_second=_number(environ, ENV_PER_SECOND, DEFAULT_PER_SECOND, 0.0, None))

    @property
    def enabled(self) -> bool:
        return self.ratio > 0 and self.per_second > 0


def _number(environ: Mapping[str, str], name: str, default: float, low: float,
            high: float | None) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        raise ValueError(f"{name}={text!r}: must be a number from {low:g}"
                         + (f" to {high:g}" if high is not None else ""))
    return value


class PredictionRecords:
    """Samples rows of observed calls and emits them through an OpenTelemetry ``Logger``."""

    def __init__(self, logger: Any, settings: RecordSettings,
                 rng: np.random.Generator | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 flush: Callable[[int], bool] | None = None) -> None:
        """``flush`` is the logger provider's ``force_flush``: called after every
        ``log_queue_chunk()`` records, so a burst waits for the export instead of
        overflowing the SDK's log queue, which drops records with only a log line."""
        self._logger = logger
        self._settings = settings
        self._flush = flush
        self._flush_every = log_queue_chunk()
        self._unflushed = 0
        self._flush_failed = False
        self._rng = rng or np.random.default_rng()
        self._clock = clock
        # The bucket holds at least one record, so a cap below 1 per second still lets one
        # through every 1/per_second seconds.
        self._capacity = max(settings.per_second, 1.0)
        self._tokens = settings.per_second
        self._refilled_s = clock()
        self.emitted = 0
        self.capped = 0  # sampled rows left out by the per-second cap

    def emit(self, call: Any, traits: Any) -> int:
        """Records for a sample of ``call``'s rows; returns how many were emitted."""
        sampled = self.sampled(call.rows)
        allowed = min(sampled, int(self._take_tokens(sampled)))
        self.capped += sampled - allowed
        if allowed <= 0:
            return 0
        rows = np.sort(self._rng.choice(call.rows, allowed, replace=False))
        # Only the sampled rows are read: a record costs the same in a call of 10 or 10 000.
        inputs = self._inputs(_rows_of(call.inputs, rows), traits)
        outputs = self._outputs(_rows_of(call.outputs, rows), traits, len(rows))
        ids = call.prediction_ids
        for n, row in enumerate(rows.tolist()):
            attributes = dict(call.model_attributes)
            attributes[semconv.ML_PREDICTION_ID] = ids[row]
            attributes.update(outputs[n])
            self._logger.emit(timestamp=call.time_unix_nano,
                              observed_timestamp=time.time_ns(),
                              body={name: values[n] for name, values in inputs.items()},
                              attributes=attributes, event_name=semconv.EVENT_PREDICTION)
            self._unflushed += 1
            if self._unflushed >= self._flush_every:
                self._flush_queue()
        self.emitted += allowed
        return allowed

    def sampled(self, rows: int) -> int:
        """How many of ``rows`` rows get a record (a binomial draw below ratio 1)."""
        return int(self._rng.binomial(rows, self._settings.ratio)) \
            if self._settings.ratio < 1 else rows

    def _flush_queue(self) -> None:
        self._unflushed = 0
        if self._flush is None:
            return
        if not self._flush(FLUSH_TIMEOUT_MS) and not self._flush_failed:
            self._flush_failed = True
            _logger.warning("driftline: flushing ml.prediction records did not finish within "
                            "%d ms; the SDK's log queue may drop records (logged once)",
                            FLUSH_TIMEOUT_MS)

    def _take_tokens(self, wanted: int) -> float:
        now = self._clock()
        per_second = self._settings.per_second
        self._tokens = min(self._capacity,
                           self._tokens + (now - self._refilled_s) * per_second)
        self._refilled_s = now
        taken = min(float(wanted), math.floor(self._tokens))
        self._tokens -= taken
        return taken

    def _inputs(self, inputs: Any, traits: Any) -> dict[str, list[Any]]:
        reader = traits.read_inputs or (lambda x: table_columns(x, traits.feature_names))
        columns = {}
        for name, values in reader(inputs):
            if len(columns) >= self._settings.max_inputs:
                break
            columns[name] = [self._value(v) for v in np.asarray(values).tolist()]
        return columns

    def _value(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        return str(value)[: self._settings.max_text_chars]

    def _outputs(self, raw: Any, traits: Any, rows: int) -> list[dict[str, Any]]:
        outputs = (traits.read_outputs(raw) if traits.read_outputs is not None
                   else np.asarray(raw))
        classes = traits.classes
        if outputs.ndim == 2 and classes is not None and outputs.shape[1] == len(classes):
            names = [class_label(c) or str(c) for c in classes]
            best = np.argmax(outputs, axis=1)
            return [{semconv.ML_PREDICTION_LABEL: names[b],
                     semconv.ML_PREDICTION_SCORES: [float(x) for x in scores],
                     semconv.ML_PREDICTION_CLASSES: names}
                    for b, scores in zip(best.tolist(), outputs.tolist(), strict=True)]
        flat = outputs.reshape(rows, -1)[:, 0] if outputs.ndim > 1 else outputs
        if traits.is_classifier or is_label_dtype(flat):
            return [{semconv.ML_PREDICTION_LABEL: class_label(v) or str(v)}
                    for v in flat.tolist()]
        return [{semconv.ML_PREDICTION_VALUE_ATTRIBUTE: float(v)} for v in flat.tolist()]


def _rows_of(data: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of a DataFrame, array, tensor or list of rows, of the same kind; a
    one-row value (a scalar, a string, a dict of one row's features) as it is."""
    if isinstance(data, str | bytes | Mapping):
        return data
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    shape = getattr(data, "shape", None)
    if shape is not None:  # NumPy arrays and tensors index by an array of rows
        return data[rows] if len(shape) else data
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):  # lists and sequences
        return [data[i] for i in rows.tolist()]
    return data
