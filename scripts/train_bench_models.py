#!/usr/bin/env python3
"""Train the models bench/batching.py serves: models whose inference, not HTTP, is the cost.

    python scripts/train_bench_models.py {mlp,forest} OUT_DIR

Writes ``OUT_DIR/<name>/`` with ``model.onnx`` and ``label.json`` for the generated service
(through ``train_sample_models.write_sample``, as the sample models are), and ``model.joblib``
for MLServer's scikit-learn runtime: the same fitted model for both.

- ``mlp``: 20 features, two hidden layers of 4096 units, 3 classes. Its 67 MB of weights do not
  fit in a CPU cache, so one row costs milliseconds (every weight read from memory) and a row in a
  batch of 64 a small part of that (each weight read once for the 64 rows). Trained for 3 epochs
  only: the benchmark needs its cost, not its accuracy.
- ``forest``: 300 trees of depth 12 on the same data, where a batch helps far less.

Requirements: ``scripts/requirements-train.txt``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from train_sample_models import SampleModel, write_sample  # scripts/ is the script's own folder

FEATURES = 20
ROWS = 2000
CLASSES = ["low", "middle", "high"]


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic rows and their class: fixed by the seed."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(ROWS, FEATURES))
    target = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int) + (rows[:, 3] > 1)
    return rows, target


def build(kind: str) -> SampleModel:
    """The fitted model of ``kind`` (mlp or forest)."""
    rows, target = training_data()
    classifier: ClassifierMixin
    if kind == "mlp":
        classifier = MLPClassifier(hidden_layer_sizes=(4096, 4096), max_iter=3, random_state=0)
    else:
        classifier = RandomForestClassifier(n_estimators=300, max_depth=12, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(rows, target)
    return SampleModel(
        name=kind,
        classifier=classifier,
        class_names=CLASSES,
        n_features=FEATURES,
        data_sample=rows[:1],
        check_rows=rows[:64],
    )


def main() -> None:
    """Train, export, dump."""
    kind, out = sys.argv[1], Path(sys.argv[2])
    if kind not in ("mlp", "forest"):
        raise SystemExit(f"{kind!r}: expected mlp or forest")
    sample = build(kind)
    model_dir = write_sample(sample, out)
    joblib.dump(sample.classifier, model_dir / "model.joblib")
    print(model_dir)


if __name__ == "__main__":
    main()
