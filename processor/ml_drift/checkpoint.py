"""The durable checkpoint of ``ml_drift``: every accepted batch committed before it is
acknowledged, in groups (``checkpoint::path``, docs/delivery.md).

A batch is windowed, then waits for its group commit: batches arriving together are
committed to SQLite (``window_store``) as one transaction by a writer thread. A failed group
commit reloads the last committed state (undoing every batch of the group) and refuses
every batch of it with ``DataRefusedError``, before anything was passed on, so a sender's
retry is no duplicate. At start the checkpoint is read back; a damaged one is moved aside.

``Checkpoint`` owns the store, the batches waiting for their commit (tickets), the writer
thread and its counters. A batch is windowed and its ticket queued in one step under the
windowing's ingest lock, and a group commits under it, so a commit never sees half a batch
and a rollback never undoes a batch already acknowledged: the checkpoint's state is
guarded by that lock (its condition is built on it).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

from driftline.processor.component import DataRefusedError
from driftline.processor.ml_drift.evaluation import Evaluation, safe
from driftline.processor.ml_drift.window import StreamKey, Window
from driftline.processor.ml_drift.window_store import (
    Changes,
    CheckpointInUseError,
    CheckpointVersionError,
    WindowStore,
    WindowStoreError,
)
from driftline.processor.ml_drift.windowing import Windowing

_log = logging.getLogger(__name__)

_META_WINDOW_NS = "window_ns"
JOIN_TIMEOUT_S = 10.0
# Group commit: the writer waits for batches still being applied, until none arrived for
# GROUP_IDLE_S or GROUP_MAX_WAIT_S after the group's first one (polling every GROUP_POLL_S).
GROUP_IDLE_S = 0.002
GROUP_MAX_WAIT_S = 0.010
GROUP_POLL_S = 0.0005
# Commits are at least this far apart, so under load each one (which holds the ingest lock
# for a SQLite write) covers many batches; the wait adds at most this to a reply.
GROUP_MIN_INTERVAL_S = 0.005


class _Ticket:
    """One applied batch waiting for its group commit: ``error`` is set when it failed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: str | None = None


