"""The Driftline processor: a collector-style service that receives OTLP and computes drift.

``driftline collector --config FILE`` runs it (``run_collector``); ``validate_file`` checks a
config without starting anything. Components live in their own modules (``otlp_receiver``,
``ml_drift``) and follow ``component.py``.
"""

from __future__ import annotations

from driftline.processor.component import ComponentError
from driftline.processor.service.config import Config, ConfigError, load_config, validate_file
from driftline.processor.service.service import run_collector

__all__ = [
    "ComponentError",
    "Config",
    "ConfigError",
    "load_config",
    "run_collector",
    "validate_file",
]
