"""The model a service serves: its files, its real signature, its task and its labels.

The signature decides the service. Inputs: one or more named tensors of numbers, booleans or
strings, each with a free batch dimension and fixed other dimensions. A model with one input takes
rows (``{"data": [[...], ...]}``), a model with several takes records keyed by input name. The
task is read from the outputs where it can be (a score output with labels, or a ZipMap: a
classifier; a single float output of one value per row: a regressor; anything else: raw outputs
by name) and can be set with the ``task`` variable.

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
from builder_core.variables import DType, Task, Variables

SUPPORTED_DTYPES = frozenset(get_args(DType))
FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
INTEGER_DTYPES = SUPPORTED_DTYPES - FLOAT_DTYPES - {"bool", "string"}
ZIPMAP = "zipmap"


@dataclass(frozen=True)
class ServedModel:
    """What the templates need to know about the model, read from its files."""

    model_path: Path
    label_path: Path | None
    signature: ModelSignature
    inputs: tuple[TensorInfo, ...]
    task: Task
    # The output the task reads: the scores of a classifier, the values of a regressor; for raw
    # outputs the first one (every output is answered).
    output: TensorInfo
    labels: tuple[str, ...]

    @property
    def input(self) -> TensorInfo:
        """The first input (the only one of a rows model)."""
        return self.inputs[0]

    @property
    def records(self) -> bool:
        """Requests are records keyed by input name (several inputs) instead of rows."""
        return len(self.inputs) > 1

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one request row: the input's shape without the batch dimension."""
        return row_shape(self.input)

    @property
    def classes(self) -> int | None:
        """How many classes a classifier scores (None when the model does not say)."""
        if self.task != "classification":
            return None
        return len(self.labels) or (self.output.shape[1] if len(self.output.shape) == 2 else None)


def row_shape(tensor: TensorInfo) -> tuple[int, ...]:
    """One row's shape of ``tensor``: its shape without the batch dimension."""
    return tuple(dim or 0 for dim in tensor.shape[1:])


def load_model(model_path: Path, label_path: Path | None, task: Task | None = None) -> ServedModel:
    """Read the model's signature and labels, and work out what the service does with them."""
    try:
        signature = read_signature(model_path)
    except OnnxFormatError as err:
        raise ModelFileError(str(err)) from err
    except OSError as err:
        raise ModelFileError(f"{model_path}: cannot read the model: {err.strerror or err}") from err
    given = read_labels(label_path) if label_path is not None else ()
    inputs = tuple(_checked_input(tensor, model_path) for tensor in signature.inputs)
    if not inputs:
        raise ModelFileError(f"{model_path}: the model has no inputs")
    for tensor in signature.outputs:
        _check_output(tensor, model_path)
    chosen = task or _task_of(signature, given)
    if chosen == "classification":
        scores = _score_output(signature, model_path)
        labels = _class_labels(signature, scores, given, model_path)
        return ServedModel(model_path, label_path, signature, inputs, chosen, scores, labels)
    if given:
        raise ModelFileError(
            f"{label_path}: labels are for classifiers; the model is served as {chosen} "
            "(set task: classification if it is one)"
        )
    output = _value_output(signature, model_path) if chosen == "regression" else None
    first = output or signature.outputs[0]
    return ServedModel(model_path, label_path, signature, inputs, chosen, first, ())


def with_task(served: ServedModel, task: Task | None) -> ServedModel:
    """``served`` as the ``task`` variable says (unchanged when it says nothing new)."""
    if task is None or task == served.task:
        return served
    try:
        return load_model(served.model_path, served.label_path, task)
    except ModelFileError as err:
        raise VariablesError(f"task: {task}: {err}") from None


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


def _checked_input(tensor: TensorInfo, path: Path) -> TensorInfo:
    if tensor.kind != "tensor":
        raise ModelFileError(f"{path}: input {tensor.name!r} is not a tensor ({tensor.kind})")
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise ModelFileError(
            f"{path}: input {tensor.name!r} has dtype {tensor.dtype}; the service takes numbers, "
            "booleans and strings"
        )
    if not tensor.shape or any(dim is None for dim in tensor.shape[1:]):
        raise ModelFileError(
            f"{path}: input {tensor.name!r} has shape {_show(tensor.shape)}; the service needs a "
            "batch dimension followed by fixed dimensions, such as (None, 4)"
        )
    return tensor


def _check_output(tensor: TensorInfo, path: Path) -> None:
    if tensor.kind == ZIPMAP:
        return
    if tensor.dtype not in SUPPORTED_DTYPES:
        raise ModelFileError(
            f"{path}: output {tensor.name!r} has dtype {tensor.dtype}, which JSON cannot carry"
        )


