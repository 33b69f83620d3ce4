"""The ``batch`` processor: config, factory and component in ``processor``."""

from __future__ import annotations
