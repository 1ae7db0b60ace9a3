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

from builder_core.errors import PackagingError, VariablesError

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]+([._-]+[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$"
)
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
QUANTITY_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
QUANTITY_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi)$")

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
]


def _dns_label(value: str) -> str:
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters)"
        )
    return value


def _matches(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


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
FileName = Annotated[str, _matches(FILE_NAME, "a plain file name")]
CpuQuantity = Annotated[str, _matches(QUANTITY_CPU, "a CPU quantity such as 250m or 1")]
MemoryQuantity = Annotated[str, _matches(QUANTITY_MEMORY, "a memory quantity such as 256Mi")]


class Variables(BaseModel):
    """Everything a template may use, with its default; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    name: Annotated[str, AfterValidator(_dns_label)]
    description: str = "An ML inference service."
    model_file_name: Annotated[FileName, AfterValidator(lambda v: _suffix(v, ".onnx"))] = (
        "model.onnx"
    )
    label_file_name: Annotated[FileName, AfterValidator(lambda v: _suffix(v, ".json"))] = (
        "label.json"
    )
    data_type: DType | None = None
    data_structure: Shape | None = None
    data_sample: Sample | None = None
    prediction_type: DType | None = None
    prediction_structure: Shape | None = None
    prediction_sample: Sample | None = None
    port: int = Field(8000, ge=1024, le=65535)
    workers: int = Field(2, ge=1, le=64)
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    timeout_seconds: int = Field(30, ge=1, le=3600)
    offload_inference: bool = False
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

    @property
    def image(self) -> str:
        """The image reference the Dockerfile builds and the manifests run."""
        return f"{self.image_repository or self.name}:{self.image_tag}"


def _suffix(value: str, suffix: str) -> str:
    if not value.endswith(suffix):
        raise ValueError(f"{value!r} must end with {suffix}")
    return value


def read_mapping_file(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VariablesError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise VariablesError(f"{path}: cannot read {what}: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise VariablesError(f"{path}{where}: invalid YAML: {problem}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VariablesError(
            f"{path}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def variables_model(extra: Mapping[str, str | bool | int | float]) -> type[Variables]:
    """:class:`Variables` plus a pattern's own variables, typed by their defaults."""
    if not extra:
        return Variables
    clash = sorted(set(extra) & set(Variables.model_fields))
    if clash:
        raise PackagingError(f"pattern variables {clash} clash with the common variables")
    fields: dict[str, Any] = {key: (type(default), default) for key, default in extra.items()}
    model: type[Variables] = create_model("PatternVariables", __base__=Variables, **fields)
    return model


def validate_variables(
    raw: dict[str, Any], source: str, model: type[Variables] = Variables
) -> Variables:
    """Validate ``raw`` into ``model``; every problem is named ``source: key: message``."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise VariablesError(format_validation_error(err, source)) from err


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: ``source: key: problem`` for each problem, joined with ``; ``."""
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (misspelled?)"
        elif item["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{key}: {message}")
    return f"{source}: " + "; ".join(problems)
