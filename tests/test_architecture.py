"""The rule of the layers (docs/architecture.md), checked on every import in the source.

Each module is parsed with ``ast`` (top-level, function-level and ``TYPE_CHECKING`` imports
alike, since each is a dependency) and mapped to its unit: the kernel, the app-side
instrumentation, the leaf contract ``processor.component``, the service, the shared sending
chain ``exporters.sending``, or one component (a folder under ``processor/`` or
``exporters/``, or one module under ``processor/extensions/``). A test fails naming the
importing file and the imported module, so a broken rule says where to look.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# package -> folder in the checkout, as setup.py maps them. The source is found through the
# imported packages, so the rule is checked on the installed wheel as well (`make test`).
FOLDERS = {
    "driftline": "driftline",
    "driftline.instrumentation": "instrumentation",
    "driftline.processor": "processor",
    "driftline.exporters": "exporters",
    "driftline.collector_config": "collector-config",
}
KERNEL = "kernel"
APP = "instrumentation"
LEAF = "processor.component"
SERVICE = "processor.service"
SENDING = "exporters.sending"
# Libraries exporters share, themselves no exporter: the sending chain (queue, retries,
# push) and OTLP-to-Prometheus series (both Prometheus exporters build on them).
EXPORTER_LIBRARIES = frozenset({SENDING, "exporters.prometheus_series"})
# The processor and exporter package roots hold only a docstring and re-exports.
PROCESSOR_ROOT = "processor"
EXPORTERS_ROOT = "exporters"
ENTRY = "entry points"
# Modules of driftline/ that are entry points above every layer: the CLI runs the collector
# and the demo reads the file exporter's output. Only they may import the collector side.
ENTRY_POINTS = frozenset({"driftline.__main__", "driftline.cli", "driftline.demo"})
# Modules of driftline/ that wire the OpenTelemetry SDK and the instrumentors into the
# user's process: they belong with the instrumentation (the app side, above the kernel).
APP_MODULES = frozenset({"driftline.auto", "driftline._sdk_setup"})


def package_folder(package: str) -> Path:
    return Path(importlib.import_module(package).__path__[0])


def shown(path: Path) -> str:
    """``path`` as in the checkout (``processor/ml_drift/processor.py``)."""
    for package in sorted(FOLDERS, key=len, reverse=True):
        folder = package_folder(package)
        if path.is_relative_to(folder):
            return f"{FOLDERS[package]}/{path.relative_to(folder).as_posix()}"
    return str(path)


def _modules() -> dict[str, Path]:
    found = {}
    for package in FOLDERS:
        folder = package_folder(package)
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def unit_of(module: str) -> str:
    """The unit a module belongs to (see the module docstring)."""
    if module in ENTRY_POINTS:
        return ENTRY
    parts = module.split(".")
    if parts[:2] == ["driftline", "instrumentation"] or module in APP_MODULES:
        return APP
    if parts[:2] == ["driftline", "processor"]:
        if len(parts) == 2:
            return PROCESSOR_ROOT
        if parts[2] == "extensions" and len(parts) > 3:
            return f"processor.extensions.{parts[3]}"
        return f"processor.{parts[2]}"
    if parts[:2] == ["driftline", "exporters"]:
        return EXPORTERS_ROOT if len(parts) == 2 else f"exporters.{parts[2]}"
    if parts[:2] == ["driftline", "collector_config"]:
        return "collector_config"
    return KERNEL


def is_component(unit: str) -> bool:
    collector_side = unit.startswith(("processor.", "exporters."))
    return collector_side and unit not in {LEAF, SERVICE, "processor.extensions",
                                           *EXPORTER_LIBRARIES}


def _resolve(name: str) -> str | None:
    """The Driftline module ``name`` refers to (a package's ``__init__`` for a package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, *, run_time_only: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, imported Driftline module)`` for every import in ``module``; with
    ``run_time_only``, those run when the module is imported (its top level, outside
    ``if TYPE_CHECKING``), not those in functions or for type checkers only."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if run_time_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import module`` depends on the module; any other name on
            # the module it is defined in
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == "driftline" or name.startswith("driftline."):
                target = _resolve(name)
                if target is not None and target != module:
                    yield node.lineno, target


def edges() -> list[tuple[str, int, str]]:
    return sorted({(module, line, target) for module in MODULES
                   for line, target in imports_of(module)})


EDGES = edges()


def _where(module: str, line: int, target: str) -> str:
    return f"{shown(MODULES[module])}:{line} imports {target}"


def _broken(allowed: Callable[[str, str, str], bool]) -> str:
    """Every import ``allowed(unit, imported unit, module)`` refuses, one per line."""
    return "\n".join(_where(module, line, target) for module, line, target in EDGES
                     if not allowed(unit_of(module), unit_of(target), module))


def test_the_rule_sees_the_layout() -> None:
    """Guards the rule itself: a rename that hid modules from it would make it vacuous."""
    units = {unit_of(module) for module in MODULES}
    assert {LEAF, SERVICE, SENDING, "processor.ml_drift", "processor.otlp_receiver",
            "processor.extensions.health_check", "exporters.prometheus"} <= units
    assert ("driftline.processor.service.pipeline", "driftline.processor.component") in {
        (module, target) for module, _, target in EDGES}


def test_the_leaf_contract_imports_only_the_kernel() -> None:
    """``processor.component`` is what every component shares; it depends on no component,
    on neither the service nor the sending chain, so any component can use it."""
    assert _broken(lambda unit, target, _: unit != LEAF or target in {LEAF, KERNEL}) == ""


def test_components_never_import_each_other_nor_the_service() -> None:
    """A component depends on the kernel, the leaf contract and (for exporters) the shared
    sending chain. The service finds components by module name in its registry, never by
    an import, so a component is added or removed without touching another one."""
    def allowed(unit: str, target: str, _: str) -> bool:
        if not is_component(unit):
            return True
        shared = {KERNEL, LEAF, unit}
        if unit.startswith("exporters."):
            shared |= EXPORTER_LIBRARIES
        return target in shared
    assert _broken(allowed) == ""


def test_the_exporter_libraries_import_no_exporter() -> None:
    """The shared exporter libraries depend on the kernel, the leaf and each other only."""
    assert _broken(lambda unit, target, _: unit not in EXPORTER_LIBRARIES
                   or target in {KERNEL, LEAF, *EXPORTER_LIBRARIES}) == ""


def test_the_service_imports_no_component() -> None:
    assert _broken(lambda unit, target, _: unit != SERVICE
                   or target in {KERNEL, LEAF, SERVICE}) == ""


def test_the_app_side_never_imports_the_collector_side() -> None:
    """``driftline.auto``, the instrumentation and the kernel run inside the user's model
    process: they never import the processor or the exporters (only the CLI and the demo,
    entry points above every layer, do)."""
    def allowed(unit: str, target: str, _: str) -> bool:
        return unit not in {KERNEL, APP} or not target.startswith((PROCESSOR_ROOT,
                                                                  EXPORTERS_ROOT))
    assert _broken(allowed) == ""


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle in ``graph`` (a list of nodes, first repeated last), or ``[]``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_cycle_between_packages() -> None:
    """Between units (the entry points, the app side, the kernel, and every unit of
    ``processor/`` and ``exporters/``, package roots aside, which only re-export), imports
    form no cycle: the kernel imports neither the app side nor the collector side."""
    graph: dict[str, set[str]] = {}
    roots = {PROCESSOR_ROOT, EXPORTERS_ROOT}
    for module, _, target in EDGES:
        unit, other = unit_of(module), unit_of(target)
        if unit != other and not {unit, other} & roots:
            graph.setdefault(unit, set()).add(other)
    assert APP in graph and ENTRY in graph  # the graph is not vacuous
    assert _cycle(graph) == []


def test_no_import_cycle_between_modules() -> None:
    """Module by module too, the imports run at import time form no cycle, so every module
    can be imported first (a cycle works or breaks by import order). Imports for type
    checkers only, or inside functions, are left out: they run after every module loaded."""
    graph = {module: {target for _, target in imports_of(module, run_time_only=True)}
             for module in MODULES}
    assert sum(map(len, graph.values())) > len(MODULES)  # the graph is not vacuous
    assert _cycle(graph) == []


# As a guide no module of processor/ or exporters/ is above this many lines (issue 15): a
# bigger one does several jobs, and is split by job.
MAX_MODULE_LINES = 500


def test_no_collector_module_above_the_size_guide() -> None:
    roots = {"driftline.processor", "driftline.exporters"}
    sizes = {shown(path): len(path.read_text().splitlines()) for module, path in MODULES.items()
             if any(module == root or module.startswith(f"{root}.") for root in roots)}
    assert "processor/ml_drift/processor.py" in sizes  # the walk sees the source
    too_big = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert too_big == {}


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[str]) -> None:
    assert _cycle(graph) == expected


