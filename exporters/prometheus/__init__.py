"""The ``prometheus`` exporter (a scrape endpoint): config, factory and component in
``exporter``; the series it serves are built by ``driftline.exporters.prometheus_series``."""

from __future__ import annotations
