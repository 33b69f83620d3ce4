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
