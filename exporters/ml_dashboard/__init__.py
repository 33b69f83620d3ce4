"""The ``ml_dashboard`` exporter: the history of every model's closed windows (SQLite) and
the built-in dashboard that draws it (docs/dashboard.md)."""

from __future__ import annotations
