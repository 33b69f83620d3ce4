"""The ``file`` exporter: OTLP/JSON lines on disk, as the collector's ``fileexporter`` writes.

Each consume call appends one line, the OTLP/JSON encoding of an
``ExportMetricsServiceRequest``, ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest``,
so a file is readable by any OTLP/JSON tool and by ``read_metrics``/``read_traces``/
``read_logs`` here. Lines are appended (not
written to a temporary name and replaced) because the file grows for the process lifetime.
With ``rotation`` the file is rotated by size into dated backups (``max_megabytes``,
``max_days``, ``max_backups``), and ``compression`` (``gzip`` or ``zstd``) compresses each
line on its own; the readers read backups and compressed files alike, and a file still being
written up to its last whole line. One exporter per signal keeps one signal per file (as
``collector-config/default.yaml`` does); an exporter shared by several pipelines writes
their lines to one file, told apart by their top key.

With ``format: records`` the exporter (in a logs pipeline) writes ``ml.prediction`` records
instead, one flat JSON object per prediction, and ``<name>.schema.json`` beside the file
(``records``); rotation and compression apply alike.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from driftline.durations import parse_non_negative_duration
from driftline.exporters.file import records as _records
from driftline.exporters.file.rotating_file import (
    COMPRESSIONS,
    RotatingFile,
    RotationConfig,
    all_files,
    whole_records,
)
from driftline.processor.component import ComponentError, Consumer, Settings, validated
from driftline.processor.component import otlp_json as _otlp_json
from driftline.processor.component.otlp_json import OtlpJsonError
from driftline.processor.component.settings import KIND_EXPORTER

_LOG = logging.getLogger(__name__)

TYPE = "file"
DEFAULT_PATH = ""
DEFAULT_FLUSH_INTERVAL_S = 1.0
JOIN_TIMEOUT_S = 5.0
ENCODING = "utf-8"

# The top-level key telling the request kinds apart when one file holds several signals.
METRICS_KEY = "resourceMetrics"
TRACES_KEY = "resourceSpans"
LOGS_KEY = "resourceLogs"

_Request = TypeVar("_Request", ExportMetricsServiceRequest, ExportTraceServiceRequest,
                   ExportLogsServiceRequest)


@dataclass(slots=True)
class FileExporterConfig:
    """The YAML node of a ``file`` exporter; field names are the keys."""

    path: str = DEFAULT_PATH
    flush_interval: str | float = DEFAULT_FLUSH_INTERVAL_S
    rotation: RotationConfig | None = None
    compression: str = ""
    # otlp_json: OTLP/JSON export requests; records: ml.prediction records as data lines.
    format: str = _records.FORMAT_OTLP_JSON

    def validate(self) -> list[str]:
        """Every problem as ``key: message``; checks the directory could be made, makes nothing."""
        problems: list[str] = []
        if not isinstance(self.path, str) or not self.path.strip():
            problems.append(
                f"path: required, the file to append OTLP JSON lines to, got {self.path!r}"
            )
        else:
            problem = _path_problem(Path(self.path))
            if problem:
                problems.append(f"path: {problem}")
        try:
            parse_non_negative_duration(self.flush_interval)
        except ValueError as err:
            problems.append(f"flush_interval: {err}")
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression: one of gzip, zstd or none, got {self.compression!r}")
        if self.rotation is not None:
            problems += [f"rotation::{p}" for p in self.rotation.validate()]
        if self.format not in _records.FORMATS:
            problems.append(f"format: one of {', '.join(_records.FORMATS)}, got {self.format!r}")
        return problems


def _path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None: it must not be a directory and its first
    existing ancestor must be a writable directory, so ``start`` can create the rest."""
    if path.is_dir():
        return f"{str(path)!r} is a directory; name a file inside it"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{str(path)!r} is not writable"
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create directory under {str(ancestor)!r}: it is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"cannot create {str(path.parent)!r}: {str(ancestor)!r} is not writable"
    return None


