"""OTLP metrics as Prometheus series (``series``), their names and text format (``text``)
and classic bins for exponential histograms (``classic_bins``): shared by the
``prometheus`` and ``prometheusremotewrite`` exporters, importing neither."""

from __future__ import annotations