class Checkpoint:
    """The store, the group commit and the restore (see above); without a path, batches
    are windowed and acknowledged at once."""

    def __init__(self, windowing: Windowing, evaluation: Evaluation, window_ns: int,
                 stopping: threading.Event) -> None:
        self._windowing = windowing
        self._evaluation = evaluation
        self._window_ns = window_ns
        self._stopping = stopping  # set as the processor stops: cuts the writer's waits
        self._lock = windowing.lock
        self.store: WindowStore | None = None
        self.counts: Counter[str] = Counter()  # under the ingest lock
        # Group commit: applied batches wait in _tickets until the writer commits them.
        self._tickets: list[_Ticket] = []
        self._resolved = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._writer_stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._last_apply_s = 0.0
        self._last_commit_s = 0.0

    # --- open, restore, close ------------------------------------------------------------------

    def open(self, path: Path) -> None:
        """Open and restore the checkpoint, then start the writer thread."""
        self.store = self._open_checkpoint(path)
        self._writer_stop.clear()
        self._writer = threading.Thread(target=self._write_loop, name="ml-drift-writer",
                                        daemon=True)
        self._writer.start()

    def _open_checkpoint(self, path: Path) -> WindowStore:
        """The checkpoint, restored. A damaged one (not a database, unreadable rows) is
        moved aside with its name and the reason logged, and an empty one started, so one
        damaged file never keeps the collector down; a file another processor holds or of
        another schema version stays an error (the operator decides)."""
        empty = path.exists() and path.stat().st_size == 0
        store: WindowStore | None = None
        try:
            store = WindowStore(path)
            self._check_window_size(store)
            self._restore(store)
        except (CheckpointInUseError, CheckpointVersionError):
            raise
        except (WindowStoreError, sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            if store is not None:
                store.close()
            self._forget_restored()
            aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    source.replace(f"{aside}{suffix}")
            self.counts["damaged_checkpoints"] += 1
            _log.error("ml_drift: checkpoint %s is damaged (%s: %s); moved aside to %s, "
                       "starting with empty windows (counted in damaged_checkpoints)", path,
                       type(exc).__name__, exc, aside.name)
            store = WindowStore(path)
            self._check_window_size(store)
            return store
        if empty:
            _log.warning("ml_drift: checkpoint %s was an empty (0-byte) file: truncated or "
                         "created by hand; starting with empty windows", path)
        if store.recreated_tables:
            _log.warning("ml_drift: checkpoint %s lacked its table(s) %s (damaged); they are "
                         "recreated empty and what they held is lost", path,
                         ", ".join(store.recreated_tables))
        return store

    def _forget_restored(self) -> None:
        """Drop what a failed restore put in memory."""
        self._windowing.clear()
        self._evaluation.clear()
        self.counts["restored_windows"] = 0

    def _check_window_size(self, store: WindowStore) -> None:
        """Windows are stored by index; with another ``window`` size those indexes mean other
        times, so the stored windows are dropped (counted in ``discarded_windows``)."""
        stored = store.meta(_META_WINDOW_NS)
        if stored is not None and stored != str(self._window_ns):
            dropped = store.clear_windows()
            self.counts["discarded_windows"] += dropped
            _log.warning("ml_drift: checkpoint %s holds windows of %s ns, the config says %s "
                         "ns; its %d window(s) are dropped (baselines and cumulative streams "
                         "are kept)", store.path, stored, self._window_ns, dropped)
        store.set_meta(_META_WINDOW_NS, str(self._window_ns))

    def _restore(self, store: WindowStore,
                 ingest_only: set[tuple[StreamKey, int]] | None = None) -> None:
        """Load the checkpoint. ``ingest_only``: undo a failed batch, reloading just these
        open windows and the cumulative table (what a batch changes)."""
        snapshot = store.load()
        damaged = Changes()
        for (stream, index), (closed, state) in snapshot.windows.items():
            try:
                key = StreamKey.from_text(stream)
                if ingest_only is not None and (closed or (key, index) not in ingest_only):
                    continue
                window = Window.from_dict(key, index, state)
                window.add_parts(snapshot.parts.get((stream, index), ()))
                window.check()
            except (ValueError, KeyError, TypeError) as exc:
                damaged.windows[(stream, index)] = None
                self.counts["discarded_windows"] += 1
                _log.error("ml_drift: checkpoint %s: window %d of stream %s is damaged and "
                           "dropped (counted in discarded_windows): %s: %s", store.path,
                           index, safe(stream), type(exc).__name__, exc)
                continue
            if closed:
                self._evaluation.restored_closed(key, window)
                self._windowing.restored(key, index, None)
            else:
                self._windowing.restored(key, index, window)
                if ingest_only is None:
                    self.counts["restored_windows"] += 1
        if damaged:  # out of the file, so the next start does not meet them again
            store.commit(damaged)
        for stream, entry in snapshot.temporality.items():
            self._windowing.deltas.load_entry(stream, entry)
        if ingest_only is not None:
            return
        self._evaluation.restored_state(snapshot.baselines, snapshot.verdicts)
        if snapshot.windows or snapshot.temporality:
            _log.info("ml_drift: resumed from checkpoint %s: %d open window(s), %d cumulative "
                      "stream(s)", store.path, self.counts["restored_windows"],
                      len(snapshot.temporality))

    def close_store(self) -> bool:
        """Close the store (under the ingest lock, after ``stop_writer``); True when there
        was one."""
        store, self.store = self.store, None
        if store is not None:
            store.close()
        return store is not None

    def stop_writer(self) -> None:
        """Stop the writer thread after it committed what is pending; batches arriving later
        are committed by their own consumer."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is None:
            return
        self._writer_stop.set()
        self._wake.set()
        writer.join(JOIN_TIMEOUT_S)
        with self._lock:
            if self._tickets and self.store is not None:
                self._write_group()

    # --- a batch ---------------------------------------------------------------------------

    def apply(self, batch: Sequence[ResourceMetrics], now_ns: int) -> int:
        """Window ``batch``; with a checkpoint, wait for its group commit (see above).
        Returns how many of its points were invalid (not windowed)."""
        windowing = self._windowing
        with self._inflight_lock:
            self._inflight += 1
        try:
            with self._lock:
                invalid_before = windowing.counts["invalid_points"]
                try:
                    windowing.window_batch(batch, now_ns)
                except Exception:
                    if self.store is not None:  # a half-applied batch must not be committed
                        windowing.dirty.clear()
                        self._rollback_to_store()
                        # The reload also undid the batches applied since the last commit.
                        self._resolve(self._tickets, "ml_drift: a batch applied with this one "
                                      "failed and the group was undone; retry later")
                        self._tickets = []
                    raise
                rejected = windowing.counts["invalid_points"] - invalid_before
                if self.store is None:
                    windowing.forget_changes()
                    return rejected
                ticket = _Ticket()
                self._tickets.append(ticket)
                self._last_apply_s = time.monotonic()
                if self._writer is None:
                    self._write_group()
                else:
                    self._wake.set()
        finally:
            with self._inflight_lock:
                self._inflight -= 1
        with self._lock:
            while not ticket.done:
                self._resolved.wait()
        if ticket.error is not None:
            raise DataRefusedError(ticket.error)
        return rejected

    def flush(self) -> None:
        """Commit the batches applied so far (under the ingest lock): evaluation reads only
        committed data, since a failed commit undoes its batches."""
        if self._tickets and self.store is not None:
            self._write_group()

    # --- group commit ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        """The writer thread: commits the applied batches as one group, then wakes them."""
        while True:
            self._wake.wait()
            self._wake.clear()
            stopping = self._writer_stop.is_set()
            if not stopping:
                self._stopping.wait(max(0.0, self._last_commit_s + GROUP_MIN_INTERVAL_S
                                        - time.monotonic()))
                self._gather()
            with self._lock:
                if self._tickets and self.store is not None:
                    try:
                        self._write_group()
                    except Exception:  # never leave a consumer waiting
                        _log.exception("ml_drift: group commit failed unexpectedly")
                        self._resolve(self._tickets, "ml_drift: checkpoint commit failed; "
                                      "retry later")
                        self._tickets = []
                self._last_commit_s = time.monotonic()
            if stopping:
                return

    def _gather(self) -> None:
        """Let batches being applied right now join the group: wait while some are, until
        none arrived for GROUP_IDLE_S or the group is GROUP_MAX_WAIT_S old."""
        first = time.monotonic()
        while self._inflight > 0:
            now = time.monotonic()
            if now - self._last_apply_s >= GROUP_IDLE_S or now - first >= GROUP_MAX_WAIT_S:
                return
            time.sleep(GROUP_POLL_S)

    def _write_group(self) -> None:
        """Commit every batch applied since the last commit in one transaction and wake their
        consumers (under lock); on failure all of them are refused and undone."""
        tickets, self._tickets = self._tickets, []
        error: str | None = None
        try:
            self._commit_batch()
        except DataRefusedError as exc:
            error = str(exc)
        except Exception:  # a bug: still refuse and undo the group, never leave it waiting
            self.counts["checkpoint_failures"] += 1
            self._rollback_to_store()
            self._resolve(tickets, "ml_drift: checkpoint commit failed; retry later")
            raise
        self._resolve(tickets, error)

    def _resolve(self, tickets: list[_Ticket], error: str | None) -> None:
        for ticket in tickets:
            ticket.error = error
            ticket.done = True
        self._resolved.notify_all()

    def _commit_batch(self) -> None:
        """Write the touched windows and cumulative streams in one transaction (under lock)."""
        changes = self._windowing.take_changes()
        if self.store is None:
            return
        started = time.perf_counter_ns()
        try:
            self.store.commit(changes)
        except WindowStoreError as exc:
            self.counts["checkpoint_failures"] += 1
            self._rollback_to_store()
            raise DataRefusedError(f"ml_drift: {exc}; the batch and those committed with it "
                                   "were not accepted, retry later") from exc
        self.counts["checkpoint_commits"] += 1
        self.counts["checkpoint_nanoseconds_total"] += time.perf_counter_ns() - started

    def _rollback_to_store(self) -> None:
        """Forget what the failed batch did in memory: reload the last committed state."""
        assert self.store is not None
        # Windows the evaluation has already taken out stay out: only those in memory now
        # are reloaded (as committed), so nothing is evaluated twice.
        in_memory = self._windowing.clear_open()
        try:
            self._restore(self.store, ingest_only=in_memory)
        except WindowStoreError:
            _log.exception("ml_drift: cannot reload the checkpoint after a failed write")

    def commit_evaluation(self, changes: Changes) -> None:
        """Record the evaluated windows, baselines and verdicts (a failure is logged)."""
        with self._lock:
            if self.store is None:
                return
            try:
                self.store.commit(changes)
                self.counts["checkpoint_commits"] += 1
            except WindowStoreError:
                self.counts["checkpoint_failures"] += 1
                _log.exception("ml_drift: cannot record evaluated windows in the checkpoint; "
                               "after a restart they may be evaluated again")
