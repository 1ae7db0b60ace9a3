"""The committed sample models are what the training script makes from scratch.

Retrained on another CPU, the floats of a model move in their last bits, so the trees are
compared by ``scripts/compare_sample_models.py`` (structure, parameters within a tolerance,
predictions on check rows) rather than byte for byte. The comparator is itself checked: real
differences fail it, float noise and a re-encoded PNG do not.
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

import numpy as np
import onnx
import pytest
from conftest import REPO, UV
from onnx import helper

pytestmark = pytest.mark.slow

COMMITTED = REPO / "sample_models"
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


def edit_float_attribute(path: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite the float-list attribute ``name`` of the model's first node."""
    model = onnx.load(str(path))
    attribute = next(a for a in model.graph.node[0].attribute if a.name == name)
    values = change(np.asarray(helper.get_attribute_value(attribute), dtype=np.float32))
    del attribute.floats[:]
    attribute.floats.extend(values.astype(np.float32).tolist())
    path.write_bytes(model.SerializeToString())


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
