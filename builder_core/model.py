"""The model a service serves: its files, its real signature, and the variables that describe it.

Variables that describe the model (dtypes, shapes, samples) are checked against the ONNX file, or
filled in from it when the user left them out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from builder_core.errors import ModelFileError, VariablesError
from builder_core.onnx_info import ModelSignature, OnnxFormatError, TensorInfo, read_signature
from builder_core.variables import DType, Variables

SUPPORTED_DTYPES = frozenset(get_args(DType))
FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})


@dataclass(frozen=True)
class ServedModel:
    """What the templates need to know about the model, read from its files."""

    model_path: Path
    label_path: Path
    signature: ModelSignature
    input: TensorInfo
    output: TensorInfo
    labels: tuple[str, ...]

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one request row: the input's shape without the batch dimension."""
        return tuple(dim or 0 for dim in self.input.shape[1:])


def load_model(model_path: Path, label_path: Path) -> ServedModel:
    """Read the model's signature and labels, and pick the tensors the service uses."""
    try:
        signature = read_signature(model_path)
    except OnnxFormatError as err:
        raise ModelFileError(str(err)) from err
    except OSError as err:
        raise ModelFileError(f"{model_path}: cannot read the model: {err.strerror or err}") from err
    labels = read_labels(label_path)
    model_input = _single_input(signature, model_path)
    output = _prediction_output(signature, model_path, len(labels))
    return ServedModel(model_path, label_path, signature, model_input, output, labels)


def read_labels(path: Path) -> tuple[str, ...]:
    """Read ``{"0": "setosa", ...}`` (the book's format) or a JSON list of label names."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: label file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: cannot read the labels: {err}") from err
    if isinstance(raw, dict):
        expected = [str(index) for index in range(len(raw))]
        if sorted(raw, key=lambda key: (len(key), key)) != expected:
            raise ModelFileError(f'{path}: label keys must be "0" to "{len(raw) - 1}"')
        raw = [raw[key] for key in expected]
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
        raise ModelFileError(
            f'{path}: expected a JSON object {{"0": "name", ...}} or a list of names'
        )
    return tuple(raw)


def _single_input(signature: ModelSignature, path: Path) -> TensorInfo:
    if len(signature.inputs) != 1:
        names = ", ".join(tensor.name for tensor in signature.inputs)
        raise ModelFileError(f"{path}: the service takes one input tensor; the model has {names}")
    tensor = signature.inputs[0]
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise ModelFileError(
            f"{path}: input {tensor.name!r} has dtype {tensor.dtype}; numbers only"
        )
    if len(tensor.shape) < 2 or any(dim is None for dim in tensor.shape[1:]):
        raise ModelFileError(
            f"{path}: input {tensor.name!r} has shape {_show(tensor.shape)}; the service needs a "
            "batch dimension followed by fixed dimensions, such as (None, 4)"
        )
    return tensor


def _prediction_output(signature: ModelSignature, path: Path, n_labels: int) -> TensorInfo:
    """Prefer the (batch, classes) float output; skl2onnx classifiers also emit a label tensor."""
    candidates = [
        tensor
        for tensor in signature.outputs
        if tensor.dtype in FLOAT_DTYPES and len(tensor.shape) == 2
    ]
    for tensor in candidates:
        if tensor.shape[1] == n_labels:
            return tensor
    if candidates:
        found = ", ".join(f"{t.name} {_show(t.shape)}" for t in candidates)
        raise ModelFileError(f"{path}: {n_labels} labels, but the model's scores are {found}")
    raise ModelFileError(
        f"{path}: no output of shape (batch, classes) with float scores; export the classifier "
        "with probabilities (for skl2onnx: options={'zipmap': False})"
    )


def _show(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if dim is None else str(dim) for dim in shape) + ")"


def describe(variables: Variables, model: ServedModel, source: str) -> Variables:
    """Check the model-describing variables against the model; fill in those left out."""
    row_shape = model.row_shape
    classes = model.output.shape[1] or len(model.labels)
    updates: dict[str, Any] = {
        "data_type": _check_dtype(variables.data_type, model.input, "data_type", source),
        "prediction_type": _check_dtype(
            variables.prediction_type, model.output, "prediction_type", source
        ),
        "data_structure": _check_shape(
            variables.data_structure, (1, *row_shape), model.input.shape, "data_structure", source
        ),
        "prediction_structure": _check_shape(
            variables.prediction_structure,
            (1, classes),
            model.output.shape,
            "prediction_structure",
            source,
        ),
    }
    sample = variables.data_sample or [_zeros(row_shape)]
    updates["data_sample"] = _check_rows(sample, row_shape, "data_sample", source)
    if variables.prediction_sample is not None:
        rows = variables.prediction_sample
        if rows and not isinstance(rows[0], list):
            rows = [rows]
        updates["prediction_sample"] = _check_rows(rows, (classes,), "prediction_sample", source)
        if len(updates["prediction_sample"]) != len(updates["data_sample"]):
            raise VariablesError(
                f"{source}: prediction_sample: expected one row per data_sample row "
                f"({len(updates['data_sample'])})"
            )
    return variables.model_copy(update=updates)


def _check_dtype(value: str | None, tensor: TensorInfo, key: str, source: str) -> str:
    if value is not None and value != tensor.dtype:
        raise VariablesError(
            f"{source}: {key}: {value} does not match the dtype of the model's {tensor.name!r}: "
            f"{tensor.dtype}"
        )
    return tensor.dtype


def _check_shape(
    value: tuple[int | None, ...] | None,
    default: tuple[int, ...],
    model_shape: tuple[int | None, ...],
    key: str,
    source: str,
) -> tuple[int | None, ...]:
    if value is None:
        return default
    fits = len(value) == len(model_shape) and all(
        want is None or have is None or want == have
        for want, have in zip(model_shape, value, strict=True)
    )
    if not fits:
        raise VariablesError(
            f"{source}: {key}: {_show(value)} does not match the model's shape {_show(model_shape)}"
        )
    return value


def _zeros(shape: tuple[int, ...]) -> Any:
    if not shape:
        return 0.0
    return [_zeros(shape[1:]) for _ in range(shape[0])]


def _check_rows(rows: list[Any], row_shape: tuple[int, ...], key: str, source: str) -> list[Any]:
    """Each row must be nested lists of finite numbers exactly ``row_shape`` deep and wide."""
    for index, row in enumerate(rows):
        problem = _shape_problem(row, row_shape)
        if problem:
            raise VariablesError(
                f"{source}: {key}[{index}]: {problem} (each row must have shape {_show(row_shape)})"
            )
    return rows


def _shape_problem(value: Any, shape: tuple[int, ...]) -> str | None:
    if not shape:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if not isinstance(value, list) or len(value) != shape[0]:
        size = len(value) if isinstance(value, list) else "not a list"
        return f"expected {shape[0]} values, got {size}"
    for item in value:
        problem = _shape_problem(item, shape[1:])
        if problem:
            return problem
    return None
