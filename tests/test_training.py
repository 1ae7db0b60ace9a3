"""The committed sample models and model zoo are what the training script makes from scratch.

Retrained on another CPU, the floats of a model move in their last bits, so the trees are
compared by ``scripts/compare_sample_models.py`` (structure, parameters within a tolerance,
predictions on check rows) rather than byte for byte; the zoo's tree models, whose training
uses no BLAS, must match exactly. The comparator is itself checked: real differences fail it,
float noise and a re-encoded PNG do not.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import REPO, UV
from onnx import helper

pytestmark = pytest.mark.slow

COMMITTED = REPO / "sample_models"
ZOO = COMMITTED / "zoo"
ZOO_NAMES = ("binary", "integer", "multiclass", "regressor", "tabular", "two-outputs")
COMPARE = REPO / "scripts" / "compare_sample_models.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def train_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of one virtualenv with scripts/requirements-train.txt, shared by the module."""
    if UV is None:
        pytest.fail("uv is required to build the training virtualenv (pip install uv)")
    venv = tmp_path_factory.mktemp("train") / "venv"
    python = venv / "bin" / "python"
    requirements = REPO / "scripts" / "requirements-train.txt"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [UV, "pip", "install", "-q", "--python", str(python), "-r", str(requirements)], check=True
    )
    return python


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """A copy of the committed sample models, for a test to alter."""
    copy = tmp_path / "sample_models"
    shutil.copytree(COMMITTED, copy)
    return copy


