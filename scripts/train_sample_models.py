#!/usr/bin/env python3
"""Train the sample models shipped in ``sample_models/`` and export them to ONNX.

Each sample model is produced by one builder function listed in ``REGISTRY``. For every
model the script writes ``model.onnx``, ``label.json`` and ``reference.json`` into
``<output-dir>/<name>/`` and then re-loads the ONNX file with onnxruntime to check it
against the scikit-learn model it came from.

Usage::

    python scripts/train_sample_models.py [--only iris] [--output-dir DIR]

Requirements are pinned in ``scripts/requirements-train.txt``. Running the script twice
with those versions produces byte-identical files.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from PIL import Image
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = REPO_ROOT / "sample_models"

# Pinned so the exported graph does not change when skl2onnx raises its default opset,
# and kept low enough for older onnxruntime builds used by generated services.
TARGET_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
RANDOM_STATE = 0
PROBA_TOLERANCE = 1e-4
REFERENCE_DECIMALS = 6
INPUT_NAME = "input"
LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"


class VerificationError(Exception):
    """Raised when an exported model disagrees with its scikit-learn source."""


@dataclass(frozen=True)
class SampleModel:
    """A trained classifier plus everything needed to export and check it."""

    name: str
    classifier: ClassifierMixin
    class_names: list[str]
    n_features: int
    data_sample: np.ndarray
    check_rows: np.ndarray
    # Files written beside the model (relative path → bytes), such as a sample data store.
    extra_files: dict[str, bytes] = field(default_factory=dict)


def build_iris() -> SampleModel:
    """Train an SVC with probability estimates on scikit-learn's bundled iris data."""
    dataset = load_iris()
    features = np.asarray(dataset.data, dtype=np.float64)
    classifier = SVC(probability=True, random_state=RANDOM_STATE)
    classifier.fit(features, dataset.target)
    return SampleModel(
        name="iris",
        classifier=classifier,
        class_names=[str(name) for name in dataset.target_names],
        n_features=features.shape[1],
        data_sample=features[:1],
        # Every row is cheap to check and includes the points near class boundaries.
        check_rows=features,
    )


# The digits sample: a store of PNG images and a classifier of their preprocessed tensors.
DIGITS_STORED_SIDE = 32  # the 8x8 digits are stored upscaled, so that resizing is real work
DIGITS_INPUT_SIDE = 16  # the model sees a 16x16 grayscale image, flattened
DIGITS_STORE_SIZE = 300  # the last 300 digits, held out of training, form the data store


