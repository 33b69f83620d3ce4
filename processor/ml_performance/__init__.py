"""The ``ml_performance`` processor: quality metrics from predictions joined with ground
truth. Config in ``config``, factory and component in ``processor``, the SQLite join in
``store``."""

from __future__ import annotations
