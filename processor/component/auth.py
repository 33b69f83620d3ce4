"""``auth: {authenticator: <extension ID>}``, the collector's ``configauth``: how a server
component (the OTLP receiver, the ``ml_dashboard`` exporter) names the extension that checks
its requests' credentials, and how it finds that extension on the host at start."""

from __future__ import annotations

from dataclasses import dataclass

from driftline.processor.component import ComponentError, Host, ServerAuthenticator


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``auth``: the ID of the extension that authenticates requests (the collector's
    ``configauth``), e.g. ``bearertokenauth`` or ``bearertokenauth/clients``."""

    authenticator: str = ""

    def validate(self) -> list[str]:
        if not isinstance(self.authenticator, str) or not self.authenticator.strip():
            return ["authenticator: required, the ID of an authenticator extension listed in "
                    f"service::extensions (e.g. bearertokenauth), got {self.authenticator!r}"]
        return []


def authenticator_of(host: Host | None, auth: AuthConfig | None,
                     where: str) -> ServerAuthenticator | None:
    """The extension ``auth`` names, or None without ``auth``; ``ComponentError`` (naming
    ``where``, a YAML path) when it is missing or authenticates nothing."""
    if auth is None:
        return None
    if host is None:
        raise ComponentError(f"{where}: the component was started without a host, so "
                             f"extension '{auth.authenticator}' cannot be reached")
    extension = host.extension(auth.authenticator, where)
    if not isinstance(extension, ServerAuthenticator):
        raise ComponentError(f"{where}: extension '{auth.authenticator}' does not authenticate "
                             "requests; name an authenticator such as bearertokenauth")
    return extension
