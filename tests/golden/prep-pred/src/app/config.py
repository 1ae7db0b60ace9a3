"""Settings of the service, read from the environment once at start-up.

Defaults point inside the project, so the service runs from its own folder with no setup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from src.app.logs import FORMATS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAME = "prep-pred"
SERVICE_VERSION = "0.1.0"
DESCRIPTION = "Classifies uploaded images of handwritten digits; prep and prediction apart."
BUILDER_VERSION = "0.1.0"
PATTERN = "prep-pred"
MODEL_FILE_NAME = "digits_logreg.onnx"
LABEL_FILE_NAME = "label.json"
# Read from the model file when the service was generated. TASK is what a prediction is:
# classification (scores per label), regression (values) or raw (every output by name).
TASK = "classification"
OUTPUT_NAME = "probabilities"
MODEL_SHA256 = "c6939c91c5048999d1661ddd7c079e53eb6ab9f59c1e8a6e980dd597ce592666"
MODEL_PRODUCER = "skl2onnx 1.20.0"
# The sample request the service tests itself with at start-up and serves at /predict/test.
DATA_SAMPLE = [
    [
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.21568627655506134,
        0.6901960968971252,
        0.7764706015586853,
        0.4431372582912445,
        0.1764705926179886,
        0.0470588244497776,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0117647061124444,
        0.05882352963089943,
        0.2862745225429535,
        0.7137255072593689,
        0.7568627595901489,
        0.4000000059604645,
        0.13725490868091583,
        0.0313725508749485,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.003921568859368563,
        0.05098039284348488,
        0.1882352977991104,
        0.43529412150382996,
        0.7450980544090271,
        0.7019608020782471,
        0.30980393290519714,
        0.062745101749897,
        0.0117647061124444,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.003921568859368563,
        0.11764705926179886,
        0.38823530077934265,
        0.6000000238418579,
        0.6745098233222961,
        0.5254902243614197,
        0.1921568661928177,
        0.01568627543747425,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.20392157137393951,
        0.6352941393852234,
        0.7529411911964417,
        0.5176470875740051,
        0.2705882489681244,
        0.0784313753247261,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.007843137718737125,
        0.03921568766236305,
        0.2980392277240753,
        0.7843137383460999,
        0.8509804010391235,
        0.46666666865348816,
        0.1882352977991104,
        0.08235294371843338,
        0.03921568766236305,
        0.019607843831181526,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.027450980618596077,
        0.11764705926179886,
        0.40392157435417175,
        0.8392156958580017,
        0.8901960849761963,
        0.5490196347236633,
        0.3019607961177826,
        0.21176470816135406,
        0.14901961386203766,
        0.09019608050584793,
        0.04313725605607033,
        0.0117647061124444,
        0.003921568859368563,
        0.0,
        0.0,
        0.003921568859368563,
        0.05882352963089943,
        0.21568627655506134,
        0.5137255191802979,
        0.8745098114013672,
        0.9254902005195618,
        0.6666666865348816,
        0.4627451002597809,
        0.3803921639919281,
        0.3450980484485626,
        0.34117648005485535,
        0.2705882489681244,
        0.13333334028720856,
        0.0470588244497776,
        0.0117647061124444,
        0.0,
        0.003921568859368563,
        0.09019608050584793,
        0.3176470696926117,
        0.615686297416687,
        0.9019607901573181,
        0.9490196108818054,
        0.7647058963775635,
        0.6039215922355652,
        0.529411792755127,
        0.5843137502670288,
        0.7215686440467834,
        0.6509804129600525,
        0.37254902720451355,
        0.15294118225574493,
        0.03921568766236305,
        0.003921568859368563,
        0.003921568859368563,
        0.0941176488995552,
        0.3333333432674408,
        0.6274510025978088,
        0.8901960849761963,
        0.8941176533699036,
        0.6549019813537598,
        0.48235294222831726,
        0.43529412150382996,
        0.5529412031173706,
        0.800000011920929,
        0.8039215803146362,
        0.5411764979362488,
        0.27450981736183167,
        0.07450980693101883,
        0.003921568859368563,
        0.003921568859368563,
        0.07058823853731155,
        0.25882354378700256,
        0.5372549295425415,
        0.8274509906768799,
        0.7686274647712708,
        0.3803921639919281,
        0.14901961386203766,
        0.12941177189350128,
        0.27450981736183167,
        0.5803921818733215,
        0.7058823704719543,
        0.6039215922355652,
        0.3843137323856354,
        0.11372549086809158,
        0.007843137718737125,
        0.003921568859368563,
        0.04313725605607033,
        0.16078431904315948,
        0.40392157435417175,
        0.7333333492279053,
        0.7215686440467834,
        0.3764705955982208,
        0.13725490868091583,
        0.05882352963089943,
        0.18431372940540314,
        0.5137255191802979,
        0.6705882549285889,
        0.5921568870544434,
        0.3843137323856354,
        0.11764705926179886,
        0.007843137718737125,
        0.0,
        0.0117647061124444,
        0.05098039284348488,
        0.24313725531101227,
        0.6000000238418579,
        0.7490196228027344,
        0.6431372761726379,
        0.4627451002597809,
        0.2666666805744171,
        0.3294117748737335,
        0.6392157077789307,
        0.7137255072593689,
        0.5098039507865906,
        0.27843138575553894,
        0.08235294371843338,
        0.003921568859368563,
        0.0,
        0.0,
        0.007843137718737125,
        0.11372549086809158,
        0.3843137323856354,
        0.615686297416687,
        0.7529411911964417,
        0.7254902124404907,
        0.5647059082984924,
        0.5647059082984924,
        0.7098039388656616,
        0.6470588445663452,
        0.3686274588108063,
        0.1568627506494522,
        0.04313725605607033,
        0.003921568859368563,
        0.0,
        0.0,
        0.0,
        0.0313725508749485,
        0.12941177189350128,
        0.3490196168422699,
        0.6745098233222961,
        0.8549019694328308,
        0.8666666746139526,
        0.8156862854957581,
        0.7019608020782471,
        0.48235294222831726,
        0.19607843458652496,
        0.0470588244497776,
        0.0117647061124444,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.01568627543747425,
        0.21176470816135406,
        0.6196078658103943,
        0.9098039269447327,
        0.9921568632125854,
        0.9333333373069763,
        0.6941176652908325,
        0.3921568691730499,
        0.10588235408067703,
        0.003921568859368563,
        0.0,
        0.0,
    ],
]
# Opening brackets in one row of a request's JSON: 1 for a row of numbers, more for nested rows.
ROW_OPENER = b"["
OPENERS_PER_ROW = 1
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
    """Everything the service reads from its environment."""

    model_filepath: Path
    label_filepath: Path
    max_rows: int
    max_body_bytes: int
    max_body_bytes_in_flight: int
    onnx_threads: int
    offload_inference: bool
    fast_path: bool
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a bad value is a SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        models = PROJECT_ROOT / "models"
        return cls(
            model_filepath=Path(env.get("MODEL_FILEPATH", models / MODEL_FILE_NAME)),
            label_filepath=Path(env.get("LABEL_FILEPATH", models / LABEL_FILE_NAME)),
            max_rows=positive_int(env, "MAX_ROWS", 100),
            max_body_bytes=positive_int(env, "MAX_BODY_BYTES", 1048576),
            max_body_bytes_in_flight=positive_int(
                env, "MAX_BODY_BYTES_IN_FLIGHT", BODY_BYTES_IN_FLIGHT
            ),
            onnx_threads=positive_int(env, "ONNX_THREADS", 1),
            offload_inference=_flag(env, "OFFLOAD_INFERENCE", False),
            fast_path=_flag(env, "FAST_PATH", True),
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
        )


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
