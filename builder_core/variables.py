"""The typed variables of a service, loaded from ``vars.yaml``.

The book's spellings stay valid input (``data_structure: (1,4)`` as a string); inside, every value
has a real type. Errors name the file and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from builder_core import safe_yaml
from builder_core.errors import PackagingError, VariablesError

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
IMAGE_REPOSITORY = re.compile(
    r"[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
)
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# repository[:tag][@sha256:digest], as docker and Kubernetes take it.
IMAGE_REFERENCE = re.compile(
    rf"{IMAGE_REPOSITORY.pattern}(:{IMAGE_TAG.pattern})?(@sha256:[0-9a-f]{{64}})?"
)
QUANTITY_CPU = re.compile(r"([1-9][0-9]{0,5}m|[0-9]{1,4}(\.[0-9]{1,3})?)")
QUANTITY_MEMORY = re.compile(r"[1-9][0-9]{0,6}(Ki|Mi|Gi|Ti)")
REDIS_SIZE = re.compile(r"[1-9][0-9]{0,9}(b|kb|mb|gb|k|m|g)?", re.IGNORECASE)
VERSION_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# A column name that Spark SQL, PostgreSQL and Python all take unquoted.
COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A comma-separated list of short DNS-1123 labels (a pattern's backend names: they go into
# Kubernetes object names after the service's, which must stay within 63 characters).
NAME = r"[a-z]([-a-z0-9]{0,18}[a-z0-9])?"
NAMES = re.compile(rf"{NAME}(,{NAME}){{0,15}}")
# A cron schedule of five fields (minute hour day-of-month month day-of-week), as CronJobs take.
CRON_RANGE = r"[0-9]{1,2}(-[0-9]{1,2})?(/[0-9]{1,2})?"
CRON_FIELD = rf"(\*(/[0-9]{{1,2}})?|{CRON_RANGE})(,{CRON_RANGE})*"
CRON = re.compile(rf"{CRON_FIELD}( {CRON_FIELD}){{4}}")
# A path inside a data store: plain names joined by "/", never "..", never absolute.
DATA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,15}")
# The characters a URI may hold here: RFC 3986's, less those that mean something to a shell inside
# double quotes, to make, to compose's interpolation or to Markdown ($ ` " ' \\ # < > { } | ^ and
# spaces). Percent-encode anything else.
URI_CHARS = r"[A-Za-z0-9._~%/:@?&=+,;!*()\[\]-]"
MODEL_URI = re.compile(rf"(file|https?|s3|gs)://{URI_CHARS}{{1,2048}}")
REDIS_URL = re.compile(
    r"rediss?://([A-Za-z0-9._~%-]*(:[A-Za-z0-9._~%-]*)?@)?[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?"
    r"(/[0-9]{1,2})?"
)
# What a pattern variable of type "token" may hold: safe in every file a value can land in.
TOKEN = re.compile(rf"{URI_CHARS}{{0,256}}")
TEXT_MAX = 500
# One line of errors stays readable: a file of 25,000 unknown keys names the first few.
MAX_PROBLEMS_SHOWN = 10


# What a service does with the model's outputs (builder_core.model).
Task = Literal["classification", "regression", "raw"]
DType = Literal[
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "string",
]


def _dns_label(value: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters)"
        )
    return value


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """The whole value must match: ``fullmatch``, so a trailing newline is no loophole."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _one_line_text(value: str) -> str:
    """Free text for a README line: printable, of a sensible length."""
    return _free_text(value, line_breaks="")


def _paragraph_text(value: str) -> str:
    """Free text that may run over several lines (a YAML block scalar), but holds no controls."""
    return _free_text(value, line_breaks="\n\r\t")


def _free_text(value: str, line_breaks: str) -> str:
    if len(value) > TEXT_MAX:
        raise ValueError(f"at most {TEXT_MAX} characters (got {len(value)})")
    bad = next((c for c in value if not c.isprintable() and c not in line_breaks), None)
    if bad is not None:
        kind = "printable text" if line_breaks else "one line of printable text"
        raise ValueError(f"{kind}; {bad!r} is not allowed")
    return value


