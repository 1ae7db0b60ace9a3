#!/usr/bin/env python3
"""Check that two sample-model trees hold equivalent files, tolerating floating-point noise.

Retraining the sample models on another CPU moves some floats in their last bits (BLAS kernels
differ), so a freshly trained tree is compared with the committed one by what matters rather
than byte for byte:

- ``label.json``: the same JSON;
- ``reference.json``: the same keys and versions, samples within a small tolerance;
- ``model.onnx``: the same graph (signature, nodes, exact integer and string attributes, float
  parameters within a tolerance) and the same predictions on a fixed set of check rows, a
  ZipMap output's probabilities compared label by label;
- images: the same size, mode and pixels, give or take one level;
- anything else: the same bytes.

Usage::

    python scripts/compare_sample_models.py COMMITTED_DIR FRESH_DIR

Exits 0 when the trees are equivalent, otherwise 1 after printing one line per difference, each
starting with the file's path relative to the trees. Needs the packages of
``scripts/requirements-train.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from PIL import Image
from sklearn.datasets import load_iris
from train_sample_models import ZOO_CHECK_FEEDS, open_session, preprocess_digit

# Retraining the digits model with each OpenBLAS kernel (Prescott to SkylakeX, 1 or 2 threads)
# moved its coefficients by at most 6e-8 (one float32 step) and its probabilities by at most
# 2e-7; the bounds leave over two orders of magnitude for other CPUs. They still catch a 1e-3
# change to any parameter (the largest is 7.9) and LogisticRegression's C moved by 1%. The
# digits check rows' top two probabilities are at least 7.7e-4 apart, so noise within
# PROBABILITY_ATOL cannot flip a label.
PARAMETER_ATOL = 1e-5
PARAMETER_RTOL = 1e-4
PROBABILITY_ATOL = 1e-4
# reference.json holds inputs (exact in practice) and probabilities rounded to 6 decimals, where
# a last-bit change can flip the rounding.
# The zoo's references hold request rows as "inputs" and onnxruntime's answers as "outputs".
REFERENCE_ATOL: dict[str, float] = {
    "data_sample": 1e-5,
    "prediction_sample": 1e-4,
    "inputs": 1e-5,
    "outputs": 1e-4,
}
# The zoo regressor predicts diabetes progression (35 to 291), where one float32 step is 3e-5.
REGRESSION_ATOL = 1e-3
# The digits PNGs come from Pillow's integer resampling; one level absorbs a rounding change.
PIXEL_TOLERANCE = 1
IMAGE_SUFFIXES = frozenset({".png"})
# How many offending check rows a difference line names before it cuts the list short.
ROWS_SHOWN = 10

Comparer = Callable[[Path, Path], list[str]]
# Rows for a model with one input, or rows by input name.
Feed = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """How far a retrained model's floats may move from the committed model's."""

    parameter_atol: float = PARAMETER_ATOL
    parameter_rtol: float = PARAMETER_RTOL
    output_atol: float = PROBABILITY_ATOL
    reference_atol: Mapping[str, float] = field(default_factory=lambda: REFERENCE_ATOL)


# Trees are grown and averaged without BLAS, so retraining them anywhere gives the same bits:
# the decision tree on integers and the forest with string labels must match exactly.
EXACT = Tolerance(0.0, 0.0, 0.0, dict.fromkeys(REFERENCE_ATOL, 0.0))
TOLERANCES: dict[str, Tolerance] = {
    "integer": EXACT,
    "multiclass": EXACT,
    "regressor": Tolerance(
        output_atol=REGRESSION_ATOL, reference_atol={**REFERENCE_ATOL, "outputs": REGRESSION_ATOL}
    ),
}


def tolerance_for(model_dir: Path) -> Tolerance:
    """The tolerance for the model in ``model_dir``, keyed by the directory's name."""
    return TOLERANCES.get(model_dir.name, Tolerance())


def iris_rows(_model_dir: Path) -> np.ndarray:
    """Every iris flower, as float32 like the services' requests."""
    return np.asarray(load_iris().data, dtype=np.float32)


