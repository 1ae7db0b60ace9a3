"""Settings of the proxy, read from the environment once at start-up.

Defaults point at the backends on 127.0.0.1 (backend number i on port 8001 + i), so
that the proxy and ``make run-backends`` work side by side with no setup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from src.app.config import Settings, SettingsError, positive_int

# The backends the project was generated with, in order.
BACKEND_NAMES = ["setosa", "versicolor", "virginica"]
BACKEND_PORT = 8001
AGGREGATIONS = ("highest", "all")


@dataclass(frozen=True)
class ProxySettings:
    """Everything the proxy reads from its environment."""

    # The shared settings: body limits, request log, log format.
    common: Settings
    # Backend name → its base URL.
    backends: dict[str, str]
    timeout_seconds: float
    aggregate: str

    @property
    def max_body_bytes(self) -> int:
        """The largest body read (src.app.errors reads it from the app's settings)."""
        return self.common.max_body_bytes

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Read the settings; a bad value is a SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        aggregate = env.get("AGGREGATE", "highest")
        if aggregate not in AGGREGATIONS:
            raise SettingsError(f"AGGREGATE={aggregate!r}: expected highest or all")
        return cls(
            common=Settings.from_env(env),
            backends=_backends(env),
            timeout_seconds=positive_int(env, "BACKEND_TIMEOUT_MS", 1000) / 1000,
            aggregate=aggregate,
        )


def default_urls() -> str:
    """BACKEND_URLS when unset: every backend on 127.0.0.1, on its own port."""
    return ",".join(
        f"{name}=http://127.0.0.1:{BACKEND_PORT + index}"
        for index, name in enumerate(BACKEND_NAMES)
    )


def _backends(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("BACKEND_URLS") or default_urls()
    backends: dict[str, str] = {}
    for entry in raw.split(","):
        name, _, url = entry.strip().partition("=")
        parts = urlsplit(url)
        if not name or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"BACKEND_URLS: {entry.strip()!r}: expected name=http(s)://host:port"
            )
        if name in backends:
            raise SettingsError(f"BACKEND_URLS: {name!r} is named twice")
        backends[name] = url.rstrip("/")
    return backends
