"""Settings of the service, read from the environment once at start-up.

Defaults point inside the project, so the service runs from its own folder with no setup: the data
store is the project's ``data/`` folder and Redis is expected on 127.0.0.1:6379.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.app.logs import FORMATS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = "data-cache"
SERVICE_VERSION = "0.1.0"
DESCRIPTION = "Classifies handwritten digits named by ID, caching preprocessed images in Redis."
BUILDER_VERSION = "0.1.0"
PATTERN = "data-cache"
MODEL_FILE_NAME = "digits_logreg.onnx"
LABEL_FILE_NAME = "label.json"
# Read from the model file when the service was generated. TASK is what a prediction is:
# classification (scores per label), regression (values) or raw (every output by name).
TASK = "classification"
OUTPUT_NAME = "probabilities"
MODEL_SHA256 = "c6939c91c5048999d1661ddd7c079e53eb6ab9f59c1e8a6e980dd597ce592666"
MODEL_PRODUCER = "skl2onnx 1.20.0"
# The data item /predict/test predicts, end to end.
SAMPLE_DATA_ID = "digit-0000.png"
# Preprocessing resizes every image to IMAGE_SIDE x IMAGE_SIDE pixels (the model's input size).
IMAGE_SIDE = 16
# Model-input rows the model is tested with at start-up (data_sample in the variables).
DATA_SAMPLE_FILE = Path(__file__).with_name("data_sample.json")
# Which requests get a log line (src.app.observe): every one costs about a tenth of the throughput
# of a small model, so by default only those answered 4xx or 5xx; the metrics count them all.
REQUEST_LOG_DEFAULT = "errors"
# REQUEST_LOG's values, and the true/false spellings it (and ACCESS_LOG, its old name) also takes.
REQUEST_LOGS = {
    **{"all": "all", "errors": "errors", "off": "off"},
    **dict.fromkeys(("1", "true", "yes", "on"), "all"),
    **dict.fromkeys(("0", "false", "no"), "off"),
}

# Bytes of request bodies one worker may hold at once (src.app.limits.BodyBudget): two workers
# holding this much each, plus the model, stay inside the manifests' default memory limit.
BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the service (and the warm command) reads from its environment."""

    model_filepath: Path
    label_filepath: Path
    max_rows: int
    max_body_bytes: int
    max_body_bytes_in_flight: int
    onnx_threads: int
    offload_inference: bool
    request_log: str
    log_format: str
    opentelemetry: bool
    # The shadow model (src.ml.shadow): off when None.
    shadow_model_filepath: Path | None
    shadow_queue_size: int
    shadow_tolerance: float
    shadow_log_every: int
    # Adaptive batching (src.ml.batching): off when 0.
    batch_max_size: int
    batch_max_delay_ms: float
    # The Open Inference Protocol over gRPC (src.app.v2_grpc): off when the port is 0.
    grpc_port: int
    grpc_host: str
    data_uri: str
    max_item_bytes: int
    redis_url: str
    cache_ttl_seconds: int
    redis_timeout_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a bad value is a SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        models = PROJECT_ROOT / "models"
        return cls(
            model_filepath=Path(env.get("MODEL_FILEPATH", models / MODEL_FILE_NAME)),
            label_filepath=Path(env.get("LABEL_FILEPATH", models / LABEL_FILE_NAME)),
            # Rows of one V2 inference request (POST /predict names one item).
            max_rows=positive_int(env, "MAX_ROWS", 1000),
            max_body_bytes=positive_int(env, "MAX_BODY_BYTES", 65536),
            max_body_bytes_in_flight=positive_int(
                env, "MAX_BODY_BYTES_IN_FLIGHT", BODY_BYTES_IN_FLIGHT
            ),
            onnx_threads=positive_int(env, "ONNX_THREADS", 1),
            offload_inference=_flag(env, "OFFLOAD_INFERENCE", False),
            request_log=_request_log(env),
            log_format=_choice(env, "LOG_FORMAT", "text", FORMATS),
            opentelemetry=_flag(env, "OPENTELEMETRY", False),
            shadow_model_filepath=_optional_path(env, "SHADOW_MODEL_FILEPATH"),
            shadow_queue_size=positive_int(env, "SHADOW_QUEUE_SIZE", 100),
            shadow_tolerance=_positive_float(env, "SHADOW_TOLERANCE", 1e-4),
            shadow_log_every=positive_int(env, "SHADOW_LOG_EVERY", 100),
            batch_max_size=_zero_or_positive(env, "BATCH_MAX_SIZE", 0, 4096),
            batch_max_delay_ms=_positive_float(env, "BATCH_MAX_DELAY_MS", 5.0),
            # Off unless asked: run.sh asks (GRPC_PORT=8001 by default); an app made in a
            # test or a notebook must not listen on a fixed port.
            grpc_port=_zero_or_positive(env, "GRPC_PORT", 0, 65535),
            grpc_host=env.get("HOST", "0.0.0.0"),
            data_uri=env.get("DATA_URI") or str(PROJECT_ROOT / "data"),
            max_item_bytes=positive_int(env, "MAX_ITEM_BYTES", 4 * 1024 * 1024),
            redis_url=_redis_url(env),
            cache_ttl_seconds=positive_int(env, "CACHE_TTL_SECONDS", 3600),
            redis_timeout_seconds=positive_int(env, "REDIS_TIMEOUT_MS", 250) / 1000,
        )


def load_data_sample() -> list[Any]:
    """The start-up test rows."""
    rows: list[Any] = json.loads(DATA_SAMPLE_FILE.read_text(encoding="utf-8"))
    return rows


def _redis_url(env: Mapping[str, str]) -> str:
    url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"REDIS_URL={url!r}: expected redis://host:port/db")
    return url


def positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    """``env[key]`` as a positive integer, ``default`` when unset; else a SettingsError."""
    raw = env.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise SettingsError(f"{key}={raw!r}: expected a positive integer")
    return value


def _zero_or_positive(env: Mapping[str, str], key: str, default: int, highest: int) -> int:
    """``env[key]``: 0 (off) or a positive integer up to ``highest``; ``default`` when unset."""
    raw = env.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > highest:
        raise SettingsError(f"{key}={raw!r}: expected 0 (off) or a positive integer to {highest}")
    return int(raw)


def _positive_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{key}={raw!r}: expected a number above 0")
    return value


def _optional_path(env: Mapping[str, str], key: str) -> Path | None:
    """A path, relative ones from the project's folder; None when unset or empty."""
    raw = env.get(key, "")
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r}: expected true or false")


def _request_log(env: Mapping[str, str]) -> str:
    # ACCESS_LOG is the old name, still read so that existing deployments keep their lines.
    key = "REQUEST_LOG" if "REQUEST_LOG" in env else "ACCESS_LOG"
    raw = env.get(key, REQUEST_LOG_DEFAULT)
    value = REQUEST_LOGS.get(raw.lower())
    if value is None:
        raise SettingsError(f"{key}={raw!r}: expected all, errors or off")
    return value


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(key, default).lower()
    if raw not in choices:
        raise SettingsError(f"{key}={raw!r}: expected one of {', '.join(choices)}")
    return raw
