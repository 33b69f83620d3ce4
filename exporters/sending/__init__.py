"""The sending chain every push exporter shares: the persistent queue and retries
(``queue``), the push exporter base (``push``), HTTP posting (``http``), OTLP forwarding
(``otlp_forward``) and alert formatting (``alerts``). It imports no exporter."""

from __future__ import annotations