def digit_rows(model_dir: Path) -> np.ndarray:
    """The committed digit images (held out of training), preprocessed as the services do."""
    images = sorted((model_dir / "images").glob("*.png"))
    return np.stack([preprocess_digit(path.read_bytes()) for path in images])


def zoo_rows(name: str) -> Callable[[Path], Feed]:
    """The zoo model's check rows, as the training script verified it on."""
    return lambda _model_dir: ZOO_CHECK_FEEDS[name]()


# The rows each model must answer identically on; keyed by the model's directory name.
CHECK_ROWS: dict[str, Callable[[Path], Feed]] = {
    "iris": iris_rows,
    "iris-slow": iris_rows,
    # horizontal-microservice's backends: one binary classifier per species, on the same rows.
    "iris-setosa": iris_rows,
    "iris-versicolor": iris_rows,
    "iris-virginica": iris_rows,
    "digits": digit_rows,
    **{name: zoo_rows(name) for name in ZOO_CHECK_FEEDS},
}


def compare_arrays(
    what: str, committed: np.ndarray, fresh: np.ndarray, atol: float, rtol: float = 0.0
) -> list[str]:
    """Floats must agree within ``atol + rtol * |committed|``; anything else exactly."""
    if committed.shape != fresh.shape:
        return [f"{what} has shape {fresh.shape}, expected {committed.shape}"]
    if committed.dtype != fresh.dtype:
        return [f"{what} has dtype {fresh.dtype}, expected {committed.dtype}"]
    if np.issubdtype(committed.dtype, np.floating):
        deviation = np.abs(fresh.astype(np.float64) - committed.astype(np.float64))
        bound = atol + rtol * np.abs(committed.astype(np.float64))
        # Written as "not within" so that a NaN counts as a difference.
        if not np.all(deviation <= bound):
            worst = float(np.max(deviation, initial=0.0))
            tolerance = f"{atol:g} + {rtol:g}*|value|" if rtol else f"{atol:g}"
            return [f"{what} differs by up to {worst:.3g} (tolerance {tolerance})"]
        return []
    if not np.array_equal(committed, fresh):
        count = int(np.count_nonzero(committed != fresh))
        return [f"{what} differs in {count} of {committed.size} values"]
    return []


def load_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def compare_labels(committed: Path, fresh: Path) -> list[str]:
    """Labels are names, so they must be exactly the same."""
    expected, actual = load_json(committed), load_json(fresh)
    if expected != actual:
        return [f"labels are {json.dumps(actual)}, expected {json.dumps(expected)}"]
    return []