def compare(python: Path, fresh: Path) -> subprocess.CompletedProcess[str]:
    """Run the comparator on the committed tree and ``fresh``."""
    return subprocess.run(
        [str(python), str(COMPARE), str(COMMITTED), str(fresh)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_training_reproduces_the_committed_models(train_python: Path, tmp_path: Path) -> None:
    out = tmp_path / "trained"
    result = subprocess.run(
        [
            str(train_python),
            str(REPO / "scripts" / "train_sample_models.py"),
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compared = compare(train_python, out)
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_the_zoo_is_complete() -> None:
    """Every zoo model ships its model, reference and request sample; only binary has labels."""
    assert sorted(path.name for path in ZOO.iterdir()) == sorted(ZOO_NAMES)
    for name in ZOO_NAMES:
        files = {"model.onnx", "reference.json", "vars.yaml"} | (
            {"label.json"} if name == "binary" else set()
        )
        assert {path.name for path in (ZOO / name).iterdir()} == files, name
        reference = json.loads((ZOO / name / "reference.json").read_text(encoding="utf-8"))
        vars_text = (ZOO / name / "vars.yaml").read_text(encoding="utf-8")
        # The request sample is JSON in YAML's flow style: the first two reference rows.
        assert vars_text.startswith("data_sample: "), name
        assert json.loads(vars_text.removeprefix("data_sample: ")) == reference["inputs"][:2]


def edit_float_attribute(path: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite the float-list attribute ``name`` of the model's first node."""
    model = onnx.load(str(path))
    attribute = next(a for a in model.graph.node[0].attribute if a.name == name)
    values = change(np.asarray(helper.get_attribute_value(attribute), dtype=np.float32))
    del attribute.floats[:]
    attribute.floats.extend(values.astype(np.float32).tolist())
    path.write_bytes(model.SerializeToString())


def one_float32_step_up(values: np.ndarray) -> np.ndarray:
    """What retraining with other BLAS kernels did to each float parameter at most."""
    stepped: np.ndarray = np.nextafter(values, np.float32(np.inf))
    return stepped


def edit_json(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    """Load, change and rewrite a JSON file."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    change(payload)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def swap_iris_for_iris_slow(tree: Path) -> None:
    # A different model with the very same signature.
    shutil.copyfile(tree / "iris-slow" / "model.onnx", tree / "iris" / "model.onnx")


def shift_the_largest_coefficient(tree: Path) -> None:
    def shift(values: np.ndarray) -> np.ndarray:
        values[np.argmax(np.abs(values))] += 1e-3
        return values

    edit_float_attribute(tree / "digits" / "model.onnx", "coefficients", shift)


def rename_a_label(tree: Path) -> None:
    edit_json(tree / "iris" / "label.json", lambda labels: labels.update({"1": "versicolour"}))


def shift_a_reference_prediction(tree: Path) -> None:
    def shift(reference: dict[str, object]) -> None:
        rows = reference["prediction_sample"]
        assert isinstance(rows, list)
        rows[0][0] += 1e-3

    edit_json(tree / "digits" / "reference.json", shift)


def change_the_sklearn_version(tree: Path) -> None:
    edit_json(tree / "iris-slow" / "reference.json", lambda ref: ref.update(sklearn_version="0"))


def swap_two_images(tree: Path) -> None:
    images = tree / "digits" / "images"
    shutil.copyfile(images / "digit-0001.png", images / "digit-0000.png")


def delete_an_image(tree: Path) -> None:
    (tree / "digits" / "images" / "digit-0299.png").unlink()


def add_a_file(tree: Path) -> None:
    (tree / "iris" / "notes.txt").write_text("not a sample model file\n", encoding="utf-8")


def edit_reference(tree: Path, name: str, change: Callable[[Any], None]) -> None:
    """Change a zoo model's reference.json through a loosely typed view of its JSON."""
    edit_json(tree / "zoo" / name / "reference.json", change)


def rename_a_string_label(tree: Path) -> None:
    path = tree / "zoo" / "multiclass" / "model.onnx"
    model = onnx.load(str(path))
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings":
                attribute.strings[2] = b"virginika"
    path.write_bytes(model.SerializeToString())


def step_a_tree_threshold(tree: Path) -> None:
    # One float32 step on each threshold: within tolerance elsewhere, but trees match exactly.
    edit_float_attribute(
        tree / "zoo" / "multiclass" / "model.onnx", "nodes_values", one_float32_step_up
    )


def nudge_an_exact_reference(tree: Path) -> None:
    def nudge(reference: Any) -> None:
        reference["outputs"]["probabilities"][0][0] -= 1e-6

    edit_reference(tree, "integer", nudge)


def shift_a_zipmap_probability(tree: Path) -> None:
    def shift(reference: Any) -> None:
        reference["outputs"]["output_probability"][0]["0"] += 1e-3

    edit_reference(tree, "binary", shift)


def change_a_city(tree: Path) -> None:
    def change(reference: Any) -> None:
        reference["inputs"][0]["city"] = "seoul"

    edit_reference(tree, "tabular", change)


def swap_the_binary_labels(tree: Path) -> None:
    edit_json(tree / "zoo" / "binary" / "label.json", lambda labels: labels.update({"0": "benign"}))


def swap_tabular_for_binary(tree: Path) -> None:
    zoo = tree / "zoo"
    shutil.copyfile(zoo / "binary" / "model.onnx", zoo / "tabular" / "model.onnx")


def edit_a_request_sample(tree: Path) -> None:
    path = tree / "zoo" / "two-outputs" / "vars.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("2.0", "2.5"), encoding="utf-8")


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (swap_iris_for_iris_slow, "iris/model.onnx"),
        (shift_the_largest_coefficient, "digits/model.onnx"),
        (rename_a_label, "iris/label.json"),
        (shift_a_reference_prediction, "digits/reference.json"),
        (change_the_sklearn_version, "iris-slow/reference.json"),
        (swap_two_images, "digits/images/digit-0000.png"),
        (delete_an_image, "digits/images/digit-0299.png"),
        (add_a_file, "iris/notes.txt"),
        (rename_a_string_label, "zoo/multiclass/model.onnx"),
        (step_a_tree_threshold, "zoo/multiclass/model.onnx"),
        (nudge_an_exact_reference, "zoo/integer/reference.json"),
        (shift_a_zipmap_probability, "zoo/binary/reference.json"),
        (change_a_city, "zoo/tabular/reference.json"),
        (swap_the_binary_labels, "zoo/binary/label.json"),
        (swap_tabular_for_binary, "zoo/tabular/model.onnx"),
        (edit_a_request_sample, "zoo/two-outputs/vars.yaml"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_the_comparator_reports_a_real_difference(
    train_python: Path, tree_copy: Path, mutate: Callable[[Path], None], named: str
) -> None:
    mutate(tree_copy)
    result = compare(train_python, tree_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # Only the altered file is named: the untouched ones still compare equal.
    assert lines, result.stderr
    assert all(line.startswith(f"{named}: ") for line in lines), result.stdout


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (type, body) of each chunk of a PNG file."""
    offset = len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        yield data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        offset += 12 + length


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def recompress_png(path: Path) -> None:
    """Store the same pixels at another zlib level: other bytes, same image."""
    chunks = list(png_chunks(path.read_bytes()))
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    first_idat = next(index for index, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    kept = [(kind, body) for kind, body in chunks if kind != b"IDAT"]
    kept.insert(first_idat, (b"IDAT", zlib.compress(pixels, 1)))
    path.write_bytes(PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in kept))


def nudge_the_samples(reference: dict[str, object]) -> None:
    # Below what the comparator tolerates; a rounding flip moves a prediction by 1e-6.
    for key, step in (("data_sample", 1e-7), ("prediction_sample", 1e-6)):
        rows = reference[key]
        assert isinstance(rows, list)
        rows[0][0] += step


def test_the_comparator_tolerates_float_noise_and_re_encoding(
    train_python: Path, tree_copy: Path
) -> None:
    model = tree_copy / "digits" / "model.onnx"
    # One float32 step on every coefficient: what retraining with other BLAS kernels did.
    edit_float_attribute(
        model, "coefficients", lambda values: np.nextafter(values, np.float32(np.inf))
    )
    image = tree_copy / "digits" / "images" / "digit-0000.png"
    recompress_png(image)
    edit_json(tree_copy / "digits" / "reference.json", nudge_the_samples)
    for path in (model, image):
        assert path.read_bytes() != (COMMITTED / path.relative_to(tree_copy)).read_bytes()
    result = compare(train_python, tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_comparator_tolerates_float_noise_in_the_zoo(
    train_python: Path, tree_copy: Path
) -> None:
    zoo = tree_copy / "zoo"
    edit_float_attribute(zoo / "regressor" / "model.onnx", "coefficients", one_float32_step_up)
    # The binary model's first node is its StandardScaler.
    edit_float_attribute(zoo / "binary" / "model.onnx", "scale", one_float32_step_up)

    def nudge_probabilities(reference: Any) -> None:
        for row in reference["outputs"]["output_probability"]:
            row["1"] += 1e-6

    def nudge_a_prediction(reference: Any) -> None:
        # Three float32 steps of a prediction near 200.
        reference["outputs"]["variable"][0][0] += 1e-4

    edit_reference(tree_copy, "binary", nudge_probabilities)
    edit_reference(tree_copy, "regressor", nudge_a_prediction)
    result = compare(train_python, tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
