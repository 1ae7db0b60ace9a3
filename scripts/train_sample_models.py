#!/usr/bin/env python3
"""Train the sample models shipped in ``sample_models/`` and export them to ONNX.

Each sample model is produced by one builder function listed in ``REGISTRY``. For every
model the script writes ``model.onnx``, ``label.json`` and ``reference.json`` into
``<output-dir>/<name>/`` and then re-loads the ONNX file with onnxruntime to check it
against the scikit-learn model it came from.

The model zoo, listed in ``ZOO``, holds one small model per kind of signature a service may
meet (a regressor, ZipMap outputs with integer or string labels, one named input per column,
int64 inputs, two outputs). Each goes to ``<output-dir>/zoo/<name>/`` as ``model.onnx``,
``reference.json`` (a few request rows and onnxruntime's outputs for them, by output name),
``vars.yaml`` (two of those rows as ``data_sample``) and, where class names help,
``label.json``; it is checked against scikit-learn (or numpy) the same way.

Usage::

    python scripts/train_sample_models.py [--only iris|regressor|...] [--output-dir DIR]

Requirements are pinned in ``scripts/requirements-train.txt``. Running the script twice
with those versions produces byte-identical files.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from make_shadow_models import RULES as SHADOW_RULES  # scripts/ is the script's own folder
from make_shadow_models import shadow_of
from onnx import helper, numpy_helper
from PIL import Image
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

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


# The horizontal-microservice pattern's backends: one binary classifier per iris species.
IRIS_SPECIES = ("setosa", "versicolor", "virginica")


def build_iris_one_vs_rest(species: str) -> SampleModel:
    """Train a logistic regression telling one iris species (yes) from the other two (no).

    The horizontal-microservice pattern serves one per species, each in its own service; its
    proxy asks all three and the highest "yes" wins, as a multi-class model would answer.
    """
    dataset = load_iris()
    features = np.asarray(dataset.data, dtype=np.float64)
    target = (dataset.target == IRIS_SPECIES.index(species)).astype(np.int64)
    classifier = LogisticRegression(max_iter=1000)
    classifier.fit(features, target)
    return SampleModel(
        name=f"iris-{species}",
        classifier=classifier,
        class_names=["no", "yes"],
        n_features=features.shape[1],
        data_sample=features[:1],
        check_rows=features,
    )


REGISTRY: dict[str, Callable[[], SampleModel]] = {
    "iris": build_iris,
    "iris-slow": build_iris_slow,
    "digits": build_digits,
    **{
        f"iris-{species}": functools.partial(build_iris_one_vs_rest, species)
        for species in IRIS_SPECIES
    },
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
    """Write model.onnx (and shadow.onnx), label.json and reference.json; the model directory."""
    model_dir = output_dir / sample.name
    model_dir.mkdir(parents=True, exist_ok=True)
    model = convert_to_onnx(sample)
    (model_dir / "model.onnx").write_bytes(serialize_model(model))
    if sample.name in SHADOW_RULES:
        shadow = shadow_of(model, *SHADOW_RULES[sample.name])
        (model_dir / "shadow.onnx").write_bytes(serialize_model(shadow))
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


# --------------------------------------------------------------------------- the model zoo

ZOO_DIR = "zoo"
# Predictions reach 291, where float32 inputs and weights move them by up to ~3e-5.
REGRESSION_TOLERANCE = 1e-3
# What skl2onnx writes for opset 17, so the hand-built model loads wherever the others do.
ZOO_IR_VERSION = 8
REFERENCE_ROWS_IN_VARS = 2
# Element types of onnxruntime's input descriptions, as numpy dtypes for a request's rows.
ORT_INPUT_DTYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(string)": np.str_,
}
TABULAR_INPUTS = {"age": "tensor(float)", "income": "tensor(float)", "city": "tensor(string)"}
TABULAR_CITIES = ("seoul", "busan", "incheon")
TABULAR_ROWS = 300
# A city the encoder never saw: handle_unknown="ignore" must still give an answer.
TABULAR_UNSEEN = {"age": 38.0, "income": 42000.0, "city": "daegu"}

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class ZipMapValue:
    """A ZipMap output as its labels (in map order) and one row of probabilities per input."""

    labels: list[str]
    values: np.ndarray


@dataclass(frozen=True)
class ZooModel:
    """An exported zoo model with the rows and expected outputs that check it."""

    name: str
    model: onnx.ModelProto
    # Request rows: lists of numbers for one input, records keyed by input name for several.
    reference_rows: list[Any]
    check_feed: Feed
    # Outputs of the source model (scikit-learn or numpy) on check_feed, by output name.
    expected: dict[str, np.ndarray | ZipMapValue]
    versions: dict[str, str]
    labels: dict[str, str] | None = None
    tolerance: float = PROBA_TOLERANCE


def rows_feed(rows: Sequence[Any], inputs: Mapping[str, str]) -> Feed:
    """Turn request rows into tensors, as a service does; ``inputs`` maps name to ORT type."""
    if len(inputs) == 1:
        ((name, kind),) = inputs.items()
        return {name: np.asarray(rows, dtype=ORT_INPUT_DTYPES[kind])}
    # Several inputs: each row is a record holding one scalar per (None, 1) input.
    return {
        name: np.asarray([[row[name]] for row in rows], dtype=ORT_INPUT_DTYPES[kind])
        for name, kind in inputs.items()
    }


def sklearn_versions() -> dict[str, str]:
    """The toolchain versions recorded in a scikit-learn model's reference.json."""
    return {"sklearn_version": sklearn.__version__, "skl2onnx_version": skl2onnx.__version__}


