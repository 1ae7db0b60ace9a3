"""An ONNX classifier: loaded once per worker, then asked for class scores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# ONNX Runtime's type strings for the dtypes a service accepts.
ORT_DTYPES = {
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
}


class ModelLoadError(RuntimeError):
    """The model or its labels cannot be loaded, or the model fails its start-up test."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of a model input or output (``None`` for a free dimension)."""

    name: str
    dtype: str
    shape: list[int | None]


class Classifier:
    """Runs one ONNX model whose chosen output holds a score per class for every row."""

    def __init__(
        self, session: ort.InferenceSession, output_name: str, labels: list[str], model_path: Path
    ) -> None:
        self._session = session
        self._input = _spec(session.get_inputs()[0])
        self._output = _spec(next(o for o in session.get_outputs() if o.name == output_name))
        self._dtype = ORT_DTYPES[session.get_inputs()[0].type]
        self._outputs = [output_name]
        self.labels = labels
        self.model_path = model_path
        self.sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()

    @classmethod
    def load(cls, model_path: Path, label_path: Path, output_name: str, threads: int) -> Classifier:
        """Load the model and labels; any problem is a ModelLoadError naming the file."""
        labels = read_labels(label_path)
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
        return cls(session, output_name, labels, model_path)

    def predict(self, rows: Any) -> np.ndarray:
        """Class scores, one row per input row."""
        batch = np.asarray(rows, dtype=self._dtype)
        return np.asarray(self._session.run(self._outputs, {self._input.name: batch})[0])

    def predict_labels(self, rows: Any) -> list[str]:
        """The most likely label of every row."""
        return [self.labels[index] for index in self.predict(rows).argmax(axis=1)]

    def self_test(self, sample: Any) -> None:
        """Run the sample once: a model that cannot answer it must never be reported ready."""
        scores = self.predict(sample)
        if scores.shape != (len(sample), len(self.labels)) or not np.isfinite(scores).all():
            raise ModelLoadError(
                f"{self.model_path}: start-up test gave scores of shape {scores.shape} for "
                f"{len(sample)} rows and {len(self.labels)} labels"
            )

    def metadata(self) -> dict[str, Any]:
        """What an operator needs to tell which model a running service serves."""
        return {
            "model_file": self.model_path.name,
            "model_sha256": self.sha256,
            "inputs": [self._input.__dict__],
            "outputs": [self._output.__dict__],
            "labels": self.labels,
            "producer": self._session.get_modelmeta().producer_name,
            "onnxruntime_version": ort.__version__,
        }


def _spec(arg: Any) -> TensorSpec:
    shape = [dim if isinstance(dim, int) and dim > 0 else None for dim in arg.shape]
    dtype = ORT_DTYPES.get(arg.type)
    name = np.dtype(dtype).name if dtype else arg.type.removeprefix("tensor(").removesuffix(")")
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
