"""Package discovery for the one ``driftline`` distribution.

The top-level folders are the architecture (docs/architecture.md): each maps onto a
subpackage of ``driftline``. Everything below them is discovered, never listed by hand, so a
new subpackage or data file cannot be left out of the wheel: every folder holding an
``__init__.py`` is a package, and every file in it that is not Python source is its data.
The metadata lives in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

# package -> folder; the order is the import order of the layers, kernel first.
FOLDERS = {
    "driftline": "driftline",
    "driftline.instrumentation": "instrumentation",
    "driftline.processor": "processor",
    "driftline.exporters": "exporters",
    "driftline.collector_config": "collector-config",
}
NOT_DATA = {".py", ".pyc", ".pyo"}


def _packages() -> list[str]:
    found = []
    for package, folder in FOLDERS.items():
        found.append(package)
        found += [f"{package}.{sub}" for sub in find_packages(folder)]
    return found


def _folder_of(package: str) -> Path:
    for root in sorted(FOLDERS, key=len, reverse=True):
        if package == root or package.startswith(root + "."):
            rest = package[len(root):].lstrip(".")
            return Path(FOLDERS[root], *rest.split(".")) if rest else Path(FOLDERS[root])
    raise ValueError(package)


def _data(package: str) -> list[str]:
    folder = _folder_of(package)
    return sorted(path.name for path in folder.iterdir()
                  if path.is_file() and path.suffix not in NOT_DATA)


PACKAGES = _packages()
setup(packages=PACKAGES, package_dir=FOLDERS,
      package_data={package: _data(package) for package in PACKAGES})