def export_zoo(
    name: str, estimator: BaseEstimator, initial_types: list[Any], **options: Any
) -> onnx.ModelProto:
    """Convert with skl2onnx's default options unless told otherwise (ZipMap stays on)."""
    model: onnx.ModelProto = to_onnx(
        estimator,
        initial_types=initial_types,
        target_opset=TARGET_OPSET,
        options=options or None,
    )
    model.graph.name = f"zoo_{name.replace('-', '_')}"
    sort_opset_imports(model)
    return model


def classifier_outputs(classifier: Any, rows: Any, *, zipmap: bool = True) -> dict[str, Any]:
    """scikit-learn's labels and probabilities, named as skl2onnx names the ONNX outputs."""
    labels = np.asarray(classifier.predict(rows))
    probabilities = np.asarray(classifier.predict_proba(rows), dtype=np.float64)
    if not zipmap:
        return {LABEL_OUTPUT: labels, PROBA_OUTPUT: probabilities}
    classes = [str(label) for label in classifier.classes_]
    return {"output_label": labels, "output_probability": ZipMapValue(classes, probabilities)}


def first_of_each_class(target: np.ndarray) -> list[int]:
    """Row indices of the first example of every class, in class order."""
    return [int(np.flatnonzero(target == label)[0]) for label in np.unique(target)]


# Data sets, shared by the builders and by compare_sample_models.py's check rows.


def tabular_records() -> list[dict[str, Any]]:
    """A seeded customer table: whole ages, incomes in hundreds, one of three cities.

    Only integer draws and exact arithmetic, so every CPU makes the very same table.
    """
    rng = np.random.default_rng(RANDOM_STATE)
    ages = rng.integers(20, 70, TABULAR_ROWS)
    incomes = rng.integers(200, 1200, TABULAR_ROWS) * 100
    cities = rng.integers(0, len(TABULAR_CITIES), TABULAR_ROWS)
    return [
        {"age": float(age), "income": float(income), "city": TABULAR_CITIES[city]}
        for age, income, city in zip(ages.tolist(), incomes.tolist(), cities.tolist(), strict=True)
    ]


