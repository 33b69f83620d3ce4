"""The ml_drift checkpoint: open windows, recent closed ones, baselines and the cumulative
table in one SQLite file (WAL mode), each change committed in one transaction.

An open window is written incrementally, so a commit costs what changed: its small state
(rows, categories, ...) in ``windows``, each merged histogram in ``columns`` (rewritten only
when the window's queued points were merged again, which also drops its stored points), and
the histogram points queued since as one blob in ``part_groups`` (appended). Reading puts
the three together again.

The processor commits a batch's effect before it acknowledges the batch, so after a crash
(SIGKILL included) a batch is either fully in the file or was never acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from driftline.processor.component.file_lock import exclusive_lock
from driftline.processor.ml_drift.window import CheckpointDelta

# Versions 1 and 2 were development versions, never released: such a file is refused.
SCHEMA_VERSION = 3
# A busy database (another process holds the file) is waited for this long, then an error.
BUSY_TIMEOUT_S = 5.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # closed = 0: an open window; 1: a closed one kept for `evaluation: {windows: N}`.
    "CREATE TABLE IF NOT EXISTS windows (stream TEXT NOT NULL, idx INTEGER NOT NULL, "
    "closed INTEGER NOT NULL, state TEXT NOT NULL, PRIMARY KEY (stream, idx))",
    "CREATE TABLE IF NOT EXISTS baselines (stream TEXT PRIMARY KEY, windows INTEGER NOT NULL, "
    "state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS temporality (stream TEXT PRIMARY KEY, entry TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS verdicts (stream TEXT NOT NULL, subject TEXT NOT NULL, "
    "drifted INTEGER NOT NULL, PRIMARY KEY (stream, subject))",
    # Merged histogram per column of an open window written incrementally.
    "CREATE TABLE IF NOT EXISTS columns (stream TEXT NOT NULL, idx INTEGER NOT NULL, "
    "col TEXT NOT NULL, hist TEXT NOT NULL, PRIMARY KEY (stream, idx, col))",
    # Histogram points an open window queued after its merged histograms, one blob per
    # commit (``parts_blob``), in rowid order.
    "CREATE TABLE IF NOT EXISTS part_groups (stream TEXT NOT NULL, idx INTEGER NOT NULL, "
    "parts BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS part_groups_window ON part_groups (stream, idx)",
)


class WindowStoreError(RuntimeError):
    """The checkpoint file cannot be opened or written; the message names it."""


class CheckpointInUseError(WindowStoreError):
    """Another processor holds the checkpoint: not damage, the file must stay where it is."""


class CheckpointVersionError(WindowStoreError):
    """The file was written by another schema version: not damage, the operator decides."""


@dataclass
class Changes:
    """What one transaction writes: rows to upsert (None deletes) per table."""

    windows: dict[tuple[str, int], tuple[int, dict[str, Any]] | None] = field(
        default_factory=dict)
    baselines: dict[str, tuple[int, dict[str, Any]] | None] = field(default_factory=dict)
    temporality: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Open windows written incrementally (see Window.checkpoint_delta).
    open_windows: dict[tuple[str, int], CheckpointDelta] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.windows or self.baselines or self.temporality or self.verdicts
                    or self.open_windows)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the file holds, as read at start."""

    windows: Mapping[tuple[str, int], tuple[int, dict[str, Any]]]
    baselines: Mapping[str, tuple[int, dict[str, Any]]]
    temporality: Mapping[str, dict[str, Any]]
    verdicts: Mapping[tuple[str, str], bool]
    # Per window, its blobs of queued parts (``parts_blob``), oldest first.
    parts: Mapping[tuple[str, int], list[bytes]] = field(default_factory=dict)