def compare_references(committed: Path, fresh: Path) -> list[str]:
    """Same keys; samples within the model's reference tolerance, the rest (versions) exact."""
    expected, actual = load_json(committed), load_json(fresh)
    tolerances = tolerance_for(committed.parent).reference_atol
    problems = [f"key '{key}' is missing" for key in sorted(expected.keys() - actual.keys())]
    problems += [f"key '{key}' is unexpected" for key in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        if key in tolerances:
            problems += compare_json(f"'{key}'", expected[key], actual[key], tolerances[key])
        elif expected[key] != actual[key]:
            problems.append(f"'{key}' is {actual[key]!r}, expected {expected[key]!r}")
    return problems


def json_leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every scalar of a JSON value by its path, such as ``[0]['setosa']``."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = [(f"[{key!r}]", item) for key, item in value.items()]
    elif isinstance(value, list):
        items = [(f"[{index}]", item) for index, item in enumerate(value)]
    else:
        return {path: value}
    leaves: dict[str, Any] = {}
    for step, item in items:
        leaves.update(json_leaves(item, path + step))
    # An empty list or map is a value too: without it [] and {} would compare equal.
    return leaves or {path: value}


def is_float_pair(first: Any, second: Any) -> bool:
    """Two JSON numbers of which at least one is a float, so compared with a tolerance."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (first, second))
    return numbers and (isinstance(first, float) or isinstance(second, float))


def compare_json(what: str, committed: Any, fresh: Any, atol: float) -> list[str]:
    """The same structure and strings, integers and labels; floats within ``atol``."""
    expected, actual = json_leaves(committed), json_leaves(fresh)
    if expected.keys() != actual.keys():
        moved = sorted(expected.keys() ^ actual.keys())
        return [f"{what} has another structure, at {', '.join(moved[:ROWS_SHOWN])}"]
    floats = [path for path in expected if is_float_pair(expected[path], actual[path])]
    others = [path for path in expected if path not in floats]
    problems = []
    changed = [path for path in others if expected[path] != actual[path]]
    if changed:
        problems.append(f"{what} differs at {', '.join(changed[:ROWS_SHOWN])}")
    deviation = [abs(float(actual[path]) - float(expected[path])) for path in floats]
    # Written as "not within" so that a NaN counts as a difference.
    if not all(value <= atol for value in deviation):
        worst = max((value for value in deviation if value == value), default=float("nan"))
        problems.append(f"{what} differs by up to {worst:.3g} (tolerance {atol:g})")
    return problems


def compare_images(committed: Path, fresh: Path) -> list[str]:
    """Decoded pixels, so that a different PNG encoder or compression level does not matter."""
    with Image.open(committed) as expected, Image.open(fresh) as actual:
        if (expected.size, expected.mode) != (actual.size, actual.mode):
            return [
                f"image is {actual.mode} {actual.size}, expected {expected.mode} {expected.size}"
            ]
        deviation = np.abs(
            np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64)
        )
    if not np.all(deviation <= PIXEL_TOLERANCE):
        count = int(np.count_nonzero(deviation > PIXEL_TOLERANCE))
        return [
            f"{count} pixel values differ by more than {PIXEL_TOLERANCE} "
            f"(by up to {float(np.max(deviation)):g})"
        ]
    return []


def compare_bytes(committed: Path, fresh: Path) -> list[str]:
    """A file of unknown kind is compared as it is."""
    if committed.read_bytes() != fresh.read_bytes():
        return ["contents differ"]
    return []


def value_info_signature(value: onnx.ValueInfoProto) -> tuple[Any, ...]:
    """Name, kind, element type and shape (a symbolic or unknown dimension as its name)."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        # A sequence or map, such as a ZipMap's output: its whole type, key and value included.
        return value.name, kind, str(value.type)
    tensor = value.type.tensor_type
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") else dim.dim_param for dim in tensor.shape.dim
    )
    return value.name, value.type.WhichOneof("value"), tensor.elem_type, dims


def graph_signature(model: onnx.ModelProto) -> dict[str, Any]:
    """What a caller of the model relies on, plus the versions the runtime relies on."""
    return {
        "inputs": [value_info_signature(value) for value in model.graph.input],
        "outputs": [value_info_signature(value) for value in model.graph.output],
        "ir_version": model.ir_version,
        "opset_import": sorted((opset.domain, opset.version) for opset in model.opset_import),
        "producer": (model.producer_name, model.producer_version),
    }


def compare_signatures(expected: onnx.ModelProto, actual: onnx.ModelProto) -> list[str]:
    """Every part of the signature must be identical."""
    wanted, found = graph_signature(expected), graph_signature(actual)
    return [
        f"{key} is {found[key]}, expected {wanted[key]}"
        for key in wanted
        if wanted[key] != found[key]
    ]


def node_outline(node: onnx.NodeProto) -> dict[str, Any]:
    """Everything about a node but its attribute values."""
    return {
        "op_type": node.op_type,
        "domain": node.domain,
        "name": node.name,
        "inputs": list(node.input),
        "outputs": list(node.output),
        "attributes": [attribute.name for attribute in node.attribute],
    }


def attribute_array(attribute: onnx.AttributeProto) -> np.ndarray | None:
    """A numeric attribute as an array; None for the kinds compared as protobuf messages."""
    numeric = (
        onnx.AttributeProto.FLOAT,
        onnx.AttributeProto.FLOATS,
        onnx.AttributeProto.INT,
        onnx.AttributeProto.INTS,
    )
    if attribute.type in numeric:
        return np.asarray(helper.get_attribute_value(attribute))
    if attribute.type == onnx.AttributeProto.TENSOR:
        return np.asarray(numpy_helper.to_array(attribute.t))
    return None