def tabular_target(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """0/1 from age, income and city plus seeded noise, so no column explains it alone."""
    effect = {"seoul": 0.8, "busan": -0.4, "incheon": 0.0}
    noise = np.random.default_rng(RANDOM_STATE + 1).random(len(records)) * 2 - 1
    score = [
        (row["age"] - 45) / 15 + (row["income"] - 70000) / 25000 + effect[row["city"]]
        for row in records
    ]
    return (np.asarray(score) + noise > 0).astype(np.int64)


def tabular_matrix(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Records as an object matrix whose columns follow TABULAR_INPUTS, for scikit-learn."""
    return np.array([[row[name] for name in TABULAR_INPUTS] for row in records], dtype=object)


def digit_counts() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits as 64 int64 pixel counts (0..16) and their digit."""
    dataset = load_digits()
    return np.asarray(dataset.data, dtype=np.int64), np.asarray(dataset.target)


def two_outputs_rows() -> np.ndarray:
    """Sixty evenly spaced values in twenty rows of three."""
    return np.linspace(-3.0, 3.0, 60, dtype=np.float32).reshape(20, 3)


def single_input(rows: np.ndarray, kind: str = "tensor(float)") -> Feed:
    """A feed for the models with one input named INPUT_NAME."""
    return {INPUT_NAME: np.asarray(rows, dtype=ORT_INPUT_DTYPES[kind])}


# The rows each zoo model is checked on, at training time and by compare_sample_models.py.
ZOO_CHECK_FEEDS: dict[str, Callable[[], Feed]] = {
    "regressor": lambda: single_input(load_diabetes().data),
    "binary": lambda: single_input(load_breast_cancer().data),
    "multiclass": lambda: single_input(load_iris().data),
    "tabular": lambda: rows_feed([*tabular_records(), TABULAR_UNSEEN], TABULAR_INPUTS),
    "integer": lambda: single_input(digit_counts()[0], "tensor(int64)"),
    "two-outputs": lambda: {"x": two_outputs_rows()},
}


def build_zoo_regressor() -> ZooModel:
    """LinearRegression on the diabetes data: one float output per row."""
    dataset = load_diabetes()
    features = np.asarray(dataset.data, dtype=np.float64)
    regressor = LinearRegression().fit(features, dataset.target)
    return ZooModel(
        name="regressor",
        model=export_zoo(
            "regressor", regressor, [(INPUT_NAME, FloatTensorType([None, features.shape[1]]))]
        ),
        reference_rows=features[:3].tolist(),
        check_feed=ZOO_CHECK_FEEDS["regressor"](),
        expected={"variable": regressor.predict(features).reshape(-1, 1)},
        versions=sklearn_versions(),
        tolerance=REGRESSION_TOLERANCE,
    )


def build_zoo_binary() -> ZooModel:
    """Scaled logistic regression on breast_cancer: int64 labels, a ZipMap with int64 keys."""
    dataset = load_breast_cancer()
    features = np.asarray(dataset.data, dtype=np.float64)
    classifier = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])
    classifier.fit(features, dataset.target)
    return ZooModel(
        name="binary",
        model=export_zoo(
            "binary", classifier, [(INPUT_NAME, FloatTensorType([None, features.shape[1]]))]
        ),
        reference_rows=features[first_of_each_class(dataset.target)].tolist(),
        check_feed=ZOO_CHECK_FEEDS["binary"](),
        expected=classifier_outputs(classifier, features),
        versions=sklearn_versions(),
        labels={str(index): str(name) for index, name in enumerate(dataset.target_names)},
    )


def build_zoo_multiclass() -> ZooModel:
    """A small random forest on iris with the species names as targets: string labels."""
    dataset = load_iris()
    features = np.asarray(dataset.data, dtype=np.float64)
    species = np.asarray(dataset.target_names)[dataset.target]
    classifier = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=RANDOM_STATE)
    classifier.fit(features, species)
    return ZooModel(
        name="multiclass",
        model=export_zoo(
            "multiclass", classifier, [(INPUT_NAME, FloatTensorType([None, features.shape[1]]))]
        ),
        reference_rows=features[first_of_each_class(dataset.target)].tolist(),
        check_feed=ZOO_CHECK_FEEDS["multiclass"](),
        expected=classifier_outputs(classifier, features),
        versions=sklearn_versions(),
    )