def _parse_shape(value: Any) -> Any:
    """Accept the book's ``"(1,4)"`` string or a YAML list; ``None``, ``-1`` or ``?`` is free."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.startswith(("(", "[")) and text.endswith((")", "]"))):
            raise ValueError(f"{value!r} is not a shape such as (1,4)")
        parts = [part.strip() for part in text[1:-1].split(",") if part.strip()]
        value = [part for part in parts]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("expected a non-empty shape such as (1,4)")
    return tuple(_parse_dim(dim) for dim in value)


def _parse_dim(dim: Any) -> int | None:
    if dim is None or dim in ("None", "?", "-1", -1):
        return None
    if isinstance(dim, bool):
        raise ValueError(f"{dim!r} is not a dimension")
    try:
        number = int(dim)
    except (TypeError, ValueError):
        raise ValueError(f"{dim!r} is not a dimension (a positive integer or None)") from None
    if number < 1 or str(number) != str(dim).strip():
        raise ValueError(f"{dim!r} is not a dimension (a positive integer or None)")
    return number


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("samples must be finite numbers")
    return value


Shape = Annotated[tuple[int | None, ...], BeforeValidator(_parse_shape)]
FiniteFloat = Annotated[float, Field(strict=True), AfterValidator(_finite)]
Sample = Annotated[list[Any], Field(min_length=1)]
FileName = Annotated[str, _matches(FILE_NAME, "a plain file name (letters, digits, '.', '_', '-')")]
CpuQuantity = Annotated[str, _matches(QUANTITY_CPU, "a CPU quantity such as 250m or 1")]
MemoryQuantity = Annotated[str, _matches(QUANTITY_MEMORY, "a memory quantity such as 256Mi")]
Text = Annotated[str, AfterValidator(_paragraph_text)]


def _file_name_with(suffix: str) -> Any:
    return Annotated[FileName, AfterValidator(lambda v: _suffix(v, suffix))]


# The types a pattern's variables may declare in pattern.yaml (``type:``), by name. Each refuses
# what could change the meaning of a file the value lands in, so junk fails at validation.
VARIABLE_TYPES: dict[str, tuple[re.Pattern[str] | None, str]] = {
    "token": (TOKEN, "a value of letters, digits and URI punctuation (no spaces, quotes or $)"),
    "text": (None, "one line of text"),
    "file_name": (FILE_NAME, "a plain file name (letters, digits, '.', '_', '-')"),
    "onnx_file_name": (FILE_NAME, "a plain file name ending with .onnx"),
    "data_id": (DATA_ID, "a relative path of plain names inside the data store"),
    "model_uri": (
        MODEL_URI,
        "a file://, http(s)://, s3:// or gs:// URI (percent-encode spaces, quotes and $)",
    ),
    "redis_url": (REDIS_URL, "a redis:// or rediss:// URL such as redis://redis:6379/0"),
    "image": (IMAGE_REFERENCE, "an image reference such as redis:7.2-bookworm"),
    "version": (VERSION_LABEL, "a version label such as v1.2.0 (letters, digits, '.', '_', '-')"),
    "sha256": (SHA256, "a sha256 of 64 lower-case hex digits"),
    "column": (COLUMN, "a lower-case column name (letters, digits and '_', not first a digit)"),
    "cron": (CRON, "a cron schedule of five fields such as '15 2 * * *'"),
    "memory": (QUANTITY_MEMORY, "a memory quantity such as 256Mi"),
    "redis_size": (REDIS_SIZE, "a Redis memory size such as 256mb"),
    "names": (
        NAMES,
        "1 to 16 names separated by commas, each of lower-case letters, digits and '-' (starting "
        "with a letter, at most 20 characters)",
    ),
}


def typed_string(type_name: str, *, allow_empty: bool) -> Any:
    """The annotated ``str`` type of a pattern variable declared as ``type_name``."""
    pattern, what = VARIABLE_TYPES[type_name]

    def check(value: str) -> str:
        if value == "" and allow_empty:
            return value
        if pattern is None:
            return _one_line_text(value)
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        if type_name == "onnx_file_name":
            _suffix(value, ".onnx")
        if type_name == "names":
            names = value.split(",")
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{value!r} names {', '.join(repeated)} more than once")
        return value

    return Annotated[str, AfterValidator(check)]


class Variables(BaseModel):
    """Everything a template may use, with its default; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    name: Annotated[str, AfterValidator(_dns_label)]
    description: Text = "An ML inference service."
    model_file_name: _file_name_with(".onnx") = "model.onnx"  # type: ignore[valid-type]
    label_file_name: _file_name_with(".json") = "label.json"  # type: ignore[valid-type]
    data_type: DType | None = None
    data_structure: Shape | None = None
    data_sample: Sample | None = None
    prediction_type: DType | None = None
    prediction_structure: Shape | None = None
    prediction_sample: Sample | None = None
    # What the service does with the model's outputs; read from the model when left out.
    task: Task | None = None
    port: int = Field(8000, ge=1024, le=65535)
    workers: int = Field(2, ge=1, le=64)
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    timeout_seconds: int = Field(30, ge=1, le=3600)
    offload_inference: bool = False
    # Adaptive batching in the generated service: 0 is off.
    batch_max_size: int = Field(0, ge=0, le=4096)
    batch_max_delay_ms: float = Field(5.0, gt=0, le=1000)
    # The Open Inference Protocol over gRPC in the generated service: 0 is off.
    grpc_port: int = Field(8001, ge=0, le=65535)
    image_repository: Annotated[str, _matches(IMAGE_REPOSITORY, "an image repository")] | None = (
        None
    )
    image_tag: Annotated[str, _matches(IMAGE_TAG, "an image tag")] = "0.1.0"
    min_replicas: int = Field(2, ge=1, le=1000)
    max_replicas: int = Field(6, ge=1, le=1000)
    target_cpu_utilization: int = Field(70, ge=1, le=100)
    cpu_request: CpuQuantity = "250m"
    cpu_limit: CpuQuantity = "1"
    memory_request: MemoryQuantity = "256Mi"
    memory_limit: MemoryQuantity = "512Mi"

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Variables:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self

    @model_validator(mode="after")
    def _grpc_port_apart(self) -> Variables:
        if self.grpc_port and self.grpc_port < 1024:
            raise ValueError(f"grpc_port ({self.grpc_port}) must be 0 (off) or 1024 to 65535")
        if self.grpc_port == self.port:
            raise ValueError(f"grpc_port and port are both {self.port}: give gRPC its own port")
        return self

    @property
    def image(self) -> str:
        """The image reference the Dockerfile builds and the manifests run."""
        return f"{self.image_repository or self.name}:{self.image_tag}"


