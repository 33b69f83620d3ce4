"""Serverless functions: OTLP/HTTP, nothing on disk, telemetry flushed before returning.

A function instance may be frozen as soon as its handler returns and is never told before it
is destroyed, so background export threads and ``atexit`` hooks cannot be relied on. Under
serverless mode (``is_serverless``) ``import driftline.auto`` exports over OTLP/HTTP
(``http://localhost:4318``, the SDK's default, unless ``OTEL_EXPORTER_OTLP_*`` say otherwise;
a Lambda OpenTelemetry collector extension listens there), and a handler wrapped with
``handler`` flushes spans, Driftline's distribution metrics, SDK metrics and logs before it
returns::

    import driftline.auto
    import driftline.serverless

    @driftline.serverless.handler
    def handle(event, context):
        return model.predict(...)

Driftline writes nothing to disk on the app side: the recorder aggregates in memory and the
SDK exporters send over the network.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import _logs, metrics, trace

_logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT_S",
    "ENV_SERVERLESS",
    "apply_environment_defaults",
    "capped_flush_timeout_s",
    "default_service_name",
    "flush",
    "forget_probes",
    "handler",
    "is_serverless",
    "nothing_listens",
    "otlp_http_targets",
]

# A flush to a local collector extension takes milliseconds; a few seconds leave room for a
# remote backend's first TLS handshake. Lambda's remaining time caps it in any case.
DEFAULT_FLUSH_TIMEOUT_S = 5.0
# Time kept back from what the invocation has left, so the handler still returns in time.
INVOCATION_RESERVE_S = 0.1

# Before a flush, each OTLP/HTTP endpoint is connected to once: a refusal (nothing listens)
# answers in about a millisecond, where the exporters would retry until the flush budget is
# spent (5 s per invocation). A connect slower than this is no refusal: the flush runs.
PROBE_TIMEOUT_S = 0.05
# A listening endpoint is not probed again for this long (an invocation costs no connect).
PROBE_REMEMBER_S = 60.0
DEFAULT_OTLP_HTTP_ENDPOINT = "http://localhost:4318"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SIGNALS = ("traces", "metrics", "logs")
_HTTP_PROTOCOLS = ("http/protobuf", "http/json")

ENV_SERVERLESS = "DRIFTLINE_SERVERLESS"
ENV_AWS_LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
ENV_GOOGLE_CLOUD_FUNCTIONS = "K_SERVICE"  # Cloud Functions (2nd gen) and Cloud Run
ENV_AZURE_FUNCTIONS = "FUNCTIONS_WORKER_RUNTIME"
ENV_OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
_DETECTED_BY = (ENV_AWS_LAMBDA_FUNCTION_NAME, ENV_GOOGLE_CLOUD_FUNCTIONS, ENV_AZURE_FUNCTIONS)
_TRUE = ("true", "1")
_FALSE = ("false", "0")
_SERVICE_NAME_KEY = "service.name"

# Instrumentors owning a recorder: (module, class). Only modules already imported are
# looked at: an instrumentor never imported cannot be instrumented, and importing torch
# during a flush would cost seconds.
_INSTRUMENTORS = (
    ("driftline.instrumentation.sklearn", "SklearnInstrumentor"),
    ("driftline.instrumentation.torch", "TorchInstrumentor"),
)

_F = TypeVar("_F", bound=Callable[..., Any])


def is_serverless(environ: Mapping[str, str] | None = None) -> bool:
    """Whether telemetry must leave over OTLP/HTTP and be flushed per invocation.

    True under AWS Lambda (``AWS_LAMBDA_FUNCTION_NAME``), Google Cloud Functions / Cloud Run
    (``K_SERVICE``) and Azure Functions (``FUNCTIONS_WORKER_RUNTIME``), or when asked with
    ``DRIFTLINE_SERVERLESS=true`` (or ``1``); ``DRIFTLINE_SERVERLESS=false`` (or ``0``)
    turns detection off.
    """
    environ = os.environ if environ is None else environ
    asked = environ.get(ENV_SERVERLESS, "").strip().lower()
    if asked in _TRUE:
        return True
    if asked in _FALSE:
        return False
    return any(environ.get(name) for name in _DETECTED_BY)


def default_service_name(environ: Mapping[str, str] | None = None) -> str | None:
    """The Lambda function's name when ``service.name`` is configured nowhere, else None.

    Nobody sets ``OTEL_SERVICE_NAME`` in a Lambda function by default; its name is what the
    operator knows the service by (the OpenTelemetry Lambda layer does the same).
    """
    environ = os.environ if environ is None else environ
    function_name = environ.get(ENV_AWS_LAMBDA_FUNCTION_NAME)
    if not function_name or environ.get(ENV_OTEL_SERVICE_NAME):
        return None
    attributes = environ.get(ENV_OTEL_RESOURCE_ATTRIBUTES, "")
    if any(item.split("=", 1)[0].strip() == _SERVICE_NAME_KEY for item in attributes.split(",")):
        return None
    return function_name


def apply_environment_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Set ``OTEL_SERVICE_NAME`` to the Lambda function's name when nothing names the service.

    Done through the environment because every ``Resource.create()`` of the process (the
    providers' and the recorders') reads it there.
    """
    environ = os.environ if environ is None else environ
    name = default_service_name(environ)
    if name is not None:
        environ[ENV_OTEL_SERVICE_NAME] = name