def compare_attribute(
    where: str, expected: onnx.AttributeProto, actual: onnx.AttributeProto, tolerance: Tolerance
) -> list[str]:
    """Float values within the parameter tolerance; integers, strings and the rest exact."""
    what = f"attribute '{expected.name}' of {where}"
    if expected.type != actual.type:
        return [f"{what} has type {actual.type}, expected {expected.type}"]
    expected_array, actual_array = attribute_array(expected), attribute_array(actual)
    if expected_array is None or actual_array is None:
        return [] if expected == actual else [f"{what} differs"]
    return compare_arrays(
        what, expected_array, actual_array, tolerance.parameter_atol, tolerance.parameter_rtol
    )


def compare_nodes(
    expected: onnx.GraphProto, actual: onnx.GraphProto, tolerance: Tolerance
) -> list[str]:
    """The same nodes in the same order, wired the same way, with equivalent attributes."""
    if len(expected.node) != len(actual.node):
        return [f"graph has {len(actual.node)} nodes, expected {len(expected.node)}"]
    problems: list[str] = []
    for index, (wanted, found) in enumerate(zip(expected.node, actual.node, strict=True)):
        where = f"node {index} ({wanted.op_type})"
        wanted_outline, found_outline = node_outline(wanted), node_outline(found)
        if wanted_outline != found_outline:
            problems.append(f"{where} is {found_outline}, expected {wanted_outline}")
            continue
        for wanted_attribute, found_attribute in zip(
            wanted.attribute, found.attribute, strict=True
        ):
            problems += compare_attribute(where, wanted_attribute, found_attribute, tolerance)
    return problems


def compare_initializers(
    expected: onnx.GraphProto, actual: onnx.GraphProto, tolerance: Tolerance
) -> list[str]:
    """The same named constants, floats within the parameter tolerance."""
    wanted = {tensor.name: numpy_helper.to_array(tensor) for tensor in expected.initializer}
    found = {tensor.name: numpy_helper.to_array(tensor) for tensor in actual.initializer}
    problems = [f"initializer '{name}' is missing" for name in sorted(wanted.keys() - found.keys())]
    problems += [
        f"initializer '{name}' is unexpected" for name in sorted(found.keys() - wanted.keys())
    ]
    for name in sorted(wanted.keys() & found.keys()):
        problems += compare_arrays(
            f"initializer '{name}'",
            wanted[name],
            found[name],
            tolerance.parameter_atol,
            tolerance.parameter_rtol,
        )
    return problems


def run_model(path: Path, rows: Feed) -> dict[str, np.ndarray]:
    """Every output of the model for ``rows``, by output name."""
    session = open_session(path)
    names = [output.name for output in session.get_outputs()]
    feed = rows if isinstance(rows, dict) else {session.get_inputs()[0].name: rows}
    results = session.run(names, feed)
    arrays: dict[str, np.ndarray] = {}
    for name, result in zip(names, results, strict=True):
        arrays.update(output_arrays(name, result))
    return arrays


def output_arrays(name: str, result: Any) -> dict[str, np.ndarray]:
    """One array per output; a ZipMap's maps become one probability column per label."""
    if not isinstance(result, list):
        return {name: np.asarray(result)}
    # onnxruntime gives every row's map the same labels, in the ZipMap's order.
    labels = list(result[0]) if result else []
    return {f"{name}[{label}]": np.asarray([row[label] for row in result]) for label in labels}


