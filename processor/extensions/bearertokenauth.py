"""The ``bearertokenauth`` extension: receivers accept only requests carrying
``Authorization: Bearer <token>``, as the collector's ``extension/bearertokenauthextension``.

The token is written inline (``token``, where ``${env:VAR}`` keeps it out of the file) or
read from ``filename``; a token file is read again when it changes on disk, so a rotated
token takes effect without a restart. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from driftline.processor.component import (
    AuthenticationError,
    ComponentError,
    Consumer,
    Settings,
    validated,
)
from driftline.processor.component.settings import KIND_EXTENSION

_log = logging.getLogger(__name__)

TYPE = "bearertokenauth"
DEFAULT_SCHEME = "Bearer"
DEFAULT_HEADER = "Authorization"
ENCODING = "utf-8"


@dataclass(frozen=True, slots=True)
class BearerTokenAuthConfig:
    """``extensions: {bearertokenauth: {token: ${env:OTLP_TOKEN}}}`` or ``{filename: ...}``."""

    token: str = ""
    filename: str = ""
    scheme: str = DEFAULT_SCHEME
    header: str = DEFAULT_HEADER

    def validate(self) -> list[str]:
        problems = []
        token, filename = self.token, self.filename
        if not isinstance(token, str) or not isinstance(filename, str):
            return ["token/filename: must be strings"]
        if token and filename:
            problems.append("token: set either token or filename, not both")
        elif not token and not filename:
            problems.append("token: required (or filename, a file holding the token); e.g. "
                            "token: ${env:OTLP_TOKEN}")
        if filename:
            path = Path(filename)
            if not path.is_file():
                problems.append(f"filename: file {filename!r} does not exist (or is not a "
                                "file)")
            elif not os.access(path, os.R_OK):
                problems.append(f"filename: file {filename!r} is not readable by this process")
        if not isinstance(self.scheme, str) or " " in self.scheme:
            problems.append(f"scheme: must be one word such as Bearer, got {self.scheme!r}")
        if not isinstance(self.header, str) or not self.header.strip():
            problems.append(f"header: must be a header name, got {self.header!r}")
        return problems


class BearerTokenAuth:
    """A server authenticator: ``authenticate(headers)`` raises ``AuthenticationError``
    unless the header holds ``<scheme> <token>``."""

    def __init__(self, config: BearerTokenAuthConfig) -> None:
        self._config = config
        self._header = config.header.lower()
        self._lock = threading.Lock()
        self._token: bytes = config.token.encode(ENCODING)
        self._file_mtime_ns: int | None = None

    def start(self) -> None:
        """Read the token file, if one is configured; ``ComponentError`` if it is unusable."""
        if self._config.filename:
            self._reload(force=True)

    def shutdown(self) -> None:
        """Nothing to release."""

    def _reload(self, force: bool = False) -> None:
        path = Path(self._config.filename)
        try:
            mtime_ns = path.stat().st_mtime_ns
            if not force and mtime_ns == self._file_mtime_ns:
                return
            token = path.read_text(encoding=ENCODING).strip()
        except (OSError, UnicodeDecodeError) as exc:
            if force:
                raise ComponentError(f"filename: cannot read the token from "
                                     f"{self._config.filename!r}: {exc}") from exc
            _log.error("bearertokenauth: cannot re-read %s, keeping the previous token: %s",
                       self._config.filename, exc)
            return
        if not token:
            if force:
                raise ComponentError(f"filename: {self._config.filename!r} is empty; write "
                                     "the token into it")
            _log.error("bearertokenauth: %s is now empty, keeping the previous token",
                       self._config.filename)
            return
        with self._lock:
            self._token, self._file_mtime_ns = token.encode(ENCODING), mtime_ns
        if not force:
            _log.info("bearertokenauth: token re-read from %s", self._config.filename)

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Accept ``headers`` (names in lower case) holding ``<scheme> <token>``."""
        if self._config.filename:
            self._reload()
        value = headers.get(self._header)
        if value is None:
            raise AuthenticationError(f"missing {self._config.header} header; send "
                                      f"'{self._config.header}: {self._config.scheme} <token>'")
        scheme, _, presented = value.strip().partition(" ")
        if scheme.lower() != self._config.scheme.lower() or not presented:
            raise AuthenticationError(f"the {self._config.header} header must be "
                                      f"'{self._config.scheme} <token>'")
        with self._lock:
            expected = self._token
        if not hmac.compare_digest(presented.strip().encode(ENCODING), expected):
            raise AuthenticationError("the bearer token is not valid")


class Factory:
    """``extensions: {bearertokenauth: ...}``."""

    TYPE = TYPE
    CONFIG = BearerTokenAuthConfig

    def default_config(self) -> BearerTokenAuthConfig:
        return BearerTokenAuthConfig()

    def create(self, config: BearerTokenAuthConfig, next_consumer: Consumer | None = None,
               settings: Settings | None = None) -> BearerTokenAuth:
        settings = settings or Settings.of(KIND_EXTENSION, TYPE)
        return BearerTokenAuth(validated(config, settings))
