"""The ml_performance join: predictions and their delayed labels in one SQLite file (WAL).

A prediction row keeps the model's output (label, scores or value), never its inputs; a label
fills the row's ``true_label``/``true_value``. A label whose prediction has not arrived waits
in ``pending`` and is joined when it does. Every batch is one transaction, committed before
the processor acknowledges the batch, so a SIGKILL loses nothing acknowledged. The first
label of a prediction wins; later ones are counted as duplicates and dropped. Windows (by
prediction time) that got new labels are listed in ``dirty`` until evaluated. Rows older
than the TTL (prediction time for predictions, arrival for pending labels) are pruned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from driftline.processor.component.file_lock import exclusive_lock
from driftline.processor.component.predictions import GroundTruth, ModelKey, Prediction

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
MEMORY = ":memory:"
# SQLite allows 32766 host parameters by default; stay well below for older builds.
_IN_CHUNK = 900
# Labels update rows spread over the whole table (ids are random): every label dirties one
# page, and WAL writes whole pages, so small pages write less per label.
PAGE_SIZE = 1024
CACHE_KIB = 64 * 1024
WAL_AUTOCHECKPOINT_PAGES = 16_384

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS models (model INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "version TEXT NOT NULL, framework TEXT NOT NULL, operation TEXT NOT NULL, "
    "resource TEXT NOT NULL, UNIQUE (name, version, framework, operation))",
    "CREATE TABLE IF NOT EXISTS class_lists (classes INTEGER PRIMARY KEY, "
    "names TEXT NOT NULL UNIQUE)",
    # scores: float64 little-endian bytes, one per class of `classes`.
    "CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, model INTEGER NOT NULL, "
    "time_ns INTEGER NOT NULL, label TEXT, value REAL, scores BLOB, classes INTEGER, "
    "true_label TEXT, true_value REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS predictions_by_time ON predictions (model, time_ns)",
    "CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, true_label TEXT, "
    "true_value REAL, received_ns INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS pending_by_time ON pending (received_ns)",
    # marked: the batch that last added labels to the window, so an evaluation that read
    # the window before a newer batch does not take it off the list.
    "CREATE TABLE IF NOT EXISTS dirty (model INTEGER NOT NULL, idx INTEGER NOT NULL, "
    "marked INTEGER NOT NULL, PRIMARY KEY (model, idx)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS alerted (model INTEGER NOT NULL, idx INTEGER NOT NULL, "
    "metric TEXT NOT NULL, PRIMARY KEY (model, idx, metric)) WITHOUT ROWID",
)


class PredictionStoreError(RuntimeError):
    """The store cannot be opened, read or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did to the store (the processor's counters)."""

    stored_predictions: int = 0
    duplicate_predictions: int = 0
    expired_predictions: int = 0
    joined_labels: int = 0
    duplicate_labels: int = 0
    pending_labels: int = 0


@dataclass(frozen=True, slots=True)
class WindowRows:
    """The joined rows of one model's window, as read for evaluation."""

    model: ModelKey
    resource: tuple[tuple[str, str], ...]
    index: int
    predicted_labels: list[str | None]
    predicted_values: list[float | None]
    scores: list[bytes | None]
    classes: list[tuple[str, ...]]
    true_labels: list[str | None]
    true_values: list[float | None]


class PredictionStore:
    """One SQLite connection, used under the processor's lock (``check_same_thread`` off).

    ``path`` ``":memory:"`` keeps everything in memory (lost at exit); a file path holds
    ``PATH.lock`` exclusively so two processors cannot share the file.
    """

    def __init__(self, path: str | Path, window_ns: int, ttl_ns: int) -> None:
        self.path = str(path)
        self._window_ns = window_ns
        self._ttl_ns = ttl_ns
        self._lock_file: IO[bytes] | None = None
        self._models: dict[ModelKey, int] = {}
        self._model_rows: dict[int, tuple[ModelKey, tuple[tuple[str, str], ...]]] = {}
        self._class_lists: dict[tuple[str, ...], int] = {}
        self._class_names: dict[int, tuple[str, ...]] = {}
        try:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_file = exclusive_lock(Path(self.path), PredictionStoreError(
                    f"store '{self.path}' is in use by another ml_performance processor (in "
                    "this or another process); give each instance its own store::path (a "
                    "processor listed in two pipelines runs twice: declare "
                    "ml_performance/NAME for the second)"))
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only before the first table
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            for statement in _SCHEMA:
                self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise PredictionStoreError(
                    f"store '{self.path}': schema version {row[0]}, this Driftline writes "
                    f"{SCHEMA_VERSION}; move the file away to start with an empty store")
            for model, name, version, framework, operation, resource in self._db.execute(
                    "SELECT model, name, version, framework, operation, resource FROM models"):
                key = ModelKey(name, version, framework, operation)
                self._models[key] = model
                self._model_rows[model] = (key, tuple(map(tuple, json.loads(resource))))
            for classes, names in self._db.execute("SELECT classes, names FROM class_lists"):
                self._class_lists[tuple(json.loads(names))] = classes
                self._class_names[classes] = tuple(json.loads(names))
            self._pending = self._db.execute("SELECT count(*) FROM pending").fetchone()[0]
            self._batch = self._db.execute(
                "SELECT coalesce(max(marked), 0) FROM dirty").fetchone()[0]
        except (OSError, sqlite3.Error, ValueError) as exc:
            self._release()
            raise PredictionStoreError(f"store '{self.path}': cannot open: {exc}") from exc
        except PredictionStoreError:
            self._release()
            raise

    @property
    def models(self) -> int:
        return len(self._models)

    @property
    def pending_labels(self) -> int:
        """Labels waiting for their prediction."""
        return self._pending

    def counts(self) -> tuple[int, int]:
        """(predictions, pending labels) in the store."""
        try:
            predictions = self._db.execute("SELECT count(*) FROM predictions").fetchone()[0]
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot read: {exc}") from exc
        return int(predictions), self._pending

    def knows(self, model: ModelKey) -> bool:
        return model in self._models

    # --- one batch ------------------------------------------------------------------------

    def apply(self, predictions: Sequence[Prediction], labels: Sequence[GroundTruth],
              now_ns: int) -> BatchResult:
        """Store ``predictions``, join ``labels``, in one transaction; raises
        ``PredictionStoreError`` with nothing written."""
        db = self._db
        models, class_lists = dict(self._models), dict(self._class_lists)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                counts: dict[str, int] = {}
                dirty: set[tuple[int, int]] = set()
                pending_before = self._pending
                if predictions:
                    self._store_predictions(predictions, now_ns, counts, dirty)
                if labels:
                    self._join_labels(labels, now_ns, counts, dirty)
                if dirty:
                    self._batch += 1
                    db.executemany("INSERT OR REPLACE INTO dirty VALUES (?, ?, ?)",
                                   [(m, i, self._batch) for m, i in sorted(dirty)])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._pending = pending_before
                self._forget_new(models, class_lists)
                raise
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot write: {exc}") from exc
        return BatchResult(**counts)

    def _forget_new(self, models: dict[ModelKey, int],
                    class_lists: dict[tuple[str, ...], int]) -> None:
        """Drop model and class-list ids made in a rolled-back transaction."""
        for key in set(self._models) - set(models):
            self._model_rows.pop(self._models.pop(key), None)
        for names in set(self._class_lists) - set(class_lists):
            self._class_names.pop(self._class_lists.pop(names), None)

    def _model_id(self, prediction: Prediction) -> int:
        model = self._models.get(prediction.model)
        if model is None:
            key = prediction.model
            resource = json.dumps([list(kv) for kv in prediction.resource])
            cursor = self._db.execute(
                "INSERT INTO models (name, version, framework, operation, resource) "
                "VALUES (?, ?, ?, ?, ?)",
                (key.name, key.version, key.framework, key.operation, resource))
            model = self._models[key] = int(cursor.lastrowid or 0)
            self._model_rows[model] = (key, prediction.resource)
        return model

    def _classes_id(self, classes: tuple[str, ...]) -> int | None:
        if not classes:
            return None
        found = self._class_lists.get(classes)
        if found is None:
            cursor = self._db.execute("INSERT INTO class_lists (names) VALUES (?)",
                                      (json.dumps(list(classes)),))
            found = self._class_lists[classes] = int(cursor.lastrowid or 0)
            self._class_names[found] = classes
        return found

    def _store_predictions(self, predictions: Sequence[Prediction], now_ns: int,
                           counts: dict[str, int], dirty: set[tuple[int, int]]) -> None:
        oldest = now_ns - self._ttl_ns
        rows: dict[str, tuple[Any, ...]] = {}
        duplicates = expired = 0
        for p in predictions:
            if p.time_ns < oldest:
                expired += 1
                continue
            if p.id in rows:
                duplicates += 1
                continue
            scores = None if p.scores is None else np.asarray(p.scores, "<f8").tobytes()
            rows[p.id] = (p.id, self._model_id(p), p.time_ns, p.label, p.value, scores,
                          self._classes_id(p.classes))
        before = self._db.total_changes
        self._db.executemany("INSERT OR IGNORE INTO predictions (id, model, time_ns, label, "
                             "value, scores, classes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             rows.values())
        stored = self._db.total_changes - before
        counts["stored_predictions"] = stored
        counts["duplicate_predictions"] = duplicates + len(rows) - stored
        counts["expired_predictions"] = expired
        if self._pending and rows:
            self._join_pending(list(rows), counts, dirty)

    def _join_pending(self, ids: list[str], counts: dict[str, int],
                      dirty: set[tuple[int, int]]) -> None:
        """Labels that arrived before these predictions: join them now."""
        found = []
        for chunk in _chunks(ids):
            found += self._db.execute(
                f"SELECT id, true_label, true_value FROM pending WHERE id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
        if not found:
            return
        labels = [GroundTruth(i, label, value) for i, label, value in found]
        joined, duplicates, _ = self._update_predictions(labels, dirty)
        self._db.executemany("DELETE FROM pending WHERE id=?", [(i,) for i, _, _ in found])
        self._pending -= len(found)
        counts["joined_labels"] = counts.get("joined_labels", 0) + joined
        counts["duplicate_labels"] = counts.get("duplicate_labels", 0) + duplicates

    def _update_predictions(self, labels: Sequence[GroundTruth], dirty: set[tuple[int, int]]
                            ) -> tuple[int, int, set[str]]:
        """Label the stored predictions among ``labels`` (first label wins); returns (joined,
        duplicates, the ids that have a stored prediction)."""
        by_id = {g.id: g for g in labels}
        found = []
        for chunk in _chunks(list(by_id)):
            found += self._db.execute(
                f"SELECT id, model, time_ns, true_label IS NOT NULL OR true_value IS NOT NULL "
                f"FROM predictions WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        updates = []
        duplicates = 0
        for prediction_id, model, time_ns, labelled in found:
            if labelled:
                duplicates += 1
                continue
            label = by_id[prediction_id]
            updates.append((label.label, label.value, prediction_id))
            dirty.add((model, time_ns // self._window_ns))
        self._db.executemany("UPDATE predictions SET true_label=?, true_value=? WHERE id=?",
                             updates)
        return len(updates), duplicates, {row[0] for row in found}

    def _join_labels(self, labels: Sequence[GroundTruth], now_ns: int,
                     counts: dict[str, int], dirty: set[tuple[int, int]]) -> None:
        first: dict[str, GroundTruth] = {}
        duplicates = 0
        for label in labels:
            if label.id in first:
                duplicates += 1
            else:
                first[label.id] = label
        joined, labelled, stored = self._update_predictions(list(first.values()), dirty)
        waiting = [(g.id, g.label, g.value, now_ns) for i, g in first.items()
                   if i not in stored]
        before = self._db.total_changes
        self._db.executemany("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?)", waiting)
        added = self._db.total_changes - before
        self._pending += added
        counts["joined_labels"] = counts.get("joined_labels", 0) + joined
        counts["duplicate_labels"] = (counts.get("duplicate_labels", 0) + duplicates + labelled
                                      + len(waiting) - added)
        counts["pending_labels"] = added

    # --- evaluation -----------------------------------------------------------------------

    def due_windows(self, before_index: int) -> list[tuple[int, int, int]]:
        """(model id, window index, mark) of windows with new labels that ended before
        ``before_index``, oldest first; pass them back to ``evaluated``."""
        try:
            return [(int(m), int(i), int(b)) for m, i, b in self._db.execute(
                "SELECT model, idx, marked FROM dirty WHERE idx < ? ORDER BY idx, model",
                (before_index,))]
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot read: {exc}") from exc

    def window_rows(self, model: int, index: int) -> WindowRows:
        """Every labelled prediction of ``model`` whose time falls in window ``index``."""
        start = index * self._window_ns
        try:
            rows = self._db.execute(
                "SELECT label, value, scores, classes, true_label, true_value FROM predictions "
                "WHERE model=? AND time_ns >= ? AND time_ns < ? AND (true_label IS NOT NULL "
                "OR true_value IS NOT NULL)", (model, start, start + self._window_ns)).fetchall()
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot read: {exc}") from exc
        key, resource = self._model_rows[model]
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        return WindowRows(key, resource, index, list(columns[0]), list(columns[1]),
                          list(columns[2]),
                          [self._class_names.get(c, ()) if c is not None else ()
                           for c in columns[3]],
                          list(columns[4]), list(columns[5]))

    def alerted(self, model: int, index: int) -> set[str]:
        """The metrics already alerted on for this window (no second alert on re-evaluation)."""
        return {m for (m,) in self._db.execute(
            "SELECT metric FROM alerted WHERE model=? AND idx=?", (model, index))}

    def evaluated(self, windows: Iterable[tuple[int, int, int]],
                  alerts: Iterable[tuple[int, int, str]]) -> None:
        """Take ``windows`` (as ``due_windows`` gave them) off the list, unless a batch
        marked them again since, and record ``alerts``, in one transaction."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM dirty WHERE model=? AND idx=? AND marked=?",
                               list(windows))
                db.executemany("INSERT OR IGNORE INTO alerted VALUES (?, ?, ?)", list(alerts))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot write: {exc}") from exc

    def prune(self, now_ns: int) -> tuple[int, int]:
        """Delete predictions and pending labels older than the TTL; (predictions, labels)."""
        oldest = now_ns - self._ttl_ns
        oldest_index = oldest // self._window_ns
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany("DELETE FROM predictions WHERE model=? AND time_ns < ?",
                               [(m, oldest) for m in self._model_rows])
                predictions = db.total_changes - before
                before = db.total_changes
                db.execute("DELETE FROM pending WHERE received_ns < ?", (oldest,))
                labels = db.total_changes - before
                db.execute("DELETE FROM dirty WHERE idx < ?", (oldest_index,))
                db.execute("DELETE FROM alerted WHERE idx < ?", (oldest_index,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise PredictionStoreError(f"store '{self.path}': cannot prune: {exc}") from exc
        self._pending -= labels
        return predictions, labels

    def close(self) -> None:
        self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def decode_scores(blob: bytes | None) -> np.ndarray | None:
    """The scores stored by ``apply`` (float64), or None."""
    return None if blob is None else np.frombuffer(blob, dtype="<f8")


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start:start + _IN_CHUNK]
