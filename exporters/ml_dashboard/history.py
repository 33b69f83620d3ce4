"""The dashboard's history: one row per model stream and closed window, in SQLite.

A window's parts arrive apart (ml_drift's verdicts, ml_performance's gauges when labels
join, the app's own metrics when the window closes): each is one JSON column, upserted on its
own, so a late part never erases an earlier one. Distributions live in a table of their own
(one zlib-compressed JSON blob per window) since they are most of the bytes and read one
window at a time; the drift part (every column's scores) is compressed too. Rows are a few
KiB, so the tables keep their rowid and use 16 KiB pages (4 KiB pages held one such row
each: 1.7 times the bytes, measured). Old windows go after ``retention``; past
``max_megabytes`` the oldest go first, and incremental auto-vacuum gives their pages back to
the file system.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# Schema 1 lacked ``windows.estimated`` (ml_drift's estimated performance); it is added in
# place, so an older history keeps its windows.
_MIGRATIONS = {"1": "ALTER TABLE windows ADD COLUMN estimated TEXT"}
MEMORY = ":memory:"
# Past the size bound, this share of the oldest windows goes per pass.
EVICT_SHARE = 0.05
BYTES_PER_MEGABYTE = 1024 * 1024
BUSY_TIMEOUT_S = 5.0
PAGE_SIZE_BYTES = 16384
# Parts of a window, each a JSON text column of ``windows``.
PARTS = ("drift", "scores", "performance", "predictions", "service", "estimated")
# Parts stored zlib-compressed (the drift verdicts of every column, every method's score).
COMPRESSED = frozenset({"drift", "scores"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL, version TEXT NOT NULL, operation TEXT NOT NULL,
    framework TEXT NOT NULL DEFAULT '',
    last_seen_ns INTEGER NOT NULL DEFAULT 0,
    UNIQUE(name, version, operation));
CREATE TABLE IF NOT EXISTS windows(
    stream INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    evaluated_ns INTEGER, rows INTEGER, share REAL, dataset_drifted INTEGER,
    drifted INTEGER, features INTEGER,
    drift BLOB, scores BLOB, performance TEXT, predictions TEXT, service TEXT,
    estimated TEXT,
    PRIMARY KEY(stream, start_ns));
CREATE INDEX IF NOT EXISTS windows_by_start ON windows(start_ns);
-- Covers the overview (each stream's last verdict, its share over time) without reading the
-- rows, which are KiBs each: a day of 50 models read 170 MB of rows before it (3 s).
CREATE INDEX IF NOT EXISTS windows_summary ON windows(
    stream, start_ns, evaluated_ns, rows, share, dataset_drifted, drifted, features);
CREATE TABLE IF NOT EXISTS distributions(
    stream INTEGER NOT NULL, start_ns INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY(stream, start_ns));
"""


class HistoryError(RuntimeError):
    """The history file cannot be opened or is not a dashboard history."""


@dataclass(frozen=True, slots=True)
class StreamKey:
    """A model stream as ml_drift keys it: name, version and operation."""

    name: str
    version: str
    operation: str


@dataclass(slots=True)
class WindowUpdate:
    """The parts of one window that arrived together; None leaves a stored part unchanged."""

    key: StreamKey
    start_ns: int
    end_ns: int
    framework: str = ""
    evaluated_ns: int | None = None
    rows: int | None = None
    share: float | None = None
    dataset_drifted: int | None = None
    drifted: int | None = None
    features: int | None = None
    drift: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    performance: dict[str, Any] | None = None
    predictions: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    estimated: dict[str, Any] | None = None
    distributions: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PruneResult:
    expired: int
    evicted: int