def compare_outputs(name: str, expected: np.ndarray, actual: np.ndarray, atol: float) -> list[str]:
    """Float outputs (probabilities) within a tolerance; labels identical on every row."""
    what = f"output '{name}' on the check rows"
    if np.issubdtype(expected.dtype, np.floating) or expected.shape != actual.shape:
        return compare_arrays(what, expected, actual, atol)
    mismatched = np.flatnonzero(
        (expected != actual).reshape(len(expected), -1).any(axis=1)
    ).tolist()
    if mismatched:
        shown = ", ".join(str(row) for row in mismatched[:ROWS_SHOWN])
        more = ", ..." if len(mismatched) > ROWS_SHOWN else ""
        return [f"{what} differs at {len(mismatched)} rows: {shown}{more}"]
    return []


def compare_predictions(committed: Path, fresh: Path, tolerance: Tolerance) -> list[str]:
    """Run both models on the check rows of their directory's name."""
    rows_for = CHECK_ROWS.get(committed.parent.name)
    if rows_for is None:
        return [
            f"no check rows for model '{committed.parent.name}': add them to CHECK_ROWS in "
            "scripts/compare_sample_models.py"
        ]
    rows = rows_for(committed.parent)
    expected, actual = run_model(committed, rows), run_model(fresh, rows)
    # Only a ZipMap's labels can differ here: the signatures matched.
    problems = [f"output '{name}' is missing" for name in sorted(expected.keys() - actual.keys())]
    problems += [
        f"output '{name}' is unexpected" for name in sorted(actual.keys() - expected.keys())
    ]
    for name in sorted(expected.keys() & actual.keys()):
        problems += compare_outputs(name, expected[name], actual[name], tolerance.output_atol)
    return problems


def compare_models(committed: Path, fresh: Path) -> list[str]:
    """Same graph with equivalent parameters, and the same answers on the check rows."""
    expected, actual = onnx.load(str(committed)), onnx.load(str(fresh))
    tolerance = tolerance_for(committed.parent)
    problems = compare_signatures(expected, actual)
    problems += compare_nodes(expected.graph, actual.graph, tolerance)
    problems += compare_initializers(expected.graph, actual.graph, tolerance)
    # Only models with the same inputs and outputs can be fed the same rows and compared.
    wanted, found = graph_signature(expected), graph_signature(actual)
    if all(wanted[part] == found[part] for part in ("inputs", "outputs")):
        problems += compare_predictions(committed, fresh, tolerance)
    return problems


COMPARERS_BY_NAME: dict[str, Comparer] = {
    "label.json": compare_labels,
    "reference.json": compare_references,
    "model.onnx": compare_models,
    # Built from model.onnx by editing its graph (scripts/make_shadow_models.py): compared alike.
    "shadow.onnx": compare_models,
}


def comparer_for(relative: Path) -> Comparer:
    """How to compare the file at ``relative`` in both trees."""
    if relative.name in COMPARERS_BY_NAME:
        return COMPARERS_BY_NAME[relative.name]
    if relative.suffix.lower() in IMAGE_SUFFIXES:
        return compare_images
    return compare_bytes


def relative_files(root: Path) -> set[Path]:
    """Paths of every file under ``root``, relative to it."""
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}


def compare_trees(committed: Path, fresh: Path) -> list[str]:
    """One line per difference, each starting with the file's relative path."""
    expected, actual = relative_files(committed), relative_files(fresh)
    lines = [
        f"{path.as_posix()}: missing from the fresh tree" for path in sorted(expected - actual)
    ]
    lines += [f"{path.as_posix()}: not in the committed tree" for path in sorted(actual - expected)]
    for relative in sorted(expected & actual):
        compare = comparer_for(relative)
        problems = compare(committed / relative, fresh / relative)
        lines += [f"{relative.as_posix()}: {problem}" for problem in problems]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path, help="the reference tree, e.g. sample_models")
    parser.add_argument("fresh", type=Path, help="a tree written by train_sample_models.py")
    args = parser.parse_args(argv)
    for directory in (args.committed, args.fresh):
        if not directory.is_dir():
            parser.error(f"{directory} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    args = parse_args(argv)
    differences = compare_trees(args.committed, args.fresh)
    for line in differences:
        print(line)
    if differences:
        return 1
    print(f"{args.fresh} is equivalent to {args.committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
