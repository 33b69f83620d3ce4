"""A tiny progress bar for the CLI: rows processed, on stderr, redrawn in place.

Shown only when the stream is a terminal or the user asked for it (``--progress``), so logs
and pipes never fill with carriage returns. No dependency: one line, rewritten with ``\\r``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

BAR_WIDTH = 24
MIN_REDRAW_INTERVAL_S = 0.1
PARQUET_SUFFIXES = (".parquet", ".pq")


def expected_rows(path: str | os.PathLike[str]) -> int | None:
    """Rows in a Parquet file or directory of them from the footers (cheap); None where
    unknown without reading."""
    try:
        if Path(path).is_dir():
            import pyarrow.dataset as ds

            return int(ds.dataset(path, format="parquet").count_rows())
        if Path(path).suffix.lower() not in PARQUET_SUFFIXES:
            return None
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return None  # the real read reports the problem


class Progress:
    """``progress(rows)`` redraws ``label: [####----]  45% 123,456 rows``; ``close()`` ends it.

    Without a known total it shows the row count and rate only.
    """

    def __init__(self, label: str, stream: TextIO, total: int | None = None) -> None:
        self.label, self.stream, self.total = label, stream, total
        self._start = time.monotonic()
        self._last_draw = -MIN_REDRAW_INTERVAL_S
        self._rows = 0
        # Off a terminal (--progress into a log) only the final line is written, no redraws.
        self._live = wanted(stream, forced=False)

    def __call__(self, rows: int) -> None:
        self._rows = rows
        now = time.monotonic()
        if self._live and now - self._last_draw >= MIN_REDRAW_INTERVAL_S:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = f"{self._rows / elapsed:,.0f} rows/s"
        if self.total:
            done = min(self._rows / self.total, 1.0)
            filled = round(done * BAR_WIDTH)
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done:4.0%} "
        else:
            bar = ""
        start = "\r" if self._live else ""
        self.stream.write(f"{start}{self.label}: {bar}{self._rows:,} rows, {rate}")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final count and end the line."""
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


def wanted(stream: TextIO, forced: bool) -> bool:
    """Show progress when asked to, or when ``stream`` is an interactive terminal."""
    if forced:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