def digit_png(pixels: np.ndarray) -> bytes:
    """An 8x8 digit (values 0..16) as a 32x32 grayscale PNG with no metadata chunks."""
    small = Image.fromarray(np.round(pixels * (255 / 16)).astype(np.uint8))
    large = small.resize((DIGITS_STORED_SIDE, DIGITS_STORED_SIDE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    large.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def preprocess_digit(data: bytes) -> np.ndarray:
    """The data-cache services' preprocessing, which they must keep identical.

    Decode, convert to 8-bit grayscale, resize to 16x16 with bilinear filtering, scale to [0, 1]
    as float32 and flatten row by row.
    """
    with Image.open(io.BytesIO(data)) as image:
        gray = image.convert("L").resize(
            (DIGITS_INPUT_SIDE, DIGITS_INPUT_SIDE), Image.Resampling.BILINEAR
        )
    return (np.asarray(gray, dtype=np.float32) / np.float32(255.0)).reshape(-1)


def build_digits() -> SampleModel:
    """Train a logistic regression on preprocessed PNGs of scikit-learn's bundled digits."""
    dataset = load_digits()
    images = [digit_png(pixels) for pixels in dataset.images]
    features = np.stack([preprocess_digit(data) for data in images])
    split = len(images) - DIGITS_STORE_SIZE
    classifier = LogisticRegression(max_iter=5000)
    classifier.fit(features[:split], dataset.target[:split])
    store = {f"images/digit-{index:04d}.png": data for index, data in enumerate(images[split:])}
    return SampleModel(
        name="digits",
        classifier=classifier,
        class_names=[str(digit) for digit in range(10)],
        n_features=features.shape[1],
        # The first stored image (digit-0000.png), as the service preprocesses it.
        data_sample=features[split : split + 1],
        check_rows=features[split:],
        extra_files=store,
    )


def build_iris_slow() -> SampleModel:
    """Train a large random forest on the iris data: the sync-async pattern's slow model.

    Same input and classes as ``iris``, so both answer the same request; 300 fully grown trees
    make it the heavier of the two.
    """
    dataset = load_iris()
    features = np.asarray(dataset.data, dtype=np.float64)
    classifier = RandomForestClassifier(n_estimators=300, random_state=RANDOM_STATE)
    classifier.fit(features, dataset.target)
    return SampleModel(
        name="iris-slow",
        classifier=classifier,
        class_names=[str(name) for name in dataset.target_names],
        n_features=features.shape[1],
        data_sample=features[:1],
        check_rows=features,
    )


REGISTRY: dict[str, Callable[[], SampleModel]] = {
    "iris": build_iris,
    "iris-slow": build_iris_slow,
    "digits": build_digits,
}


def convert_to_onnx(sample: SampleModel) -> onnx.ModelProto:
    """Convert the classifier to ONNX with plain tensor outputs (no ZipMap)."""
    initial_types = [(INPUT_NAME, FloatTensorType([None, sample.n_features]))]
    model: onnx.ModelProto = to_onnx(
        sample.classifier,
        initial_types=initial_types,
        target_opset=TARGET_OPSET,
        options={"zipmap": False},
    )
    # Fixed graph name so the file does not depend on converter naming heuristics.
    model.graph.name = f"sample_{sample.name}"
    sort_opset_imports(model)
    return model


def sort_opset_imports(model: onnx.ModelProto) -> None:
    """Order opset imports by domain.

    skl2onnx collects them in a set, so their order follows Python's per-process string
    hash seed and the serialized bytes would otherwise differ between runs.
    """
    opsets = sorted((opset.domain, opset.version) for opset in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets)


def serialize_model(model: onnx.ModelProto) -> bytes:
    """Serialize an ONNX model with stable field ordering."""
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString(deterministic=True))


def to_json_text(payload: dict[str, Any]) -> str:
    """Render JSON with a 2-space indent and a trailing newline."""
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def sklearn_probabilities(sample: SampleModel, rows: np.ndarray) -> np.ndarray:
    """Return scikit-learn's class probabilities for ``rows``."""
    return np.asarray(sample.classifier.predict_proba(rows), dtype=np.float64)


def build_labels(sample: SampleModel) -> dict[str, str]:
    """Map class indices (as strings) to human-readable class names."""
    return {str(index): name for index, name in enumerate(sample.class_names)}


def build_reference(sample: SampleModel) -> dict[str, Any]:
    """Build the data/prediction pair used to check the model from outside."""
    probabilities = sklearn_probabilities(sample, sample.data_sample)
    rounded = [[round(float(p), REFERENCE_DECIMALS) for p in row] for row in probabilities]
    return {
        "data_sample": [[float(x) for x in row] for row in sample.data_sample],
        "prediction_sample": rounded,
        "sklearn_version": sklearn.__version__,
        "skl2onnx_version": skl2onnx.__version__,
    }


def write_sample(sample: SampleModel, output_dir: Path) -> Path:
    """Write model.onnx, label.json and reference.json; return the model directory."""
    model_dir = output_dir / sample.name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.onnx").write_bytes(serialize_model(convert_to_onnx(sample)))
    # Explicit newline/encoding so output is identical regardless of platform defaults.
    (model_dir / "label.json").write_text(
        to_json_text(build_labels(sample)), encoding="utf-8", newline="\n"
    )
    (model_dir / "reference.json").write_text(
        to_json_text(build_reference(sample)), encoding="utf-8", newline="\n"
    )
    for relative, data in sorted(sample.extra_files.items()):
        (model_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / relative).write_bytes(data)
    return model_dir


def open_session(model_path: Path) -> ort.InferenceSession:
    """Load an ONNX file with the CPU provider only, as the generated services do."""
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def check_signature(session: ort.InferenceSession, sample: SampleModel) -> None:
    """Check input/output names, element types and shapes against the service contract."""
    n_classes = len(sample.class_names)
    actual = {
        "inputs": [(i.name, i.type, i.shape) for i in session.get_inputs()],
        "outputs": [(o.name, o.type, o.shape) for o in session.get_outputs()],
    }
    expected = {
        "inputs": [(INPUT_NAME, "tensor(float)", [None, sample.n_features])],
        "outputs": [
            (LABEL_OUTPUT, "tensor(int64)", [None]),
            (PROBA_OUTPUT, "tensor(float)", [None, n_classes]),
        ],
    }
    if actual != expected:
        raise VerificationError(f"signature mismatch: expected {expected}, got {actual}")


def check_predictions(session: ort.InferenceSession, sample: SampleModel) -> None:
    """Compare ONNX outputs with scikit-learn on data_sample followed by check_rows."""
    rows = np.vstack([sample.data_sample, sample.check_rows])
    onnx_labels, onnx_proba = session.run(
        [LABEL_OUTPUT, PROBA_OUTPUT], {INPUT_NAME: rows.astype(np.float32)}
    )
    expected = sklearn_probabilities(sample, rows)
    max_diff = float(np.max(np.abs(onnx_proba.astype(np.float64) - expected)))
    if max_diff > PROBA_TOLERANCE:
        raise VerificationError(
            f"probabilities differ from scikit-learn by {max_diff:.3g} "
            f"(tolerance {PROBA_TOLERANCE:g})"
        )
    report_mismatches("argmax of probabilities", onnx_proba.argmax(axis=1), expected.argmax(axis=1))
    # SVC's predict() uses one-vs-one votes, which can disagree with argmax(predict_proba)
    # near class boundaries, so the label output is compared with predict() itself.
    report_mismatches(f"'{LABEL_OUTPUT}' output", onnx_labels, sample.classifier.predict(rows))


def report_mismatches(what: str, actual: np.ndarray, expected: np.ndarray) -> None:
    """Raise if two label arrays differ, naming the offending input rows."""
    mismatched = np.flatnonzero(np.asarray(actual) != np.asarray(expected))
    if mismatched.size:
        raise VerificationError(
            f"{what} differs from scikit-learn at input rows {mismatched.tolist()} "
            "(row 0 is data_sample, row i+1 is check_rows[i])"
        )


def verify_sample(sample: SampleModel, model_dir: Path) -> None:
    """Re-load the written ONNX file and check it against the scikit-learn model."""
    session = open_session(model_dir / "model.onnx")
    check_signature(session, sample)
    check_predictions(session, sample)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=sorted(REGISTRY),
        metavar="NAME",
        help=f"build a single sample model (one of: {', '.join(sorted(REGISTRY))})",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"directory that receives one sub-directory per model (default: {DEFAULT_OUTPUT_DIR})",
    )
    return parser.parse_args(argv)


def run(names: Sequence[str], output_dir: Path) -> None:
    """Build, write and verify each named sample model."""
    for name in names:
        started = time.perf_counter()
        sample = REGISTRY[name]()
        model_dir = write_sample(sample, output_dir)
        verify_sample(sample, model_dir)
        elapsed = time.perf_counter() - started
        print(f"{name}: wrote and verified {model_dir} in {elapsed:.2f}s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    args = parse_args(argv)
    names = [args.only] if args.only else sorted(REGISTRY)
    try:
        run(names, args.output_dir.resolve())
    except VerificationError as error:
        print(f"error: verification failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
