"""PyTorch stays optional: nothing imports it until the application does (runs without torch)."""

from __future__ import annotations

import subprocess
import sys

# Exporters off, so the subprocesses need no collector.
_ENV = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none", "PATH": "/usr/bin:/bin"}


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# torch made unimportable as on a machine without it: ``import torch`` and
# ``importlib.util.find_spec("torch")`` raise ModuleNotFoundError. (``sys.modules['torch'] =
# None`` would not do here: SciPy, imported by scikit-learn, looks torch up in sys.modules.)
_WITHOUT_TORCH = (
    "import sys\n"
    "class NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, NoTorch())\n"
)


def test_auto_imports_and_instruments_sklearn_without_torch() -> None:
    code = (_WITHOUT_TORCH
            + "import driftline.auto\n"
            "from sklearn.linear_model import LinearRegression\n"
            "from driftline.instrumentation.torch import TorchInstrumentor\n"
            "print(hasattr(LinearRegression.predict, '__wrapped__'),\n"
            "      TorchInstrumentor().is_instrumented_by_opentelemetry,\n"
            "      'torch' in sys.modules)")
    assert _python(code) == "True False False"


def test_torch_module_of_driftline_imports_without_torch() -> None:
    # The opentelemetry_instrumentor entry point loads it; torch is imported only in
    # instrument(), where a ModuleNotFoundError makes opentelemetry-instrument skip it.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from driftline.instrumentation.torch import TorchInstrumentor, "
            "reference_projection\n"
            "print(reference_projection(768).components, reference_projection(6))\n"
            "try:\n"
            "    TorchInstrumentor().instrument(skip_dep_check=True)\n"
            "except ModuleNotFoundError as exc:\n"
            "    print(type(exc).__name__)")
    assert _python(code).splitlines() == ["16 None", "ModuleNotFoundError"]


def test_kernel_and_profiles_do_not_import_torch() -> None:
    code = ("import sys, driftline, driftline.projection, driftline.profile, "
            "driftline.instrumentation.torch\n"
            "print('torch' in sys.modules)")
    assert _python(code) == "False"