class WindowStore:
    """One SQLite connection used under the processor's lock (``check_same_thread`` off)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_file: IO[bytes] | None = None
        self.recreated_tables: list[str] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = exclusive_lock(self.path, CheckpointInUseError(
                f"checkpoint '{self.path}' is in use by another ml_drift processor (in this "
                "or another process); give each ml_drift instance its own checkpoint::path "
                "(a processor listed in two pipelines runs twice: declare ml_drift/NAME for "
                "the second)"))
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives the process being killed; only a power
            # loss or OS crash can lose the last transactions.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA[0])  # meta: the version is checked before any change
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is not None and row[0] != str(SCHEMA_VERSION):
                raise CheckpointVersionError(
                    f"checkpoint '{self.path}': schema version {row[0]}, this Driftline "
                    f"writes {SCHEMA_VERSION}; move the file away to start with empty windows")
            existing = {name for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
            # Tables a checkpoint of this schema had but lost (damage): recreated empty here,
            # named so that the start says so rather than starting empty in silence.
            self.recreated_tables = [] if row is None else sorted(
                name for name in _names(_SCHEMA[1:]) if name not in existing)
            for statement in _SCHEMA[1:]:
                self._db.execute(statement)
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except (OSError, sqlite3.Error) as exc:
            self._release()
            raise WindowStoreError(f"checkpoint '{self.path}': cannot open: {exc}") from exc
        except WindowStoreError:
            self._release()
            raise

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def clear_windows(self) -> int:
        """Delete every window (open and kept); returns how many there were."""
        self._db.execute("DELETE FROM part_groups")
        self._db.execute("DELETE FROM columns")
        return self._db.execute("DELETE FROM windows").rowcount

    def load(self) -> Snapshot:
        try:
            windows = {(s, int(i)): (int(c), json.loads(t)) for s, i, c, t in self._db.execute(
                "SELECT stream, idx, closed, state FROM windows")}
            baselines = {s: (int(n), json.loads(t)) for s, n, t in self._db.execute(
                "SELECT stream, windows, state FROM baselines")}
            temporality = {s: json.loads(t) for s, t in self._db.execute(
                "SELECT stream, entry FROM temporality")}
            verdicts = {(s, c): bool(d) for s, c, d in self._db.execute(
                "SELECT stream, subject, drifted FROM verdicts")}
            for s, i, c, h in self._db.execute("SELECT stream, idx, col, hist FROM columns"):
                if (s, int(i)) in windows:
                    windows[(s, int(i))][1].setdefault("numeric", {})[c] = json.loads(h)
            parts: dict[tuple[str, int], list[bytes]] = {}
            for s, i, t in self._db.execute(
                    "SELECT stream, idx, parts FROM part_groups ORDER BY rowid"):
                parts.setdefault((s, int(i)), []).append(t)
        except (sqlite3.Error, ValueError) as exc:
            raise WindowStoreError(f"checkpoint '{self.path}': cannot read: {exc}") from exc
        return Snapshot(windows, baselines, temporality, verdicts, parts)

    def commit(self, changes: Changes) -> None:
        """Write ``changes`` in one transaction; raises ``WindowStoreError`` (nothing written)."""
        if not changes:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                _upsert(db, "DELETE FROM windows WHERE stream=? AND idx=?",
                        "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                        ((k, None if v is None else (v[0], json.dumps(v[1])))
                         for k, v in changes.windows.items()))
                if changes.windows:  # a full state holds every point: nothing on top
                    db.executemany("DELETE FROM part_groups WHERE stream=? AND idx=?",
                                   list(changes.windows))
                    db.executemany("DELETE FROM columns WHERE stream=? AND idx=?",
                                   list(changes.windows))
                _write_open(db, changes.open_windows)
                _upsert(db, "DELETE FROM baselines WHERE stream=?",
                        "INSERT OR REPLACE INTO baselines VALUES (?, ?, ?)",
                        (((k,), None if v is None else (v[0], json.dumps(v[1])))
                         for k, v in changes.baselines.items()))
                _upsert(db, "DELETE FROM temporality WHERE stream=?",
                        "INSERT OR REPLACE INTO temporality VALUES (?, ?)",
                        (((k,), None if v is None else (json.dumps(v),))
                         for k, v in changes.temporality.items()))
                db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?)",
                               [(s, c, int(d)) for (s, c), d in changes.verdicts.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise WindowStoreError(f"checkpoint '{self.path}': cannot write: {exc}") from exc

    def close(self) -> None:
        self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the lock (the kernel drops it on a kill)
            self._lock_file = None


def _names(statements: Iterable[str]) -> list[str]:
    """The table and index names ``statements`` create."""
    return [statement.split(" IF NOT EXISTS ", 1)[1].split()[0] for statement in statements]


def _write_open(db: sqlite3.Connection,
                windows: Mapping[tuple[str, int], CheckpointDelta]) -> None:
    if not windows:
        return
    db.executemany("INSERT OR REPLACE INTO windows VALUES (?, ?, 0, ?)",
                   [(s, i, delta.state) for (s, i), delta in windows.items()])
    db.executemany("DELETE FROM part_groups WHERE stream=? AND idx=?",
                   [key for key, delta in windows.items() if delta.folded])
    db.executemany("INSERT OR REPLACE INTO columns VALUES (?, ?, ?, ?)",
                   [(s, i, c, h) for (s, i), delta in windows.items() for c, h in delta.columns])
    db.executemany("INSERT INTO part_groups VALUES (?, ?, ?)",
                   [(s, i, delta.parts) for (s, i), delta in windows.items()
                    if delta.parts is not None])


def _upsert(db: sqlite3.Connection, delete: str, insert: str,
            rows: Iterable[tuple[tuple[Any, ...] | str, tuple[Any, ...] | None]]) -> None:
    deletes, inserts = [], []
    for key, value in rows:
        key = key if isinstance(key, tuple) else (key,)
        if value is None:
            deletes.append(key)
        else:
            inserts.append((*key, *value))
    if deletes:
        db.executemany(delete, deletes)
    if inserts:
        db.executemany(insert, inserts)
