"""The ``file_storage`` extension: a directory where components keep state across restarts.

After the collector's ``extension/storage/filestorage``: ``directory`` (required) holds one
subdirectory per component that asks (an exporter's persistent sending queue).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from driftline.processor.component import ComponentError, Consumer, Settings, validated
from driftline.processor.component.settings import KIND_EXTENSION

TYPE = "file_storage"
DEFAULT_DIRECTORY = ""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(slots=True)
class FileStorageConfig:
    directory: str = DEFAULT_DIRECTORY
    create_directory: bool = True

    def validate(self) -> list[str]:
        if not self.directory.strip():
            return ["directory: required, the directory to keep state in"]
        path = Path(self.directory)
        if path.exists() and not path.is_dir():
            return [f"directory: {self.directory} exists and is not a directory"]
        if not path.exists() and not self.create_directory:
            return [f"directory: {self.directory} does not exist (create it, or set "
                    "create_directory: true)"]
        return []


class FileStorage:
    def __init__(self, config: FileStorageConfig) -> None:
        self._root = Path(config.directory)
        self._create = config.create_directory

    def start(self) -> None:
        if self._create:
            self._root.mkdir(parents=True, exist_ok=True)
        if not os.access(self._root, os.W_OK):
            raise ComponentError(f"file_storage: cannot write to {self._root}")

    def shutdown(self) -> None:
        """Nothing to release: components own their files."""

    def directory_for(self, component_id: str) -> Path:
        """The subdirectory of one component (its ID made safe as a file name)."""
        return self._root / _UNSAFE.sub("_", component_id)


class Factory:
    TYPE = TYPE
    CONFIG = FileStorageConfig

    def default_config(self) -> FileStorageConfig:
        return FileStorageConfig()

    def create(self, config: FileStorageConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> FileStorage:
        settings = settings or Settings.of(KIND_EXTENSION, TYPE)
        return FileStorage(validated(config, settings))