class FileExporter:
    """Appends one OTLP/JSON line per consume call, under a lock.

    A background thread flushes at most once per ``flush_interval`` (0 flushes every line),
    so a busy pipeline does not pay a syscall per batch; ``shutdown`` flushes the rest.
    """

    def __init__(self, config: FileExporterConfig) -> None:
        problems = config.validate()
        if problems:
            raise ComponentError("file exporter: invalid config: " + "; ".join(problems))
        self._path = Path(config.path)
        self._flush_interval_s = parse_non_negative_duration(config.flush_interval)
        self._config = config
        self._lock = threading.Lock()
        self._file: RotatingFile | None = None
        self._dirty = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flush_errors = 0
        self._records = config.format == _records.FORMAT_RECORDS
        self._skipped_records = 0

    @property
    def skipped_records(self) -> int:
        """``ml.prediction`` records not written (``format: records``) for breaking the
        record format."""
        return self._skipped_records

    @property
    def path(self) -> Path:
        """The file the lines go to."""
        return self._path

    @property
    def flush_errors(self) -> int:
        """Background flushes that failed (each also logged)."""
        return self._flush_errors

    def start(self) -> None:
        """Create the directory, open the file for appending, start the flusher."""
        if self._file is not None:
            return
        try:
            if self._records:
                _records.write_schema(self._path)
            handle = RotatingFile(self._path, self._config.compression, self._config.rotation)
            handle.open()
        except OSError as err:
            raise ComponentError(
                f"file exporter: cannot open {str(self._path)!r} for appending: "
                f"{err.strerror or err}; fix the exporter's 'path'"
            ) from err
        with self._lock:
            self._file = handle
        self._stop.clear()
        if self._flush_interval_s > 0:
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="driftline-file-flush", daemon=True
            )
            self._flusher.start()

    def shutdown(self) -> None:
        """Stop the flusher, flush what was written and close the file. Idempotent."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(JOIN_TIMEOUT_S)
            self._flusher = None
        with self._lock:
            handle, self._file = self._file, None
            if handle is not None:
                handle.close()

    def consume_metrics(self, batch: Sequence[ResourceMetrics]) -> None:
        """Append ``batch`` as one ``ExportMetricsServiceRequest`` line (nothing when empty)."""
        self._otlp_only("metrics")
        if batch:
            self._append(_otlp_json.encode(ExportMetricsServiceRequest(resource_metrics=batch)))

    def consume_traces(self, batch: Sequence[ResourceSpans]) -> None:
        """Append ``batch`` as one ``ExportTraceServiceRequest`` line (nothing when empty)."""
        self._otlp_only("traces")
        if batch:
            self._append(_otlp_json.encode(ExportTraceServiceRequest(resource_spans=batch)))

    def consume_logs(self, batch: Sequence[ResourceLogs]) -> None:
        """Append ``batch`` as one ``ExportLogsServiceRequest`` line (nothing when empty); with
        ``format: records``, one line per ``ml.prediction`` record instead."""
        if self._records:
            lines, skipped = _records.prediction_lines(batch)
            if skipped:
                with self._lock:
                    self._skipped_records += skipped
                _LOG.warning("file exporter: %d ml.prediction record(s) without an id, model "
                             "or output not written to %s", skipped, self._path)
            if lines:
                self._append("\n".join(lines))
            return
        if batch:
            self._append(_otlp_json.encode(ExportLogsServiceRequest(resource_logs=batch)))

    def _otlp_only(self, signal: str) -> None:
        if self._records:
            raise ComponentError(
                f"file exporter: format: records writes ml.prediction log records only; "
                f"{signal} cannot go to {str(self._path)!r}: use another file exporter "
                f"(format: otlp_json) in the {signal} pipeline")

    def _append(self, line: str) -> None:
        with self._lock:
            if self._file is None:
                raise ComponentError(
                    f"file exporter: {str(self._path)!r} is not open; start() the exporter first"
                )
            try:
                self._file.write((line + "\n").encode(ENCODING))
                if self._flush_interval_s == 0:
                    self._file.flush()
                else:
                    self._dirty = True
            except OSError as err:
                raise ComponentError(
                    f"file exporter: cannot write {str(self._path)!r}: {err.strerror or err}"
                ) from err

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self._flush_interval_s):
            with self._lock:
                if self._file is None or not self._dirty:
                    continue
                try:
                    self._file.flush()
                    self._dirty = False
                except OSError:
                    self._flush_errors += 1
                    _LOG.exception("file exporter: flushing %s failed", self._path)


def read_metrics(path: str | os.PathLike[str]) -> list[ExportMetricsServiceRequest]:
    """The metric requests in an OTLP/JSON lines file, in order; other signals' lines are
    skipped."""
    return _read(path, METRICS_KEY, ExportMetricsServiceRequest)


def read_traces(path: str | os.PathLike[str]) -> list[ExportTraceServiceRequest]:
    """The trace requests in an OTLP/JSON lines file, in order; other signals' lines are
    skipped."""
    return _read(path, TRACES_KEY, ExportTraceServiceRequest)


def read_logs(path: str | os.PathLike[str]) -> list[ExportLogsServiceRequest]:
    """The log requests in an OTLP/JSON lines file, in order; other signals' lines are
    skipped."""
    return _read(path, LOGS_KEY, ExportLogsServiceRequest)


def _read(path: str | os.PathLike[str], key: str, message_type: type[_Request]) -> list[_Request]:
    """The requests of one signal in ``path`` and its rotated backups, oldest first."""
    requests = []
    files = all_files(Path(path))
    if not files:
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    for file in files:
        requests += _read_one(file, key, message_type)
    return requests


def _read_one(path: Path, key: str, message_type: type[_Request]) -> list[_Request]:
    requests = []
    text = whole_records(path).decode(ENCODING)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{os.fspath(path)}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise OtlpJsonError(f"{where}: not JSON: {err}") from err
        if not isinstance(data, dict):
            raise OtlpJsonError(f"{where}: not an OTLP/JSON export request")
        if key not in data:
            continue
        try:
            requests.append(_otlp_json.decode_dict(data, message_type))
        except OtlpJsonError as err:
            raise OtlpJsonError(f"{where}: {err}") from err
    return requests


class Factory:
    """Builds ``file`` exporters from their YAML node (collector-style factory)."""

    TYPE = TYPE
    CONFIG = FileExporterConfig
    SIGNALS = ("metrics", "traces", "logs")

    @staticmethod
    def default_config() -> FileExporterConfig:
        """The config with every default, before the YAML is overlaid (``path`` is required)."""
        return FileExporterConfig()

    @staticmethod
    def create(config: FileExporterConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> FileExporter:
        """A new, unstarted exporter; exporters end a pipeline, so ``next_consumer`` is unused."""
        settings = settings or Settings.of(KIND_EXPORTER, TYPE)
        return FileExporter(validated(config, settings))
