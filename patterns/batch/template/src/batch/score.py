"""Scoring Arrow record batches with the service's own model code, inside Spark's Python workers.

Spark hands each Python worker a partition as Arrow record batches (``mapInArrow``); the model is
loaded once per worker process and kept, so a session is never rebuilt per batch or partition.
ONNX Runtime gets as many threads as the task has cores (``spark.task.cpus``), not the host's:
Spark already runs one task per core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import SparkFiles

from src.loader import file_sha256
from src.ml.classifier import Classifier

_LOADED: dict[tuple[str, int], Classifier] = {}


@dataclass(frozen=True)
class ModelSpec:
    """What a Python worker needs to load the model and build its inputs (pickled to it)."""

    model_path: str
    label_path: str
    output_name: str
    task: str
    id_column: str
    input_columns: dict[str, list[str]]
    row_shapes: dict[str, tuple[int, ...]]
    # The model's sha256; a model the driver fetched (``shipped``) comes through SparkFiles and
    # is checked against it before it is loaded.
    sha256: str = ""
    shipped: bool = False


def classifier(spec: ModelSpec, threads: int) -> Classifier:
    """The worker's model, loaded on first use."""
    key = (spec.model_path, threads)
    if key not in _LOADED:
        _LOADED[key] = Classifier.load(
            model_file(spec), Path(spec.label_path), spec.output_name, threads, spec.task
        )
    return _LOADED[key]


def model_file(spec: ModelSpec) -> Path:
    """Where this worker finds the model: the image's, or the driver's copy of a fetched one."""
    if not spec.shipped:
        return Path(spec.model_path)
    path = Path(SparkFiles.get(Path(spec.model_path).name))
    digest = file_sha256(path)
    if digest != spec.sha256:
        raise ValueError(
            f"{path}: sha256 {digest}, expected {spec.sha256}: the model the driver fetched "
            "changed on its way to this executor"
        )
    return path


def output_schema(task: str) -> str:
    """The Spark DDL schema of :func:`score_batches`'s batches (the id column's type aside)."""
    if task == "classification":
        return "label string, score float, scores array<float>"
    return "value double"


def feeds(model: Classifier, spec: ModelSpec, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """The model's inputs for a batch of validated rows."""
    made: dict[str, np.ndarray] = {}
    rows = batch.num_rows
    for (name, columns), dtype in zip(spec.input_columns.items(), model.input_dtypes, strict=True):
        arrays = [batch.column(column).to_numpy(zero_copy_only=False) for column in columns]
        values = np.column_stack(arrays) if len(arrays) > 1 else arrays[0].reshape(rows, 1)
        shape = spec.row_shapes[name] or (1,)
        made[name] = values.astype(dtype, copy=False).reshape(rows, *shape)
    return made


def predictions(model: Classifier, spec: ModelSpec, batch: pa.RecordBatch) -> pa.RecordBatch:
    """The id column and the prediction of every row of ``batch``."""
    answer = np.asarray(model.predict_feeds(feeds(model, spec, batch)))
    ids = batch.column(spec.id_column)
    if spec.task == "classification":
        best = answer.argmax(axis=1)
        labels = pa.array(np.asarray(model.labels, dtype=object)[best], type=pa.string())
        width = answer.shape[1]
        offsets = pa.array(np.arange(0, answer.size + 1, width, dtype=np.int32))
        flat = pa.array(answer.astype(np.float32, copy=False).reshape(-1))
        return pa.RecordBatch.from_arrays(
            [
                ids,
                labels,
                pa.array(answer[np.arange(len(best)), best].astype(np.float32)),
                pa.ListArray.from_arrays(offsets, flat),
            ],
            names=[spec.id_column, "label", "score", "scores"],
        )
    values = answer.reshape(len(ids), -1)[:, 0].astype(np.float64)
    return pa.RecordBatch.from_arrays([ids, pa.array(values)], names=[spec.id_column, "value"])


def score_batches(
    batches: Iterator[pa.RecordBatch], spec: ModelSpec, threads: int = 1
) -> Iterator[pa.RecordBatch]:
    """Every batch's predictions, in order; an empty batch stays empty."""
    model = classifier(spec, threads)
    for batch in batches:
        if batch.num_rows:
            yield predictions(model, spec, batch)


def scores_literal(scores: pa.Array) -> pa.Array:
    """A list<float> column as PostgreSQL array literals (``{0.9,0.1}``), for COPY."""
    joined = pc.binary_join(pc.cast(scores, pa.list_(pa.string())), ",")
    return pc.binary_join_element_wise("{", joined, "}", "")