def build_zoo_tabular() -> ZooModel:
    """Scaled numbers and one-hot cities into a logistic regression, one input per column."""
    records = tabular_records()
    transformer = ColumnTransformer(
        # By position, in TABULAR_INPUTS order: without pandas there are no column names,
        # and skl2onnx maps position i to the i-th of the (None, 1) inputs below.
        [
            ("num", StandardScaler(), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    )
    classifier = Pipeline([("columns", transformer), ("model", LogisticRegression())])
    target = tabular_target(records)
    classifier.fit(tabular_matrix(records), target)
    initial_types = [
        ("age", FloatTensorType([None, 1])),
        ("income", FloatTensorType([None, 1])),
        ("city", StringTensorType([None, 1])),
    ]
    check_rows = [*records, TABULAR_UNSEEN]
    return ZooModel(
        name="tabular",
        model=export_zoo("tabular", classifier, initial_types),
        reference_rows=[*(records[index] for index in first_of_each_class(target)), TABULAR_UNSEEN],
        check_feed=ZOO_CHECK_FEEDS["tabular"](),
        expected=classifier_outputs(classifier, tabular_matrix(check_rows)),
        versions=sklearn_versions(),
    )


def build_zoo_integer() -> ZooModel:
    """A depth-3 decision tree on int64 pixel counts, with plain tensor outputs."""
    features, target = digit_counts()
    classifier = DecisionTreeClassifier(max_depth=3, random_state=RANDOM_STATE)
    classifier.fit(features, target)
    initial_types = [(INPUT_NAME, Int64TensorType([None, features.shape[1]]))]
    return ZooModel(
        name="integer",
        model=export_zoo("integer", classifier, initial_types, zipmap=False),
        reference_rows=features[:3].tolist(),
        check_feed=ZOO_CHECK_FEEDS["integer"](),
        expected=classifier_outputs(classifier, features, zipmap=False),
        versions=sklearn_versions(),
    )


def two_outputs_model() -> onnx.ModelProto:
    """A graph of two outputs from x (None, 3): its row sums (None, 1) and 2x (None, 3)."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1),
            helper.make_node("Mul", ["x", "two"], ["scaled"]),
        ],
        "zoo_two_outputs",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])],
        [
            helper.make_tensor_value_info("total", onnx.TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("scaled", onnx.TensorProto.FLOAT, [None, 3]),
        ],
        initializer=[axes, two],
    )
    return helper.make_model(
        graph,
        producer_name="train_sample_models",
        ir_version=ZOO_IR_VERSION,
        opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])],
    )


def build_zoo_two_outputs() -> ZooModel:
    """The hand-built two-output graph; numpy computes what it must answer."""
    as_float64 = two_outputs_rows().astype(np.float64)
    return ZooModel(
        name="two-outputs",
        model=two_outputs_model(),
        reference_rows=[[1.0, 2.0, 3.0], [-0.5, 0.25, 4.0], [0.0, 0.0, 0.0]],
        check_feed=ZOO_CHECK_FEEDS["two-outputs"](),
        expected={
            "total": as_float64.sum(axis=1, keepdims=True),
            "scaled": as_float64 * 2,
        },
        versions={"onnx_version": onnx.__version__},
    )


ZOO: dict[str, Callable[[], ZooModel]] = {
    "regressor": build_zoo_regressor,
    "binary": build_zoo_binary,
    "multiclass": build_zoo_multiclass,
    "tabular": build_zoo_tabular,
    "integer": build_zoo_integer,
    "two-outputs": build_zoo_two_outputs,
}


def zipmap_value(maps: list[dict[Any, float]]) -> ZipMapValue:
    """A ZipMap result of onnxruntime (one dict per row, keys in label order) as arrays."""
    labels = [str(label) for label in maps[0]] if maps else []
    return ZipMapValue(labels, np.asarray([list(row.values()) for row in maps], dtype=np.float64))


def rounded(value: Any) -> Any:
    """Round every float of a JSON-ready value to REFERENCE_DECIMALS, as the samples do."""
    if isinstance(value, float):
        return round(value, REFERENCE_DECIMALS)
    if isinstance(value, list):
        return [rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def render_output(value: Any) -> Any:
    """An onnxruntime output as JSON: nested lists, ZipMaps as one {label: p} map per row."""
    if isinstance(value, list):
        return [rounded({str(key): float(p) for key, p in row.items()}) for row in value]
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        return array.astype(str).tolist()
    return rounded(array.tolist())


def yaml_number(value: Any) -> str:
    """A JSON scalar as YAML 1.1 reads it back: PyYAML takes "5e-05" for a string."""
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
    return text


def vars_yaml(rows: list[Any]) -> str:
    """``data_sample:`` holding request rows, in flow style like the repository's vars.yaml."""

    def flow(value: Any) -> str:
        if isinstance(value, list):
            return "[" + ", ".join(flow(item) for item in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{flow(k)}: {flow(v)}" for k, v in value.items()) + "}"
        return yaml_number(value)

    return f"data_sample: {flow(rows)}\n"


def write_text(path: Path, text: str) -> None:
    """Explicit newline/encoding so output is identical regardless of platform defaults."""
    path.write_text(text, encoding="utf-8", newline="\n")


def write_zoo_model(zoo: ZooModel, output_dir: Path) -> Path:
    """Write model.onnx, reference.json, vars.yaml and maybe label.json; return the directory."""
    model_dir = output_dir / ZOO_DIR / zoo.name
    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / "model.onnx"
    model_path.write_bytes(serialize_model(zoo.model))
    session = open_session(model_path)
    inputs = {item.name: item.type for item in session.get_inputs()}
    names = [item.name for item in session.get_outputs()]
    results = session.run(names, rows_feed(zoo.reference_rows, inputs))
    reference = {
        "inputs": zoo.reference_rows,
        "outputs": {
            name: render_output(result) for name, result in zip(names, results, strict=True)
        },
        **zoo.versions,
    }
    write_text(model_dir / "reference.json", to_json_text(reference))
    write_text(model_dir / "vars.yaml", vars_yaml(zoo.reference_rows[:REFERENCE_ROWS_IN_VARS]))
    if zoo.labels is not None:
        write_text(model_dir / "label.json", to_json_text(zoo.labels))
    return model_dir


def check_zoo_output(
    name: str, actual: Any, expected: np.ndarray | ZipMapValue, tolerance: float
) -> None:
    """Floats within ``tolerance``; labels, integers and strings identical on every row."""
    if isinstance(expected, ZipMapValue):
        found = unzip_output(name, actual, expected.labels)
        actual, expected = found.values, expected.values
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise VerificationError(
            f"output '{name}' has shape {actual.shape}, expected {expected.shape}"
        )
    if expected.dtype.kind == "f":
        max_diff = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
        # Written as "not within" so that a NaN fails too.
        if not max_diff <= tolerance:
            raise VerificationError(
                f"output '{name}' differs from its source by {max_diff:.3g} "
                f"(tolerance {tolerance:g})"
            )
        return
    mismatched = np.flatnonzero((actual != expected).reshape(len(expected), -1).any(axis=1))
    if mismatched.size:
        raise VerificationError(
            f"output '{name}' differs from its source at check rows {mismatched.tolist()}"
        )


def unzip_output(name: str, actual: Any, labels: list[str]) -> ZipMapValue:
    """A ZipMap output of onnxruntime as arrays, checking it has the expected labels."""
    if not isinstance(actual, list):
        raise VerificationError(f"output '{name}' is not a ZipMap's sequence of maps")
    found = zipmap_value(actual)
    if found.labels != labels:
        raise VerificationError(f"output '{name}' has labels {found.labels}, expected {labels}")
    return found


def verify_zoo_model(zoo: ZooModel, model_dir: Path) -> None:
    """Re-load the written ONNX file and check it on the check rows against its source."""
    session = open_session(model_dir / "model.onnx")
    inputs = [item.name for item in session.get_inputs()]
    outputs = [item.name for item in session.get_outputs()]
    if inputs != list(zoo.check_feed) or outputs != list(zoo.expected):
        raise VerificationError(
            f"signature mismatch: expected inputs {list(zoo.check_feed)} and outputs "
            f"{list(zoo.expected)}, got {inputs} and {outputs}"
        )
    results = session.run(outputs, zoo.check_feed)
    for name, result in zip(outputs, results, strict=True):
        check_zoo_output(name, result, zoo.expected[name], zoo.tolerance)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted(REGISTRY) + sorted(ZOO)
    parser.add_argument(
        "--only",
        choices=names,
        metavar="NAME",
        help=f"build a single sample or zoo model (one of: {', '.join(names)})",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"directory that receives one sub-directory per model (default: {DEFAULT_OUTPUT_DIR})",
    )
    return parser.parse_args(argv)


def run(names: Sequence[str], output_dir: Path) -> None:
    """Build, write and verify each named sample or zoo model."""
    for name in names:
        started = time.perf_counter()
        if name in REGISTRY:
            sample = REGISTRY[name]()
            model_dir = write_sample(sample, output_dir)
            verify_sample(sample, model_dir)
        else:
            zoo = ZOO[name]()
            model_dir = write_zoo_model(zoo, output_dir)
            verify_zoo_model(zoo, model_dir)
        elapsed = time.perf_counter() - started
        print(f"{name}: wrote and verified {model_dir} in {elapsed:.2f}s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    args = parse_args(argv)
    names = [args.only] if args.only else sorted(REGISTRY) + sorted(ZOO)
    try:
        run(names, args.output_dir.resolve())
    except VerificationError as error:
        print(f"error: verification failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
