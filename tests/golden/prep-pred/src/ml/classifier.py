"""An ONNX model: loaded once per worker, then asked for predictions.

The model's task decides what a prediction is: a classifier gives a score per class for every row
(a ZipMap output's maps become those scores, in the model's class order), a regressor one value
per row (or one list of values), and a raw model every output by name. A model with one input
takes rows; a model with several takes records, one value per input name.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

# ONNX Runtime's type strings for the dtypes a service accepts.
ORT_DTYPES: dict[str, Any] = {
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    # ONNX Runtime takes strings as an array of Python objects.
    "tensor(string)": np.object_,
}
# What ONNX Runtime raises for input the model itself refuses (an unknown category, say).
REFUSED_BY_MODEL = (Fail, InvalidArgument, RuntimeException)
# Answers of up to this many values are checked for NaN in Python, larger ones with numpy.
PYTHON_CHECK_VALUES = 256


class ModelLoadError(RuntimeError):
    """The model or its labels cannot be loaded, or the model fails its start-up test."""


class ModelInputError(ValueError):
    """Input that passed validation but that the model refused when it ran: a 4xx, not a 500."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output (``None`` for a free dimension)."""

    name: str
    dtype: str
    shape: list[int | None]


class Classifier:
    """Runs one ONNX model; ``task`` says what its predictions are."""

    def __init__(
        self,
        session: ort.InferenceSession,
        output_name: str,
        labels: list[str],
        model_path: Path,
        task: str = "classification",
    ) -> None:
        self._session = session
        self._inputs = [_spec(arg) for arg in session.get_inputs()]
        self._dtypes = [ORT_DTYPES[arg.type] for arg in session.get_inputs()]
        self._records = len(self._inputs) > 1
        self._all = [output.name for output in session.get_outputs()]
        self._output = _spec(next(o for o in session.get_outputs() if o.name == output_name))
        self._outputs = [output_name]
        self.task = task
        self.labels = labels
        self.model_path = model_path
        self.sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()

    @property
    def input_dtypes(self) -> list[Any]:
        """The numpy dtype of every input, in the model's order."""
        return list(self._dtypes)

    @classmethod
    def load(
        cls,
        model_path: Path,
        label_path: Path,
        output_name: str,
        threads: int,
        task: str = "classification",
    ) -> Classifier:
        """Load the model (and a classifier's labels); any problem is a ModelLoadError."""
        labels = read_labels(label_path) if task == "classification" else []
        options = ort.SessionOptions()
        # Workers give the parallelism; more threads per worker would only contend for the cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises several unrelated types for a bad file
            raise ModelLoadError(f"{model_path}: cannot load the model: {err}") from err
        if output_name not in {output.name for output in session.get_outputs()}:
            raise ModelLoadError(f"{model_path}: the model has no output {output_name!r}")
        return cls(session, output_name, labels, model_path, task)

    def feeds(self, rows: Any) -> dict[str, np.ndarray]:
        """The model's inputs for ``rows`` (validated rows, or records keyed by input name)."""
        if not self._records:
            return {self._inputs[0].name: np.asarray(rows, dtype=self._dtypes[0])}
        count = len(rows)
        return {
            spec.name: np.asarray([row[spec.name] for row in rows], dtype=dtype).reshape(
                count, *(dim or 1 for dim in spec.shape[1:])
            )
            for spec, dtype in zip(self._inputs, self._dtypes, strict=True)
        }

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[Any]:
        """The outputs named (all by default) for ``feeds``; ModelInputError if refused."""
        try:
            return list(self._session.run(outputs or self._all, feeds))
        except REFUSED_BY_MODEL as err:
            raise ModelInputError(f"the model refused the input: {_first_line(err)}") from None

    def predict(self, rows: Any) -> Any:
        """Class scores, values, or every output by name: what the task makes a prediction.

        A row the model gives NaN or an infinity for is refused (ModelInputError naming it).
        """
        answer = self.predict_feeds(self.feeds(rows))
        if self.task == "raw":
            return answer
        return finite(answer, "scores" if self.task == "classification" else "value")

    def predict_feeds(self, feeds: dict[str, np.ndarray]) -> Any:
        """:meth:`predict` for the model's inputs, made already (a batch job builds its own)."""
        if self.task == "raw":
            results = self.run(feeds)
            return {name: jsonable(value) for name, value in zip(self._all, results, strict=True)}
        result = self.run(feeds, self._outputs)[0]
        if self.task == "classification":
            return scores(result)
        values = np.asarray(result)
        return values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_labels(self, rows: Any) -> list[str]:
        """The most likely label of every row."""
        return [self.labels[index] for index in self.predict(rows).argmax(axis=1)]

    def self_test(self, sample: Any) -> None:
        """Run the sample once: a model that cannot answer it must never be reported ready."""
        try:
            answer = self.predict(sample)
        except ModelInputError as err:
            raise ModelLoadError(f"{self.model_path}: start-up test: {err}") from None
        problem = _self_test_problem(self.task, answer, len(sample), len(self.labels))
        if problem:
            raise ModelLoadError(f"{self.model_path}: start-up test: {problem}")

    def metadata(self) -> dict[str, Any]:
        """What an operator needs to tell which model a running service serves."""
        outputs = [_spec(output).__dict__ for output in self._session.get_outputs()]
        return {
            "model_file": self.model_path.name,
            "model_sha256": self.sha256,
            "task": self.task,
            "inputs": [spec.__dict__ for spec in self._inputs],
            "outputs": outputs,
            "labels": self.labels,
            "producer": self._session.get_modelmeta().producer_name,
            "onnxruntime_version": ort.__version__,
        }


