"""The ``file`` exporter: config, factory and component in ``exporter`` (with
``read_metrics``/``read_traces``/``read_logs``), rotation in ``rotating_file``, prediction
records in ``records``."""

from __future__ import annotations