def test_a_broken_rule_is_reported_with_its_file_and_line() -> None:
    """The checks above pass on a clean tree; this shows they would fail on a bad edge."""
    module = "driftline.processor.ml_drift.processor"
    bad = (module, 1, "driftline.processor.batch.processor")
    assert is_component(unit_of(bad[0])) and is_component(unit_of(bad[2]))
    assert unit_of(bad[0]) != unit_of(bad[2])
    assert _where(*bad).startswith("processor/ml_drift/processor.py:1 imports")


def test_consumers_are_called_by_signal_never_by_a_method_name_string() -> None:
    """The typed contract: a consumer's method is picked in code (``consumer_of``), not by
    ``getattr(consumer, name)`` with a computed name, which no type checker can follow."""
    found = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr" and len(node.args) >= 2
                    and not isinstance(node.args[1], ast.Constant)
                    and any(word in ast.unparse(node.args[0]) for word in ("next", "consumer"))):
                found.append(f"{shown(path)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


@pytest.mark.parametrize("signal", ["metrics", "traces", "logs"])
def test_consumer_of_hands_each_signal_to_its_method(signal: str) -> None:
    from driftline.processor.component import consumer_of

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, list[int]]] = []

        def consume_metrics(self, batch: list[int]) -> None:
            self.calls.append(("metrics", batch))

        def consume_traces(self, batch: list[int]) -> None:
            self.calls.append(("traces", batch))

        def consume_logs(self, batch: list[int]) -> None:
            self.calls.append(("logs", batch))

    recorder = Recorder()
    consumer_of(signal, recorder)([7])
    assert recorder.calls == [(signal, [7])]
    with pytest.raises(ValueError, match="unknown signal 'profiles'"):
        consumer_of("profiles", recorder)