class _Probes:
    """When each endpoint was last found listening (monotonic seconds), per process."""

    def __init__(self) -> None:
        self.listening: dict[tuple[str, int], float] = {}
        self.warned = False


_probes = _Probes()


def forget_probes() -> None:
    """Forget which endpoints were found listening (tests; a changed environment)."""
    _probes.listening.clear()
    _probes.warned = False


def otlp_http_targets(environ: Mapping[str, str] | None = None
                      ) -> set[tuple[str, int]] | None:
    """The (host, port) every signal exports to, when serverless mode exports all of them
    with OTLP/HTTP as the ``OTEL_*`` variables say (``driftline.auto``'s choice); None when
    not serverless or some signal goes elsewhere (console, gRPC): nothing to probe then."""
    environ = os.environ if environ is None else environ
    if not is_serverless(environ):
        return None
    targets = set()
    for signal in _SIGNALS:
        upper = signal.upper()
        names = [n.strip() for n in environ.get(f"OTEL_{upper}_EXPORTER", "otlp").split(",")
                 if n.strip() and n.strip() != "none"]
        if any(name != "otlp" for name in names):
            return None
        if not names:
            continue
        protocol = (environ.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL")
                    or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
        if protocol not in _HTTP_PROTOCOLS:
            return None
        endpoint = (environ.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
                    or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_OTLP_HTTP_ENDPOINT)
        try:
            url = urlsplit(endpoint.strip())
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
        except ValueError:
            return None
        if not url.hostname:
            return None
        targets.add((url.hostname, port))
    return targets


def nothing_listens(environ: Mapping[str, str] | None = None) -> list[str]:
    """The OTLP/HTTP endpoints (``host:port``) when every one refuses a connection, else []:
    a flush then cannot succeed and is skipped. A connect that times out is no refusal."""
    targets = otlp_http_targets(environ)
    if not targets:
        return []
    now = time.monotonic()
    refused = []
    for host, port in sorted(targets):
        if now - _probes.listening.get((host, port), -PROBE_REMEMBER_S) < PROBE_REMEMBER_S:
            return []
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                _probes.listening[(host, port)] = now
                return []
        except ConnectionRefusedError:
            refused.append(f"{host}:{port}")
        except OSError:  # slow, unresolvable or unreachable: let the exporters try
            return []
    return refused


def _recorders() -> list[Any]:
    """The recorders of every Driftline instrumentor currently instrumenting."""
    found: dict[int, Any] = {}
    for module_name, class_name in _INSTRUMENTORS:
        module = sys.modules.get(module_name)
        instrumentor_class = getattr(module, class_name, None) if module is not None else None
        if instrumentor_class is None:
            continue
        try:
            instrumentor = instrumentor_class()  # BaseInstrumentor: the one instance
            if instrumentor.is_instrumented_by_opentelemetry:
                recorder = instrumentor.recorder
                found[id(recorder)] = recorder
        except Exception:  # a half-written instrumentor must not break the handler
            _logger.warning("driftline: cannot reach the recorder of %s", class_name,
                            exc_info=True)
    return list(found.values())


def _flush_all(deadline: float, tracer_provider: Any, meter_provider: Any,
               logger_provider: Any) -> bool:
    """Flush in order (spans, recorders, SDK metrics, logs), each with the time left."""
    ok = True

    def left_s() -> float:
        return max(deadline - time.monotonic(), 0.0)

    steps: list[tuple[str, Callable[[], Any]]] = []
    provider_flush = getattr(tracer_provider, "force_flush", None)
    if callable(provider_flush):
        steps.append(("tracer provider",
                      lambda f=provider_flush: f(timeout_millis=int(left_s() * 1e3))))
    for recorder in _recorders():
        steps.append(("recorder", lambda r=recorder: r.force_flush(timeout_s=left_s())))
    for name, provider in (("meter provider", meter_provider),
                           ("logger provider", logger_provider)):
        provider_flush = getattr(provider, "force_flush", None)
        if callable(provider_flush):
            steps.append((name, lambda f=provider_flush: f(timeout_millis=int(left_s() * 1e3))))
    for name, step in steps:
        if left_s() <= 0:
            _logger.warning("driftline: no time left to flush the %s", name)
            ok = False
            continue
        try:
            result = step()
        except Exception:
            _logger.warning("driftline: flushing the %s failed", name, exc_info=True)
            ok = False
            continue
        if result is False:
            _logger.warning("driftline: flushing the %s did not complete", name)
            ok = False
    return ok


def flush(timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S, *, tracer_provider: Any = None,
          meter_provider: Any = None, logger_provider: Any = None) -> bool:
    """Flush all telemetry within ``timeout_s`` in total; True when everything was sent.

    Flushes the tracer provider, the recorder of every Driftline instrumentor, the meter
    provider and the logger provider (the globals unless given). Never raises: a failure
    or timeout is logged and gives False. The flush runs in a helper thread so an exporter
    ignoring its timeout cannot hold the caller past ``timeout_s``; it then finishes in the
    background.
    """
    if timeout_s <= 0:
        _logger.warning("driftline: no time left to flush telemetry (%.3fs)", timeout_s)
        return False
    refused = nothing_listens()
    if refused:
        # Every invocation would otherwise wait out its flush budget in retries. What is
        # queued stays queued: a later invocation sends it once a collector listens.
        _logger.log(logging.DEBUG if _probes.warned else logging.WARNING,
                    "driftline: nothing listens at %s; telemetry is not flushed this "
                    "invocation (kept for a later one)", ", ".join(refused))
        _probes.warned = True
        return False
    if tracer_provider is None:
        tracer_provider = trace.get_tracer_provider()
    if meter_provider is None:
        meter_provider = metrics.get_meter_provider()
    if logger_provider is None:
        logger_provider = _logs.get_logger_provider()
    deadline = time.monotonic() + timeout_s
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(_flush_all(deadline, tracer_provider, meter_provider,
                                      logger_provider))
        except Exception:
            _logger.warning("driftline: flushing telemetry failed", exc_info=True)
            outcome.append(False)

    worker = threading.Thread(target=run, name="driftline-flush", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        _logger.warning("driftline: telemetry flush did not finish within %.3fs; returning "
                        "without it (the rest is sent if the instance runs again)", timeout_s)
        return False
    return bool(outcome and outcome[0])


def _remaining_s(context: Any) -> float | None:
    """What the invocation has left, from Lambda's ``context.get_remaining_time_in_millis``."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    try:
        return float(remaining()) / 1e3
    except Exception:
        _logger.warning("driftline: context.get_remaining_time_in_millis() failed",
                        exc_info=True)
        return None


def capped_flush_timeout_s(configured_s: float, context: Any) -> float:
    """``configured_s``, capped so the flush ends before the invocation does."""
    remaining = _remaining_s(context)
    if remaining is None:
        return configured_s
    return min(configured_s, remaining - INVOCATION_RESERVE_S)


def handler(func: _F | None = None, *, flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
            tracer_provider: Any = None, meter_provider: Any = None,
            logger_provider: Any = None) -> Any:
    """Wrap a function handler ``(event, context)`` so its telemetry is sent before it returns.

    Usable as ``@handler`` or ``@handler(flush_timeout_s=1)``. After the handler returns or
    raises, everything is flushed within ``flush_timeout_s`` in total, capped by Lambda's
    ``context.get_remaining_time_in_millis()`` when the context has it. The handler's
    result is returned and its exception re-raised unchanged; the flush never raises.
    """
    if isinstance(flush_timeout_s, bool) or not isinstance(flush_timeout_s, int | float) \
            or flush_timeout_s <= 0:
        raise ValueError(f"flush_timeout_s must be a positive number of seconds, got "
                         f"{flush_timeout_s!r}")

    def decorate(function: _F) -> _F:
        if inspect.iscoroutinefunction(function):
            raise TypeError(f"driftline.serverless.handler wraps synchronous handlers; "
                            f"{function.__qualname__} is a coroutine function")

        @functools.wraps(function)
        def wrapper(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return function(event, context, *args, **kwargs)
            finally:
                flush(capped_flush_timeout_s(flush_timeout_s, context),
                      tracer_provider=tracer_provider,
                      meter_provider=meter_provider, logger_provider=logger_provider)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
