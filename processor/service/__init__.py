"""The service: config loading and variable expansion (``config``), the component types
(``registry``), the pipeline graph (``pipeline``), the running service (``service``) and its
own telemetry (``self_telemetry``). It reaches components only through the registry."""

from __future__ import annotations