def _suffix(value: str, suffix: str) -> str:
    if not value.endswith(suffix):
        raise ValueError(f"{value!r} must end with {suffix}")
    return value


def read_mapping_file(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file.

    :mod:`builder_core.safe_yaml` reads it: a file too large, too deep or with duplicate keys or
    aliases is refused, in one line.
    """
    try:
        text = safe_yaml.read_text(path)
    except FileNotFoundError:
        raise VariablesError(f"{path}: {what} not found") from None
    except safe_yaml.FileTooLargeError as err:
        raise VariablesError(f"{path}: {what} {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise VariablesError(f"{path}: cannot read {what}: {err}") from err
    try:
        data = safe_yaml.load(text)
    except yaml.YAMLError as err:
        line, problem = safe_yaml.describe(err)
        where = f" (line {line})" if line is not None else ""
        raise VariablesError(f"{path}{where}: invalid YAML: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VariablesError(
            f"{path}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def variables_model(extra: Mapping[str, Any]) -> type[Variables]:
    """:class:`Variables` plus a pattern's own variables.

    ``extra`` maps each name to its default, or to a :class:`VariableSpec` with its type. A
    string variable with no declared type is a ``token``: nothing that a shell, make, compose or
    Markdown would read as syntax.
    """
    if not extra:
        return Variables
    clash = sorted(set(extra) & set(Variables.model_fields))
    if clash:
        raise PackagingError(f"pattern variables {clash} clash with the common variables")
    fields: dict[str, Any] = {key: _field(spec) for key, spec in extra.items()}
    model: type[Variables] = create_model("PatternVariables", __base__=Variables, **fields)
    return model


class VariableSpec(BaseModel):
    """A pattern variable declared with its type: ``{default: ..., type: ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str | bool | int | float
    type: Literal[
        "token", "text", "file_name", "onnx_file_name", "data_id", "model_uri", "redis_url",
        "image", "version", "sha256", "memory", "redis_size", "column", "cron", "names",
    ] | None = None  # fmt: skip
    # The values a string may take (its type still applies).
    choices: list[str] | None = None
    # Bounds of a number.
    ge: int | None = None
    le: int | None = None


def _field(spec: Any) -> tuple[Any, Any]:
    if not isinstance(spec, VariableSpec):
        spec = VariableSpec(default=spec)
    default = spec.default
    if isinstance(default, str):
        annotation = typed_string(spec.type or "token", allow_empty=default == "")
        if spec.choices:
            if default not in spec.choices:
                raise PackagingError(f"default {default!r} is not one of {spec.choices}")
            annotation = Annotated[annotation, AfterValidator(_one_of(spec.choices))]
        return annotation, default
    if spec.type is not None:
        raise PackagingError(f"type {spec.type!r} is for strings, but the default is {default!r}")
    if isinstance(default, bool):
        return bool, default
    if isinstance(default, int):
        bounds = Field(ge=spec.ge if spec.ge is not None else 0, le=spec.le or 10**12)
        return Annotated[int, bounds], default
    return Annotated[float, Field(allow_inf_nan=False)], default


def _one_of(choices: list[str]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def validate_variables(
    raw: dict[str, Any], source: str, model: type[Variables] = Variables
) -> Variables:
    """Validate ``raw`` into ``model``; every problem is named ``source: key: message``."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise VariablesError(format_validation_error(err, source)) from err


def check_name(value: str, source: str) -> str:
    """A service name from ``source`` (such as ``--name``), or a VariablesError naming it."""
    try:
        return _dns_label(value)
    except ValueError as err:
        raise VariablesError(f"{source}: {err}") from None


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: ``source: key: problem`` for each problem, joined with ``; ``."""
    problems = []
    errors = err.errors()
    for item in errors[:MAX_PROBLEMS_SHOWN]:
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelled?)"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{key}: {message}")
    if len(errors) > MAX_PROBLEMS_SHOWN:
        problems.append(f"and {len(errors) - MAX_PROBLEMS_SHOWN} more problems")
    return f"{source}: " + "; ".join(problems)