def _is_scores(tensor: TensorInfo) -> bool:
    return tensor.kind == ZIPMAP or (tensor.dtype in FLOAT_DTYPES and len(tensor.shape) == 2)


def _is_label_tensor(tensor: TensorInfo) -> bool:
    return (
        tensor.kind == "tensor" and tensor.dtype in {"int64", "string"} and len(tensor.shape) == 1
    )


def _task_of(signature: ModelSignature, labels: tuple[str, ...]) -> Task:
    outputs = signature.outputs
    if any(tensor.kind == ZIPMAP for tensor in outputs):
        return "classification"
    has_scores = any(_is_scores(tensor) for tensor in outputs)
    if has_scores and (labels or signature.class_labels or any(map(_is_label_tensor, outputs))):
        return "classification"
    if len(outputs) == 1 and _is_value(outputs[0]):
        return "regression"
    return "raw"


def _is_value(tensor: TensorInfo) -> bool:
    """One float per row: shape (batch,) or (batch, 1)."""
    shape = tensor.shape
    return (
        tensor.kind == "tensor"
        and tensor.dtype in FLOAT_DTYPES
        and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
    )


def _score_output(signature: ModelSignature, path: Path) -> TensorInfo:
    """The probabilities: a ZipMap output, else the (batch, classes) float output."""
    zipmaps = [tensor for tensor in signature.outputs if tensor.kind == ZIPMAP]
    if zipmaps:
        return zipmaps[0]
    candidates = [tensor for tensor in signature.outputs if _is_scores(tensor)]
    if not candidates:
        raise ModelFileError(
            f"{path}: no output of shape (batch, classes) with float scores, nor a ZipMap: "
            "nothing to read class scores from"
        )
    return candidates[0]


def _value_output(signature: ModelSignature, path: Path) -> TensorInfo:
    values = [tensor for tensor in signature.outputs if _is_value(tensor)]
    if len(signature.outputs) != 1 or not values:
        found = ", ".join(f"{t.name} {t.dtype} {_show(t.shape)}" for t in signature.outputs)
        raise ModelFileError(
            f"{path}: a regressor has one float output of shape (batch,) or (batch, 1); the "
            f"model has {found}"
        )
    return values[0]


def _class_labels(
    signature: ModelSignature, scores: TensorInfo, given: tuple[str, ...], path: Path
) -> tuple[str, ...]:
    """The label file's names, else the classes the model declares, else "0", "1", ..."""
    declared = len(signature.class_labels) or None
    width = scores.shape[1] if scores.kind == "tensor" else None
    classes = width or declared
    if given:
        if classes is not None and len(given) != classes:
            raise ModelFileError(
                f"{path}: {len(given)} labels, but the model's scores {scores.name!r} have "
                f"{classes} classes"
            )
        return given
    if signature.class_labels:
        return signature.class_labels
    if classes is None:
        raise ModelFileError(
            f"{path}: the model does not say how many classes {scores.name!r} scores; give the "
            "labels (--labels PATH.json)"
        )
    return tuple(str(index) for index in range(classes))


def _show(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if dim is None else str(dim) for dim in shape) + ")"


