"""OTLP metrics as Prometheus series, shared by the ``prometheus`` and
``prometheusremotewrite`` exporters, importing neither: ``config`` (the YAML keys),
``series`` (accumulating the latest state of every series), ``exponential`` (exponential
histograms re-binned as classic ones, on reference profiles), ``classic_bins`` (the bins),
``points`` (one series' state), ``render`` (text 0.0.4 / OpenMetrics) and ``text`` (names,
labels, escaping)."""

from __future__ import annotations