class History:
    """The SQLite history, safe to share between the writer and the HTTP threads (one
    connection behind a lock: reads are short, and SQLite serialises writes anyway)."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self._path = path or MEMORY
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        if self._path != MEMORY:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self._path, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None)
            # Before the first table: rows of 2-3 KiB waste most of a 4 KiB page (one fits),
            # a 16 KiB page holds six; incremental_vacuum shrinks the file after evictions.
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE_BYTES}")
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            found = None
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                found = self._db.execute("SELECT value FROM meta WHERE key='schema'"
                                         ).fetchone()
            if found is not None and found[0] in _MIGRATIONS:
                self._db.execute(_MIGRATIONS[found[0]])
                self._db.execute("UPDATE meta SET value=? WHERE key='schema'",
                                 (str(SCHEMA_VERSION),))
                found = (str(SCHEMA_VERSION),)
            self._db.executescript(_SCHEMA)
            if found is None:
                self._db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
            elif found[0] != str(SCHEMA_VERSION):
                raise HistoryError(f"history::path: {self._path} holds schema {found[0]}, this "
                                   f"version reads {SCHEMA_VERSION}; move the file away")
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"history::path: cannot open {self._path} as the dashboard's "
                               f"SQLite history ({exc}); move the file away or name another "
                               "path") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing ----------------------------------------------------------------------------
    def write(self, updates: Iterable[WindowUpdate], seen: dict[StreamKey, tuple[int, str]]
              ) -> None:
        """Upsert ``updates`` and each stream's last-seen time and framework, in one
        transaction."""
        with self._lock, self._transaction():
            ids: dict[StreamKey, int] = {}
            for key, (seen_ns, framework) in seen.items():
                ids[key] = self._stream_id(key, framework)
                self._db.execute("UPDATE streams SET last_seen_ns=max(last_seen_ns, ?) "
                                 "WHERE id=?", (seen_ns, ids[key]))
            for update in updates:
                stream = ids.get(update.key)
                if stream is None:
                    stream = ids[update.key] = self._stream_id(update.key, update.framework)
                self._upsert(stream, update)

    def _stream_id(self, key: StreamKey, framework: str) -> int:
        row = self._db.execute(
            "INSERT INTO streams(name, version, operation, framework) VALUES(?,?,?,?) "
            "ON CONFLICT(name, version, operation) DO UPDATE SET "
            "framework=CASE WHEN excluded.framework='' THEN framework ELSE excluded.framework "
            "END RETURNING id", (key.name, key.version, key.operation, framework)).fetchone()
        return int(row[0])

    def _upsert(self, stream: int, update: WindowUpdate) -> None:
        parts: list[str | bytes | None] = []
        for part in PARTS:
            value = getattr(update, part)
            text = None if value is None else _json(value)
            parts.append(zlib.compress(text.encode()) if text is not None
                         and part in COMPRESSED else text)
        self._db.execute(
            "INSERT INTO windows(stream, start_ns, end_ns, evaluated_ns, rows, share, "
            "dataset_drifted, drifted, features, drift, scores, performance, predictions, "
            "service, estimated) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(stream, start_ns) DO UPDATE SET "
            "end_ns=excluded.end_ns, "
            + ", ".join(f"{c}=coalesce(excluded.{c}, {c})" for c in (
                "evaluated_ns", "rows", "share", "dataset_drifted", "drifted", "features",
                *PARTS)),
            (stream, update.start_ns, update.end_ns, update.evaluated_ns, update.rows,
             update.share, update.dataset_drifted, update.drifted, update.features, *parts))
        if update.distributions is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO distributions VALUES(?,?,?)",
                (stream, update.start_ns, zlib.compress(_json(update.distributions).encode())))

    # --- retention --------------------------------------------------------------------------
    def prune(self, now_ns: int, retention_ns: int) -> PruneResult:
        """Delete windows older than ``retention_ns``, then the oldest ones while the file is
        over its size bound; streams left without windows go too."""
        with self._lock:
            with self._transaction():
                expired = self._delete_before(now_ns - retention_ns)
            evicted = 0
            while self._size_bytes() > self._max_bytes:
                total = self._db.execute("SELECT count(*) FROM windows").fetchone()[0]
                if not total:
                    break
                offset = max(1, int(total * EVICT_SHARE)) - 1
                cut = self._db.execute("SELECT start_ns FROM windows ORDER BY start_ns "
                                       "LIMIT 1 OFFSET ?", (offset,)).fetchone()[0]
                with self._transaction():
                    evicted += self._delete_before(cut + 1)
            if expired or evicted:
                # Free pages back to the file system: the vacuum moves them to the end in the
                # WAL, the checkpoint writes that into the file and truncates both.
                # executescript runs it to the end (execute() frees one page per call).
                self._db.executescript("PRAGMA incremental_vacuum;")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return PruneResult(expired, evicted)

    def _delete_before(self, start_ns: int) -> int:
        deleted = self._db.execute("DELETE FROM windows WHERE start_ns < ?",
                                   (start_ns,)).rowcount
        self._db.execute("DELETE FROM distributions WHERE start_ns < ?", (start_ns,))
        if deleted:
            self._db.execute("DELETE FROM streams WHERE id NOT IN "
                             "(SELECT DISTINCT stream FROM windows)")
        return deleted

    def _size_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def size_bytes(self) -> int:
        """Bytes the history's pages use (the file may hold a few free pages more)."""
        with self._lock:
            return self._size_bytes()

    # --- reading ----------------------------------------------------------------------------
    def streams(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, name, version, operation, framework, "
                                    "last_seen_ns FROM streams ORDER BY name, version, "
                                    "operation").fetchall()
        return [dict(zip(("id", "name", "version", "operation", "framework", "last_seen_ns"),
                         row, strict=True)) for row in rows]

    def stream_id(self, key: StreamKey) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM streams WHERE name=? AND version=? AND "
                                   "operation=?", (key.name, key.version, key.operation)
                                   ).fetchone()
        return None if row is None else int(row[0])

    def last_verdicts(self) -> dict[int, tuple[Any, ...]]:
        """Per stream its latest evaluated window: (start_ns, evaluated_ns, rows, share,
        dataset_drifted, drifted, features), read from the summary index alone."""
        found = {}
        with self._lock:
            for (stream,) in self._db.execute("SELECT id FROM streams").fetchall():
                row = self._db.execute(
                    "SELECT start_ns, evaluated_ns, rows, share, dataset_drifted, drifted, "
                    "features FROM windows INDEXED BY windows_summary WHERE stream=? AND "
                    "evaluated_ns IS NOT NULL ORDER BY start_ns DESC LIMIT 1",
                    (stream,)).fetchone()
                if row is not None:
                    found[stream] = tuple(row)
        return found

    def shares(self, from_ns: int, to_ns: int, step_ns: int
               ) -> Iterator[tuple[int, int, float]]:
        """(stream, start_ns, dataset share) in the range, one per ``step_ns`` of it: the
        first window's start and the highest share of the windows in that step (a drifted
        window still shows), summed up by SQLite from the summary index."""
        with self._lock:
            rows = self._db.execute(
                "SELECT stream, min(start_ns), max(share) FROM windows INDEXED BY "
                "windows_summary WHERE stream IN (SELECT id FROM streams) AND start_ns >= ? "
                "AND start_ns < ? AND share IS NOT NULL GROUP BY stream, (start_ns - ?) / ? "
                "ORDER BY stream, 2", (from_ns, to_ns, from_ns, max(1, step_ns))).fetchall()
        return iter(rows)

    def windows(self, stream: int, from_ns: int, to_ns: int) -> list[tuple[Any, ...]]:
        """Rows (start_ns, end_ns, evaluated_ns, rows, share, dataset_drifted, drifted,
        features, drift, performance, predictions, service, estimated) in time order, parts as JSON
        text (handed on without parsing); every method's scores are read by ``scores``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT start_ns, end_ns, evaluated_ns, rows, share, dataset_drifted, drifted, "
                "features, drift, performance, predictions, service, estimated FROM windows "
                "WHERE "
                "stream=? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns",
                (stream, from_ns, to_ns)).fetchall()
        return [(*row[:8], None if row[8] is None else zlib.decompress(row[8]).decode(),
                 *row[9:]) for row in rows]

    def scores(self, stream: int, start_ns: int) -> str | None:
        """Every method's score per column of one window, as JSON text."""
        with self._lock:
            row = self._db.execute("SELECT scores FROM windows WHERE stream=? AND start_ns=?",
                                   (stream, start_ns)).fetchone()
        return None if row is None or row[0] is None else zlib.decompress(row[0]).decode()

    def distributions(self, stream: int, start_ns: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM distributions WHERE stream=? AND "
                                   "start_ns=?", (stream, start_ns)).fetchone()
        return None if row is None else json.loads(zlib.decompress(row[0]))

    def latest_distribution_start(self, stream: int) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT max(start_ns) FROM distributions WHERE stream=?",
                                   (stream,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- helpers ----------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on an error (the connection is autocommit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _json(value: Any) -> str:
    return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers, and a statistic
    that could not be computed reads as missing on the page."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
