"""Settings of the prep service, read from the environment once at start-up.

Defaults point at a prediction service on 127.0.0.1, so that ``./run.sh`` and ``./run-prep.sh``
side by side work with no setup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from src.app.config import SERVICE_NAME, Settings, SettingsError, positive_int

# Preprocessing resizes every image to IMAGE_SIDE x IMAGE_SIDE pixels (the model's input size).
IMAGE_SIDE = 16
# The model input the prediction service is asked about: its name and datatype in the V2 protocol.
INPUT_NAME = "input"
INPUT_DATATYPE = "FP32"
# The model's output holding the class scores.
SCORES_OUTPUT = "probabilities"


@dataclass(frozen=True)
class PrepSettings:
    """Everything the prep service reads from its environment."""

    # The shared settings: request log, log format, body budget.
    common: Settings
    pred_url: str
    model_name: str
    timeout_seconds: float
    retries: int
    max_image_bytes: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrepSettings:
        """Read the settings; a bad value is a SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        return cls(
            common=Settings.from_env(env),
            pred_url=_pred_url(env),
            model_name=env.get("PRED_MODEL", SERVICE_NAME),
            timeout_seconds=positive_int(env, "PRED_TIMEOUT_MS", 2000) / 1000,
            retries=_retries(env),
            max_image_bytes=positive_int(env, "MAX_IMAGE_BYTES", 4194304),
        )


def _pred_url(env: Mapping[str, str]) -> str:
    url = env.get("PRED_URL", "http://127.0.0.1:8000").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"PRED_URL={url!r}: expected http(s)://host:port")
    return url


def _retries(env: Mapping[str, str]) -> int:
    raw = env.get("PRED_RETRIES", "2")
    if not raw.isdigit() or int(raw) > 10:
        raise SettingsError(f"PRED_RETRIES={raw!r}: expected a whole number from 0 to 10")
    return int(raw)
