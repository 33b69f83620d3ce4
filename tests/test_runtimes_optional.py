"""The runtimes stay optional and unimported: ``import driftline.auto`` imports none of
XGBoost, LightGBM and ONNX Runtime (nor Driftline's modules for them) until the application
does, then instruments the one it imported (ONNX Runtime here: the cheapest import)."""

from __future__ import annotations

from tests.test_torch_optional import _python

RUNTIMES = ("xgboost", "lightgbm", "onnxruntime")


def test_auto_defers_each_runtime_until_the_application_imports_it() -> None:
    code = ("import sys\n"
            "import driftline.auto\n"
            f"runtimes = {RUNTIMES!r}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in runtimes\n"
            "             or m.split('.')[-1] in (*runtimes, '_runtime')))\n"
            "import onnxruntime\n"
            "from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor\n"
            "print(OnnxRuntimeInstrumentor()._is_instrumented_by_opentelemetry,\n"
            "      'xgboost' in sys.modules, 'lightgbm' in sys.modules)\n")
    before, after = _python(code).splitlines()
    assert before == "[]"
    assert after == "True False False"


def test_an_instrumentor_waits_for_its_library_as_under_opentelemetry_instrument() -> None:
    # opentelemetry-instrument calls instrument() on every entry point at start.
    code = ("import sys, threading\n"
            "from driftline.instrumentation.lightgbm import LightGBMInstrumentor\n"
            "from driftline.instrumentation.onnxruntime import OnnxRuntimeInstrumentor\n"
            "OnnxRuntimeInstrumentor().instrument()\n"
            "LightGBMInstrumentor().instrument()\n"
            "LightGBMInstrumentor().uninstrument()  # before its import: nothing to undo\n"
            "def recorders():\n"
            "    return sum(t.name == 'driftline-recorder' for t in threading.enumerate())\n"
            "print('onnxruntime' in sys.modules, recorders())\n"
            "import onnxruntime, lightgbm\n"
            "from onnxruntime.capi.onnxruntime_inference_collection import Session\n"
            "print(hasattr(Session.run, '__wrapped__'),\n"
            "      hasattr(lightgbm.Booster.predict, '__wrapped__'), recorders())\n")
    before, after = _python(code).splitlines()
    assert before == "False 0"
    assert after == "True False 1"
