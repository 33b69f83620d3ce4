"""``import driftline.auto``: one line instruments every model call of the process.

It sets up a tracer provider and a meter provider with exporters from the standard
``OTEL_*`` variables unless the application configured its own, then instruments
scikit-learn. Under ``opentelemetry-instrument`` the distro configures the providers and the
instrumentor is found through the ``opentelemetry_instrumentor`` entry point instead.
"""

from __future__ import annotations

from driftline._sdk_setup import configure_providers_from_env
from driftline.instrumentation.sklearn import SklearnInstrumentor

configure_providers_from_env()
SklearnInstrumentor().instrument()
