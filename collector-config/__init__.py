"""Ready-made processor configs, shipped inside the package so `driftline demo` and users of
the installed wheel find them (`shipped("default.yaml")`)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["shipped"]


def shipped(name: str) -> Path:
    """The path of a config shipped with Driftline, e.g. ``shipped("default.yaml")``."""
    return Path(str(importlib.resources.files(__name__) / name))