def labels_json(served: ServedModel) -> bytes:
    """The label file a service ships when the user gave none: ``{"0": name, ...}``."""
    mapping = {str(index): label for index, label in enumerate(served.labels)}
    return (json.dumps(mapping, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def describe(variables: Variables, model: ServedModel, source: str) -> Variables:
    """Check the model-describing variables against the model; fill in those left out."""
    first = model.input
    updates: dict[str, Any] = {
        "data_type": _check_dtype(variables.data_type, first, "data_type", source),
        "prediction_type": _check_dtype(
            variables.prediction_type, model.output, "prediction_type", source
        ),
        "data_structure": _check_shape(
            variables.data_structure, (1, *model.row_shape), first.shape, "data_structure", source
        ),
        "prediction_structure": _check_shape(
            variables.prediction_structure,
            (1, *_prediction_row(model)),
            _prediction_shape(model),
            "prediction_structure",
            source,
        ),
        "task": model.task,
    }
    updates["data_sample"] = _data_sample(variables.data_sample, model, source)
    if variables.prediction_sample is not None:
        updates["prediction_sample"] = _prediction_sample(
            variables.prediction_sample, model, len(updates["data_sample"]), source
        )
    return variables.model_copy(update=updates)


def _prediction_row(model: ServedModel) -> tuple[int, ...]:
    if model.task == "classification":
        return (model.classes or 0,)
    return row_shape(model.output)


def _prediction_shape(model: ServedModel) -> tuple[int | None, ...]:
    if model.output.kind == ZIPMAP:
        return (None, model.classes)
    return model.output.shape


def _data_sample(sample: list[Any] | None, model: ServedModel, source: str) -> list[Any]:
    if sample is None:
        strings = [tensor.name for tensor in model.inputs if tensor.dtype == "string"]
        if strings:
            raise VariablesError(
                f"{source}: data_sample: required for a model with string inputs "
                f"({', '.join(strings)}): the service tests itself with it at start-up"
            )
        example = _example_record(model) if model.records else _zeros(model.row_shape, model.input)
        sample = [example]
    if model.records:
        return _check_records(sample, model.inputs, "data_sample", source)
    return _check_rows(sample, model.row_shape, model.input.dtype, "data_sample", source)


def _example_record(model: ServedModel) -> dict[str, Any]:
    return {tensor.name: _scalar_or_rows(tensor) for tensor in model.inputs}


def _scalar_or_rows(tensor: TensorInfo) -> Any:
    return _zeros(record_shape(tensor), tensor)


def record_shape(tensor: TensorInfo) -> tuple[int, ...]:
    """The shape of one record's value for ``tensor``: a scalar for (batch,) and (batch, 1)."""
    shape = row_shape(tensor)
    return () if shape in ((), (1,)) else shape


def _zero_of(dtype: str) -> Any:
    if dtype == "bool":
        return False
    return 0.0 if dtype in FLOAT_DTYPES else 0


def _zeros(shape: tuple[int, ...], first: TensorInfo) -> Any:
    if not shape:
        return _zero_of(first.dtype)
    return [_zeros(shape[1:], first) for _ in range(shape[0])]


def _prediction_sample(
    rows: list[Any], model: ServedModel, expected: int, source: str
) -> list[Any]:
    if model.task != "classification":
        raise VariablesError(
            f"{source}: prediction_sample: only checked for classifiers (scores per row); the "
            f"model is served as {model.task}"
        )
    if rows and not isinstance(rows[0], list):
        rows = [rows]
    checked = _check_rows(rows, (model.classes or 0,), "float32", "prediction_sample", source)
    if len(checked) != expected:
        raise VariablesError(
            f"{source}: prediction_sample: expected one row per data_sample row ({expected})"
        )
    return checked


def _check_dtype(value: str | None, tensor: TensorInfo, key: str, source: str) -> str | None:
    if tensor.kind != "tensor":
        return None if value is None else _mismatch(value, tensor, key, source)
    if value is not None and value != tensor.dtype:
        _mismatch(value, tensor, key, source)
    return tensor.dtype


def _mismatch(value: str, tensor: TensorInfo, key: str, source: str) -> str:
    raise VariablesError(
        f"{source}: {key}: {value} does not match the dtype of the model's {tensor.name!r}: "
        f"{tensor.dtype}"
    )


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


def _check_rows(
    rows: list[Any], shape: tuple[int, ...], dtype: str, key: str, source: str
) -> list[Any]:
    """Each row must be nested lists of values of ``dtype`` exactly ``shape`` deep and wide."""
    for index, row in enumerate(rows):
        problem = _shape_problem(row, shape, dtype)
        if problem:
            raise VariablesError(
                f"{source}: {key}[{index}]: {problem} (each row must have shape {_show(shape)})"
            )
    return rows


def _check_records(
    records: list[Any], inputs: tuple[TensorInfo, ...], key: str, source: str
) -> list[Any]:
    """Each record must map every input name, and only those, to a value of its shape."""
    names = [tensor.name for tensor in inputs]
    for index, record in enumerate(records):
        where = f"{source}: {key}[{index}]"
        if not isinstance(record, dict):
            raise VariablesError(f"{where}: expected a record {{{', '.join(names)}}}")
        unknown = sorted(set(record) - set(names))
        missing = [name for name in names if name not in record]
        if unknown or missing:
            what = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
            raise VariablesError(f"{where}: {what} (the model's inputs: {', '.join(names)})")
        for tensor in inputs:
            problem = _shape_problem(record[tensor.name], record_shape(tensor), tensor.dtype)
            if problem:
                raise VariablesError(f"{where}.{tensor.name}: {problem}")
    return records


def _shape_problem(value: Any, shape: tuple[int, ...], dtype: str) -> str | None:
    if not shape:
        return _value_problem(value, dtype)
    if not isinstance(value, list) or len(value) != shape[0]:
        size = len(value) if isinstance(value, list) else "not a list"
        return f"expected {shape[0]} values, got {size}"
    for item in value:
        problem = _shape_problem(item, shape[1:], dtype)
        if problem:
            return problem
    return None


def _value_problem(value: Any, dtype: str) -> str | None:
    if dtype == "string":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if dtype == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    if dtype in INTEGER_DTYPES and not isinstance(value, int):
        return f"{value!r} is not an integer"
    return None if math.isfinite(value) else f"{value!r} is not a finite number"
