"""The Driftline processor: a collector-style service that receives OTLP and computes drift.

``driftline collector --config FILE`` runs it (``run_collector``); ``validate_file`` checks a
config without starting anything. ``service/`` loads the config and runs the pipelines;
``component/`` is the contract every component follows and the OTLP helpers they share;
every other folder is one component (``otlp_receiver``, ``ml_drift``, ``ml_performance``,
``batch``, ``memory_limiter``) or, in ``extensions/``, one module per extension. The rule of
the layers is in docs/architecture.md and checked by tests/test_architecture.py.
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
