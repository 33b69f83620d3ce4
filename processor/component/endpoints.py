"""Listening endpoints (``host:port``) as every server component validates them."""

from __future__ import annotations

MAX_PORT = 65535


def endpoint_problem(key: str, endpoint: object) -> str | None:
    """``"key: message"`` when ``endpoint`` is not ``host:port`` with a port 0-65535."""
    if not isinstance(endpoint, str):
        return f"{key}: must be a string 'host:port', got {endpoint!r}"
    host, colon, port = endpoint.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > MAX_PORT:
        return (f"{key}: must be 'host:port' with a port from 0 to {MAX_PORT} "
                f"(0 picks a free port), got {endpoint!r}")
    return None