def scores(result: Any) -> np.ndarray:
    """Class scores as an array: a ZipMap's maps (all in the model's class order) made rows."""
    if isinstance(result, list):
        return np.asarray([list(row.values()) for row in result], dtype=np.float32)
    return np.asarray(result)


def finite(answer: np.ndarray, what: str) -> np.ndarray:
    """``answer``, unless a row of it holds NaN or an infinity: then ModelInputError naming it.

    Values far outside what a model was trained on (1e38, say) can overflow inside it: that is
    the input's fault, refused like any other, not an answer JSON could only carry as null.
    """
    if answer.dtype.kind != "f" or _all_finite(answer):
        return answer
    rows = ~np.isfinite(answer.reshape(len(answer), -1)).all(axis=1)
    first = int(np.flatnonzero(rows)[0])
    raise ModelInputError(
        f"row {first}: the model gives no finite {what} for these values (they overflow it; "
        "values this far from its training data are refused)"
    )


def _all_finite(answer: np.ndarray) -> bool:
    # A numpy ufunc called on a model's answer costs about 10 µs whatever its size (a quarter of
    # a small request's time in the worker: bench/README.md, "in process"); a small answer is
    # checked faster value by value.
    if answer.size <= PYTHON_CHECK_VALUES:
        return all(map(math.isfinite, answer.ravel().tolist()))
    return bool(np.isfinite(answer).all())


def finite_outputs(results: list[Any]) -> list[Any]:
    """Raw outputs (the V2 protocol's), unless a number in them is NaN or an infinity: then
    ModelInputError naming the row, as :func:`finite` for a prediction."""
    for result in results:
        if isinstance(result, list) and result and isinstance(result[0], dict):
            finite(scores(result), "outputs")
        elif isinstance(result, np.ndarray) and result.ndim:
            finite(result, "outputs")
    return results


def jsonable(result: Any) -> Any:
    """An output as JSON can carry it: strings and ZipMaps as lists, numbers as arrays."""
    if isinstance(result, list):
        return scores(result)
    array = np.asarray(result)
    return array.tolist() if array.dtype == np.object_ else array


def _self_test_problem(task: str, answer: Any, rows: int, labels: int) -> str | None:
    if task == "raw":
        short = [name for name, value in answer.items() if len(value) != rows]
        return f"outputs {', '.join(short)} do not have one entry per row" if short else None
    array = np.asarray(answer)
    expected = (rows, labels) if task == "classification" else (rows,)
    if array.shape[: len(expected)] != expected:
        return f"answer of shape {array.shape} for {rows} rows, expected {expected}"
    if not np.isfinite(array).all():
        return "the answer holds NaN or infinities"
    return None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


def _spec(arg: Any) -> TensorSpec:
    shape = [dim if isinstance(dim, int) and dim > 0 else None for dim in arg.shape or []]
    dtype = ORT_DTYPES.get(arg.type)
    if dtype is np.object_:
        name = "string"
    elif dtype is not None:
        name = np.dtype(dtype).name
    else:
        name = arg.type.removeprefix("tensor(").removesuffix(")")
    return TensorSpec(arg.name, name, shape)


def read_labels(path: Path) -> list[str]:
    """Read ``{"0": "setosa", ...}`` or a JSON list of names."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: cannot read the labels: {err}") from err
    if isinstance(raw, dict):
        try:
            raw = [raw[str(index)] for index in range(len(raw))]
        except KeyError:
            last = len(raw) - 1
            raise ModelLoadError(f'{path}: label keys must be "0" to "{last}"') from None
    if not isinstance(raw, list) or not all(isinstance(label, str) for label in raw):
        raise ModelLoadError(f"{path}: expected a JSON object of index → label name")
    return raw