@pytest.mark.parametrize("module", [
    "driftline.processor.otlp_receiver.receiver",
    "driftline.processor.ml_drift.processor",
    "driftline.exporters.prometheus.exporter",
    "driftline.exporters.file.exporter",
])
def test_importing_a_component_loads_no_other_component(module: str) -> None:
    """At run time too: importing the OTLP receiver used to load the Prometheus and file
    exporters and ml_performance's SQLite store (38 modules)."""
    code = (f"import sys, {module}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('driftline.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    own = unit_of(module)
    others = sorted(m for m in loaded if m in MODULES and is_component(unit_of(m))
                    and unit_of(m) != own)
    assert module in loaded
    assert others == []


def test_no_component_contract_decided_by_signature_inspection() -> None:
    """The service hands every factory the same ``(config, next_consumer, settings)``; it
    used to call ``inspect.signature`` to decide whether a factory got its ID."""
    found = [f"{shown(path)}:{node.lineno}"
             for module, path in MODULES.items() if unit_of(module) != KERNEL
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Attribute) and node.attr == "signature"
             and isinstance(node.value, ast.Name) and node.value.id == "inspect"]
    assert found == []


class _InvalidConfig:
    def validate(self) -> list[str]:
        return ["endpoint: bad on purpose"]


class _Sink:
    def consume_metrics(self, batch: object) -> None: ...

    def consume_traces(self, batch: object) -> None: ...

    def consume_logs(self, batch: object) -> None: ...


def _builtin_factories() -> list[tuple[str, object]]:
    from driftline.processor.service.registry import default_factories

    factories = default_factories()
    return sorted({(kind, factory.TYPE): factory
                   for kind in ("receiver", "processor", "exporter", "extension")
                   for factory in factories.of_kind(kind).values()}.items())


@pytest.mark.parametrize("kind_type, factory", _builtin_factories(),
                         ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_every_factory_validates_its_config_in_create(kind_type: tuple[str, str],
                                                      factory: object) -> None:
    """``create()`` always validates, so a config built in code (tests, embedding, the
    benchmark) cannot start a component the loader would have refused; the error names the
    component's ID from the settings the service hands every factory."""
    from driftline.processor.component import ComponentError, Settings

    kind, type_ = kind_type
    settings = Settings.of(kind, f"{type_}/mine")
    with pytest.raises(ComponentError, match=rf"^{type_}/mine: invalid config: "
                                             r"endpoint: bad on purpose$"):
        factory.create(_InvalidConfig(), _Sink(), settings)  # type: ignore[attr-defined]


def test_one_tls_config_type_for_receivers_and_exporters() -> None:
    """The receiver's and the exporters' ``tls`` are one type; each side refuses the keys
    of the other, naming its own."""
    import dataclasses
    import typing

    from driftline.exporters.otlp_grpc.exporter import OtlpGrpcExporterConfig
    from driftline.processor.component.tls import TlsConfig
    from driftline.processor.otlp_receiver.config import GrpcConfig

    def tls_type(config: type) -> object:
        hints = typing.get_type_hints(config)
        return next(hints[f.name] for f in dataclasses.fields(config) if f.name == "tls")

    assert tls_type(OtlpGrpcExporterConfig) is TlsConfig
    assert tls_type(GrpcConfig) == TlsConfig | None
    assert TlsConfig(insecure=True, cert_file="c", key_file="k").server_problems()[0] == (
        "insecure: not a receiver setting; a receiver's tls takes cert_file, key_file, "
        "client_ca_file")
    assert TlsConfig(client_ca_file="ca.pem").client_problems() == [
        "client_ca_file: not an exporter setting; an exporter's tls takes insecure, ca_file, "
        "cert_file, key_file, insecure_skip_verify"]
